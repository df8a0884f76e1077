"""`python -m trashlib train ...` and `python -m trashlib predict ...`: the same functions the notebooks call.

Options are generated from TrainConfig's fields (one option per field, `--data` and `--out` for the
folders), so the command line can never drift from the config; heavy imports happen only when a
command runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from trashlib.training.config import MIXED_PRECISION, TrainConfig

TRAIN_EPILOG = """examples:
  python -m trashlib train --model mask2former-swin --size tiny --data data/raw/trash-synth --steps 300 \\
      --batch-size 4 --image-size 256
  python -m trashlib train --config run.yaml --lr 2e-4        # options override the YAML
  python -m trashlib train --config run.yaml --resume         # continue an interrupted run
several GPUs (Hugging Face Accelerate; --batch-size is per GPU):
  accelerate launch --multi_gpu --num_processes 4 -m trashlib train --config run.yaml
"""

HELP = {
    "model": "model name (trashlib.models: mask2former-swin, mask2former-dinat, semask-swin, upernet-swin, "
             "upernet-convnext, segformer)",
    "size": "model size preset (e.g. tiny)",
    "pretrained": "pretrained weights passed to build_model ('none' for random init)",
    "data_root": "data root in the competition layout (default: TRASHLIB_DATA or the embedded dataset)",
    "train_split": "training split name", "val_split": "validation split name ('none': no evaluation)",
    "steps": "optimizer steps", "batch_size": "images per device per micro-batch",
    "grad_accum": "micro-batches accumulated per optimizer step", "image_size": "square training crop size",
    "lr": "head learning rate (AdamW)", "weight_decay": "AdamW weight decay (not on norms and biases)",
    "backbone_lr_mult": "backbone learning rate = lr x this",
    "warmup_steps": "linear warmup steps (default 5%% of steps)",
    "poly_power": "poly decay power after warmup", "grad_clip": "max global gradient norm ('none': no clipping)",
    "scale_range": "random rescale range before cropping (two numbers)", "hflip": "horizontal flip probability",
    "color_jitter": "colour jitter strength (0: off)", "eval_every": "evaluate every N steps ('none': only at the end)",
    "eval_max_images": "evaluate on the first N validation images", "save_every": "last-checkpoint interval "
    "(default: every evaluation)", "seed": "random seed (data order, augmentation, init)",
    "mixed_precision": "mixed precision", "num_workers": "DataLoader workers (default: min(8, cores - 1))",
    "class_weighting": "'cdb': class weights (1 - IoU_c)^tau from each evaluation ('none': off)",
    "cdb_tau": "exponent of the CDB weights", "log_every": "steps per logged loss line",
    "run_name": "run folder name (default: generated from the config)", "out_dir": "runs folder (default: runs/)",
    "resume": "continue an unfinished run from its last checkpoint",
}
FLAGS = {"data_root": "--data", "out_dir": "--out"}


def _parse_value(kind):
    """argparse type for a field annotation (int, float, str, bool, unions of them); 'none' for Optional."""
    types = [t for t in (typing.get_args(kind) or (kind,)) if t is not type(None)]
    optional = type(None) in typing.get_args(kind)

    def parse(text: str):
        low = text.lower()
        if optional and low in ("none", "null"):
            return None
        if bool in types and low in ("true", "yes", "false", "no"):
            return low in ("true", "yes")
        for t in (int, float, str):
            if t in types:
                try:
                    return t(text)
                except ValueError:
                    pass
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as {' or '.join(t.__name__ for t in types)}")

    parse.__name__ = "/".join(t.__name__ for t in types)
    return parse


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model (or reuse its finished run)", epilog=TRAIN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train with trashlib.training.train; writes runs/<run-name>/.")
    p.add_argument("--config", type=Path, help="YAML of TrainConfig fields; command-line options override it")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        default = f"default {f.default!r}"
        if f.name == "resume":
            p.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=HELP[f.name])
        elif f.name == "scale_range":
            p.add_argument(flag, type=float, nargs=2, metavar=("LOW", "HIGH"), default=argparse.SUPPRESS,
                           help=f"{HELP[f.name]} ({default})")
        elif f.name == "mixed_precision":
            p.add_argument(flag, choices=MIXED_PRECISION, default=argparse.SUPPRESS, help=f"{HELP[f.name]} ({default})")
        else:
            text = HELP[f.name] if "default" in HELP[f.name] else f"{HELP[f.name]} ({default})"
            p.add_argument(flag, dest=f.name, type=_parse_value(hints[f.name]), default=argparse.SUPPRESS, help=text)
    p.add_argument("--force", action="store_true", help="retrain even if a finished run has this config")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from trashlib.training.loop import train

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    cfg = TrainConfig.from_yaml(args.config, **overrides) if args.config else TrainConfig(**overrides)
    run = train(cfg, force=args.force, progress=not args.no_progress)
    best = run.best_metrics()
    print(f"run {run.path}" + (f": best val mIoU {best['mIoU']:.4f} at step {best['step']}" if best else ""))
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="probability maps (with TTA) of a split and a submission CSV",
                       description="Predict a split with a run's model, store per-image probabilities in "
                                   "RUN_DIR/probs/, and optionally write and validate a submission CSV.")
    p.add_argument("run", type=Path, metavar="RUN_DIR", help="a training run folder (runs/<run-name>)")
    p.add_argument("--data", default=None, help="data root (default: TRASHLIB_DATA or the embedded dataset)")
    p.add_argument("--split", default="test", help="split to predict (default test)")
    p.add_argument("--submission", type=Path, help="write the argmax maps as a competition CSV here and validate it")
    p.add_argument("--tta", nargs="*", default=["hflip"], choices=["hflip", "none"],
                   help="test-time augmentations (default hflip; 'none' for plain inference)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0], help="input scales averaged (default 1.0)")
    p.add_argument("--window", type=int, nargs=2, metavar=("SIZE", "STRIDE"),
                   help="sliding-window inference with SIZE windows every STRIDE pixels")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--which", choices=["best", "last"], default="best", help="checkpoint (default best)")
    p.add_argument("--float16", action="store_true", help="store float16 maps instead of uint8-quantised ones")
    p.add_argument("--force", action="store_true", help="recompute even if identical maps exist")
    p.set_defaults(func=_predict)


def _predict(args) -> int:
    from trashlib.inference import predict, predict_to_submission

    kwargs = dict(tta=tuple(t for t in args.tta if t != "none"), scales=tuple(args.scales), window=args.window,
                  batch_size=args.batch_size, which=args.which, quantize=not args.float16, force=args.force)
    if args.submission is None:
        index = predict(args.run, args.data, args.split, **kwargs)
        print(f"wrote {len(index)} probability maps to {index.path}")
        return 0
    index, problems = predict_to_submission(args.run, args.data, submission=args.submission, split=args.split, **kwargs)
    print(f"wrote {len(index)} probability maps to {index.path}")
    for problem in problems:
        print(problem)
    print(f"{args.submission}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def add_commands(subparsers) -> None:
    """Add the `train` and `predict` subcommands to trashlib's argparse tree."""
    _add_train(subparsers)
    _add_predict(subparsers)
