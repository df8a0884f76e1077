"""Command line: `python -m trashlib {data,submission,train,predict,ensemble,report} ...`.

Each subcommand calls the same package functions the notebooks call; `train`'s options are generated
from TrainConfig's fields (trashlib.config), so the command line cannot drift from the recipe.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trashlib.config import add_config_arguments, config_from_arguments
from trashlib.data import TrashDataset, resolve_data_root
from trashlib.data.check import check_dataset, format_problems
from trashlib.data.taco.build import build_taco
from trashlib.data.taco.source import DEFAULT_SOURCE
from trashlib.io import check_output
from trashlib.postprocess.crf import PRESETS, crf_preset
from trashlib.postprocess.ensemble import fit_weights
from trashlib.postprocess.recipe import chain
from trashlib.predict.inference import DEFAULT_TTA, TTA, predict
from trashlib.predict.probs import INDEX_FILE, ProbIndex
from trashlib.reporting.runner import make_report
from trashlib.runs import CONFIG_FILE, Run
from trashlib.scoring.evaluation import evaluate_index, score_submission
from trashlib.submission import index_to_submission, validate_submission
from trashlib.synth import generate_dataset
from trashlib.training import train


def _data_synth(args) -> int:
    out = generate_dataset(args.out, seed=args.seed, n_train=args.n_train, n_val=args.n_val,
                           n_test=args.n_test, mislabel_rate=args.mislabel_rate, workers=args.workers,
                           overwrite=args.overwrite)
    print(f"wrote dataset to {out}")
    return 0


def _data_taco(args) -> int:
    build = build_taco(args.out, source=args.source, unofficial=args.unofficial, workers=args.workers, size=args.size,
                       download=args.download or None, timeout=args.timeout, retries=args.retries)
    print(build.summary())
    print(f"check it with: python -m trashlib data check {args.out}")
    return 0


def _data_check(args) -> int:
    problems = check_dataset(args.root)
    print(format_problems(problems, args.root))
    return 1 if problems else 0


def _submission_validate(args) -> int:
    problems = validate_submission(args.csv, args.test)
    for p in problems:
        print(p)
    print(f"{args.csv}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _submission_score(args) -> int:
    result = score_submission(args.csv, args.labels)
    d = result.as_dict()
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        print(f"mIoU {d['mIoU']:.4f}  pixel acc {d['pixel_accuracy']:.4f}  fwIoU {d['fwIoU']:.4f}")
        for name, v in d["per_class_iou"].items():
            print(f"  {name:<14} {'-' if v is None else f'{v:.4f}'}")
    return 0


def _report(args) -> int:
    if args.out is not None:
        check_output(args.out, inputs=[resolve_data_root(args.data)], what="--out", folder=True)
    make_report(profile=args.profile, notebooks=args.notebooks or None, data_root=args.data, out_dir=args.out)
    return 0


def _train(args) -> int:
    cfg = config_from_arguments(args, yaml_path=args.config)
    try:
        run = train(cfg, force=args.force, progress=not args.no_progress)
    except FloatingPointError as e:  # the loss diverged: the message says what was kept and what to do
        print(f"error: {e}", file=sys.stderr)
        return 1
    final, best = run.final_metrics(), run.best_metrics()
    print(f"run {run.path}" + (f": val mIoU {final['mIoU']:.4f} at its last step" if final else "")
          + (f" (best {best['mIoU']:.4f} at step {best['step']})" if best and best != final else ""))
    return 0


def _predict(args) -> int:
    tta = TTA(hflip="hflip" in args.tta, scales=tuple(args.scales), window=args.window)
    _check_submission(args, inputs=[args.run])
    index = predict(args.run, args.data, args.split, tta=tta, batch_size=args.batch_size, which=args.which,
                    quantize=not args.float16, force=args.force)
    print(f"wrote {len(index)} probability maps to {index.path}")
    return 0 if args.submission is None else _write_submission(index, args.submission, args.data, args.split)


def _check_submission(args, *, inputs) -> None:
    """--submission's rules, found out now, not after the predictions: never on an input, in the data or
    among stored results and runs (trashlib.io.check_output); an existing file only with --overwrite-output."""
    path = args.submission
    if path is None:
        return
    check_output(path, inputs=[resolve_data_root(args.data), *inputs], what="--submission")
    if path.exists() and not args.overwrite_output:
        raise FileExistsError(f"--submission {path} already exists; pass --overwrite-output to replace it")


def _write_submission(index, path: Path, data, split: str) -> int:
    index_to_submission(index, path)
    problems = validate_submission(path, resolve_data_root(data) / f"{split}.json")
    for problem in problems:
        print(problem)
    print(f"{path}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _ensemble_input(path: Path, data, split: str) -> ProbIndex:
    """An index folder as it is, or a run folder's stored predictions (predict with hflip, reused when stored)."""
    if (path / INDEX_FILE).exists():
        index = ProbIndex(path)
        made = index.settings.get("split"), index.settings.get("data_root")
        if made[0] not in (None, split):
            raise ValueError(f"{path} holds predictions of split {made[0]!r}, not --split {split}")
        root = resolve_data_root(data)
        if made[1] is not None and Path(made[1]).resolve() != root:
            raise ValueError(f"{path} was made from data root {made[1]}, not {root}")
        return index
    try:
        run = Run(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: neither a probability index ({INDEX_FILE}) nor a run folder") from None
    return predict(run, data, split, tta=DEFAULT_TTA)


def _fit(args, indices) -> tuple[float, ...]:
    if args.split != "val":  # weights are fitted on val: the runs' val predictions stand in for the inputs
        for path in args.inputs:
            if (path / INDEX_FILE).exists():
                raise ValueError(f"--fit-weights with --split {args.split} needs run folders (their val predictions "
                                 f"are used); {path} is an index: fit with --split val and pass --weights")
        indices = [_ensemble_input(path, args.data, "val") for path in args.inputs]
    fit = fit_weights(indices, args.data, "val")
    print(f"fitted weights {' '.join(f'{w:.3f}' for w in fit.weights)} (val mIoU {fit.miou:.4f})")
    return fit.weights


def _check_distinct(inputs: list[Path]) -> None:
    """Refuse one model given twice (the same folder, a copy of an index, or a run beside its own stored
    predictions): it would count as two votes."""
    folders, indices = {}, {}
    for path in inputs:
        same = folders.setdefault(path.resolve(), path)
        if same is not path:
            raise ValueError(f"{path} is given twice (also as {same}): one model would count as two votes")
        if (path / INDEX_FILE).is_file():
            same = indices.setdefault((path / INDEX_FILE).read_bytes(), path)
            if same is not path:
                raise ValueError(f"{path} holds the same {INDEX_FILE} as {same}, a copy of one model's maps: "
                                 "it would count as two votes")
    runs = [(path, Run(path)) for path in inputs if not (path / INDEX_FILE).exists() and (path / CONFIG_FILE).is_file()]
    for path in inputs:
        if runs and (path / INDEX_FILE).is_file():
            model = ProbIndex(path).settings.get("model")
            for run_path, run in runs:
                if _predicted_by(model, run):
                    raise ValueError(f"{path} holds the predictions of {run_path}, also given: one model would "
                                     "count as two votes")


def _predicted_by(model, run: Run) -> bool:
    """Whether an index's settings["model"] (inference.predict's record) is a checkpoint of `run` as it is now."""
    if not isinstance(model, dict) or model.get("run") != run.name or not isinstance(model.get("checkpoint"), str):
        return False
    ckpt = run.path / model["checkpoint"]
    if not ckpt.is_file():
        return False
    st = ckpt.stat()
    return (st.st_size, st.st_mtime_ns) == (model.get("size"), model.get("mtime_ns"))


def _ensemble(args) -> int:
    if args.max_area is not None and args.overwrite is None:
        raise ValueError("--max-area applies to --overwrite K; give --overwrite too")
    if args.vote == "hard" and (args.weights or args.fit_weights):
        raise ValueError("weights apply to the soft vote; drop --weights/--fit-weights or use --vote soft")
    n = len(args.inputs)  # every argument is checked before the first map is computed
    if args.weights is not None and len(args.weights) != n:
        raise ValueError(f"{len(args.weights)} weights for {n} inputs; give one weight per input")
    if args.overwrite is not None and not 1 <= args.overwrite <= n:
        raise ValueError(f"--overwrite {args.overwrite}: K must lie in 1..{n} (the number of inputs that must agree)")
    if args.max_area is not None and args.max_area < 1:
        raise ValueError(f"--max-area {args.max_area}: give a positive number of pixels")
    _check_distinct(args.inputs)
    params = crf_preset(args.crf) if args.crf else None
    _check_submission(args, inputs=args.inputs)
    indices = [_ensemble_input(path, args.data, args.split) for path in args.inputs]
    weights = _fit(args, indices) if args.fit_weights and len(indices) > 1 else args.weights
    stages = chain(indices, args.data, args.split, vote=args.vote, weights=weights, crf=params,
                   overwrite=args.overwrite, max_area=args.max_area, workers=args.workers, name=args.name,
                   force=args.force)
    out = stages[-1][1] if stages else indices[0]
    stages = [(f"+ CRF {args.crf}" if title.startswith("+ CRF") else title, index) for title, index in stages]
    for title, index in stages:
        print(f"{title}: {len(index)} probability maps in {index.path}")
    if TrashDataset(args.data, split=args.split).has_masks:
        for title, index in [(f"input {i + 1}", ix) for i, ix in enumerate(indices)] + stages:
            print(f"{args.split} {evaluate_index(index, args.data, args.split, subset=True).describe()}  {title}")
    return 0 if args.submission is None else _write_submission(out, args.submission, args.data, args.split)


ENSEMBLE_EPILOG = """stages, each stored as a probability index under data/interim/probs/ (an identical one is reused):
  vote (two or more inputs) -> --crf -> --overwrite; on a labelled split each stage's mIoU is printed.
examples:
  python -m trashlib ensemble runs/a runs/b runs/c --split val --fit-weights --crf peers-a --overwrite 3
  python -m trashlib ensemble runs/a runs/b --split test --weights 0.6 0.4 --submission submission.csv
"""

TRAIN_EPILOG = """examples:
  python -m trashlib train --model mask2former-swin --size tiny --data data/raw/trash-synth --steps 300 \\
      --batch-size 4 --image-size 256
  python -m trashlib train --config run.yaml --lr 2e-4        # options override the YAML
  python -m trashlib train --config run.yaml --resume         # continue an interrupted run
  python -m trashlib train --config run.yaml --restart        # start an interrupted run over
several GPUs (Hugging Face Accelerate; --batch-size is per GPU):
  accelerate launch --multi_gpu --num_processes 4 -m trashlib train --config run.yaml
"""


SUBMISSION_RULE = ("never inside an input, a data root, a run folder or data/interim; an existing file is replaced "
                   "only with --overwrite-output")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    p = argparse.ArgumentParser(prog="python -m trashlib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate or validate datasets").add_subparsers(dest="action", required=True)
    s = data.add_parser("synth", help="generate the embedded trash-scene dataset in the competition layout")
    s.add_argument("--out", type=Path, required=True, help="output data root (created; must not hold a dataset)")
    s.add_argument("--seed", type=int, default=0, help="random seed: same seed, same dataset (default 0)")
    s.add_argument("--n-train", type=int, default=1280, help="training images (default 1280)")
    s.add_argument("--n-val", type=int, default=80, help="validation images (default 80)")
    s.add_argument("--n-test", type=int, default=100, help="test images, labels written to test_labels.json (default 100)")
    s.add_argument("--mislabel-rate", type=float, default=0.02, help="share of annotations given a wrong class, recorded in synth_meta.json (default 0.02)")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    s.add_argument("--overwrite", action="store_true", help="replace a dataset already at --out")
    s.set_defaults(func=_data_synth)
    tc = data.add_parser("taco", help="build TACO's real litter photos in the competition layout",
                         description="Convert TACO (tacodataset.org) into the competition layout: upright 512x512 "
                                     "JPEGs, the 10 classes (trashlib/data/taco/classes.py), a stratified split, "
                                     "test_labels.json, ATTRIBUTION.csv. Photos are downloaded from their URLs "
                                     "(kept in OUT/originals/, so a second run resumes) or read from a checkout.")
    tc.add_argument("--out", type=Path, required=True, help="output data root (new, empty, or an earlier TACO build to resume)")
    tc.add_argument("--source", default=DEFAULT_SOURCE, help="TACO's repository: a local checkout (or its data/ folder) "
                                                             f"or a URL of its raw files (default {DEFAULT_SOURCE})")
    tc.add_argument("--unofficial", action="store_true", help="add TACO's unofficial set (crowd annotations, not reviewed)")
    tc.add_argument("--workers", type=int, default=8, help="parallel downloads and conversions (default 8)")
    tc.add_argument("--size", type=int, default=512, help="side of the square output photos (default 512)")
    tc.add_argument("--download", action="store_true", help="with a local --source: download the photos it lacks")
    tc.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    tc.add_argument("--retries", type=int, default=3, help="more tries after a timeout or a dropped connection (default 3)")
    tc.set_defaults(func=_data_taco)
    c = data.add_parser("check", help="validate a dataset; report every problem; exit 1 if any")
    c.add_argument("root", type=Path, help="data root holding train_all/train/val/test.json")
    c.set_defaults(func=_data_check)

    subm = sub.add_parser("submission", help="validate or score a submission CSV").add_subparsers(dest="action", required=True)
    v = subm.add_parser("validate", help="check a CSV against test.json; exit 1 on any problem")
    v.add_argument("csv", type=Path)
    v.add_argument("--test", type=Path, required=True, help="the test.json the submission answers")
    v.set_defaults(func=_submission_validate)
    sc = subm.add_parser("score", help="competition mIoU of a CSV against a COCO file with annotations")
    sc.add_argument("csv", type=Path)
    sc.add_argument("--labels", type=Path, required=True, help="COCO json with the test annotations (e.g. test_labels.json)")
    sc.add_argument("--json", action="store_true", help="print the scores as JSON")
    sc.set_defaults(func=_submission_score)

    r = sub.add_parser("report", help="run the notebooks with papermill and render reports/")
    r.add_argument("--profile", default="cpu", help="parameter profile: smoke, cpu (default) or gpu, or a YAML path")
    r.add_argument("--data", default=None, help="data root for every notebook (default: TRASHLIB_DATA or the embedded dataset)")
    r.add_argument("--out", default=None, help="folder for the rendered report (default: reports/, or $TRASHLIB_REPORTS)")
    r.add_argument("notebooks", nargs="*", help="notebook names or numbers to run (default: all)")
    r.set_defaults(func=_report)

    t = sub.add_parser("train", help="train a model (or reuse its finished run)", epilog=TRAIN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train with trashlib.training.train; writes runs/<run-name>/. Every option is "
                                   "a TrainConfig field (trashlib/config.py), documented there.")
    t.add_argument("--config", type=Path, help="YAML of TrainConfig fields; command-line options override it")
    add_config_arguments(t)
    t.add_argument("--force", action="store_true", help="retrain even if a finished (or interrupted) run has this config")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    pr = sub.add_parser("predict", help="probability maps (with TTA) of a split and a submission CSV",
                        description="Predict a split with a run's model, store per-image probabilities under "
                                    "data/interim/probs/, and optionally write and validate a submission CSV.")
    pr.add_argument("run", type=Path, metavar="RUN_DIR", help="a training run folder (runs/<run-name>)")
    pr.add_argument("--data", default=None, help="data root (default: TRASHLIB_DATA or the embedded dataset)")
    pr.add_argument("--split", default="test", help="split to predict (default test)")
    pr.add_argument("--submission", type=Path, help="write the argmax maps as a competition CSV here and validate it "
                                                    "(" + SUBMISSION_RULE + ")")
    pr.add_argument("--tta", nargs="*", default=["hflip"], choices=["hflip", "none"],
                    help="test-time augmentations (default hflip; 'none' for plain inference)")
    pr.add_argument("--scales", type=float, nargs="+", default=[1.0], help="input scales averaged (default 1.0)")
    pr.add_argument("--window", type=int, nargs=2, metavar=("SIZE", "STRIDE"),
                    help="sliding-window inference with SIZE windows every STRIDE pixels")
    pr.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    pr.add_argument("--which", choices=["best", "last"], default="last",
                    help="checkpoint: the last weights, which the run's val mIoU scores (default), or the best on val")
    pr.add_argument("--float16", action="store_true", help="store float16 maps instead of uint8-quantised ones")
    pr.add_argument("--force", action="store_true", help="recompute even if identical maps exist")
    pr.add_argument("--overwrite-output", action="store_true", help="replace an existing --submission file")
    pr.set_defaults(func=_predict)

    en = sub.add_parser("ensemble", help="soft or hard vote of stored predictions, DenseCRF, consensus overwrite",
                        epilog=ENSEMBLE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Ensemble probability maps of runs or indices, optionally followed by DenseCRF "
                                    "and the consensus overwrite (trashlib.postprocess); writes the result as a "
                                    "probability index and optionally a validated submission CSV.")
    en.add_argument("inputs", type=Path, nargs="+", metavar="RUN_OR_INDEX",
                    help="run folders (their hflip predictions of --split, made if not stored) or probability index "
                         "folders (holding index.json); list the best model first: hard-vote ties go to it")
    en.add_argument("--data", default=None, help="data root (default: TRASHLIB_DATA or the embedded dataset)")
    en.add_argument("--split", default="test", help="split of the inputs, e.g. val or test (default test)")
    w = en.add_mutually_exclusive_group()
    w.add_argument("--weights", type=float, nargs="+", metavar="W",
                   help="soft-vote weights, one per input, normalised to sum to one (default: equal)")
    w.add_argument("--fit-weights", action="store_true",
                   help="fit soft-vote weights on the val split by coordinate search (with --split test the "
                        "inputs must be run folders: their val predictions are used)")
    en.add_argument("--vote", choices=["soft", "hard"], default="soft",
                    help="soft: weighted mean of probabilities; hard: per-pixel majority of argmaxes, stored one-hot "
                         "(default soft)")
    en.add_argument("--name", default=None, help="ensemble name in the store folder ensemble-<name> (default: the "
                                                 "input names joined)")
    en.add_argument("--crf", choices=list(PRESETS), default=None,
                    help="run DenseCRF with this preset after the vote: " + "; ".join(
                        f"{n}: {p.tag}" for n, p in PRESETS.items()))
    en.add_argument("--overwrite", type=int, default=None, metavar="K",
                    help="then restore each connected region of a non-background class on which at least K of the "
                         "inputs agree (trashlib.postprocess.consensus.overwrite)")
    en.add_argument("--max-area", type=int, default=None, metavar="A",
                    help="with --overwrite: restore only agreement regions of at most A pixels (default: any size)")
    en.add_argument("--workers", type=int, default=None, help="CRF processes (default: every core)")
    en.add_argument("--submission", type=Path, help="write the final argmax maps as a competition CSV here and "
                                                    "validate it (" + SUBMISSION_RULE + ")")
    en.add_argument("--force", action="store_true", help="recompute every stage even if identical maps exist")
    en.add_argument("--overwrite-output", action="store_true", help="replace an existing --submission file")
    en.set_defaults(func=_ensemble)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m trashlib` and the `trashlib` script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OSError as e:  # PermissionError, IsADirectoryError, ...: the system's sentence, with its file
        where = f"{e.filename}: " if e.filename and e.strerror else ""
        print(f"error: {where}{e.strerror if where else e}", file=sys.stderr)
    except UnicodeDecodeError as e:  # a ValueError, but its text names no file: each reader should catch it
        print(f"error: a file is not UTF-8 text ({e.reason} at byte {e.start})", file=sys.stderr)
    except (ValueError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
