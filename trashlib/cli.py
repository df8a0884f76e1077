"""Command line: `python -m trashlib {data,submission,train,predict,report} ...`.

Each subcommand calls the same package functions the notebooks call; heavy modules are imported
only by the subcommand that needs them, so `--help` is instant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _data_synth(args) -> int:
    from trashlib.synth import generate_dataset

    out = generate_dataset(args.out, seed=args.seed, n_train=args.n_train, n_val=args.n_val,
                           n_test=args.n_test, mislabel_rate=args.mislabel_rate, workers=args.workers,
                           overwrite=args.overwrite)
    print(f"wrote dataset to {out}")
    return 0


def _data_check(args) -> int:
    from trashlib.data.check import check_dataset, format_problems

    problems = check_dataset(args.root)
    print(format_problems(problems, args.root))
    return 1 if problems else 0


def _submission_validate(args) -> int:
    from trashlib.submission import validate_submission

    problems = validate_submission(args.csv, args.test)
    for p in problems:
        print(p)
    print(f"{args.csv}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _submission_score(args) -> int:
    import json

    from trashlib.submission import score_submission

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
    from trashlib.report import make_report

    make_report(profile=args.profile, notebooks=args.notebooks or None, data_root=args.data, out_dir=args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    p = argparse.ArgumentParser(prog="python -m trashlib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate or validate datasets").add_subparsers(dest="action", required=True)
    s = data.add_parser("synth", help="generate the embedded trash-scene dataset in the competition layout")
    s.add_argument("--out", type=Path, required=True, help="output data root (created; must not hold a dataset)")
    s.add_argument("--seed", type=int, default=0, help="random seed: same seed, same dataset (default 0)")
    s.add_argument("--n-train", type=int, default=320, help="training images (default 320)")
    s.add_argument("--n-val", type=int, default=80, help="validation images (default 80)")
    s.add_argument("--n-test", type=int, default=100, help="test images, labels written to test_labels.json (default 100)")
    s.add_argument("--mislabel-rate", type=float, default=0.02, help="share of annotations given a wrong class, recorded in synth_meta.json (default 0.02)")
    s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    s.add_argument("--overwrite", action="store_true", help="replace a dataset already at --out")
    s.set_defaults(func=_data_synth)
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

    from trashlib.training.cli import add_commands  # train and predict live with the training code

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m trashlib` and the `trashlib` script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
