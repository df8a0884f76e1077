"""The CPU training step of each model at the tiny preset, as a ratio to Mask2Former-Swin tiny's, in one run.

Every model trains on the same synthetic batch (`trashlib.models.cost.cost_table`: batch 8 at 128 px,
forward with masks, backward, AdamW), one step each per round after a warm-up round, alternating
between the models, so a machine that speeds up or slows down during the bench moves every row alike.
The ratio is each model's median step over the reference's. No target: the ratios say what a model costs
in the cpu report and which ones the cpu profile can afford to train (notebook 03 prints the same table).

    .venv/bin/python bench/bench_models.py [--models semask-fapn maskdino segvit] [--rounds 5] [--bf16]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REFERENCE = "mask2former-swin"
NEW_MODELS = ("semask-fapn", "maskdino", "segvit")  # issue 23's models


def main(argv=None) -> int:
    import torch

    from trashlib.models import MODELS
    from trashlib.models.cost import cost_table

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(NEW_MODELS), choices=sorted(MODELS))
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (one step of every model each)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast, as the cpu profile trains")
    p.add_argument("--infer-size", type=int, default=128, help="image side of the inference timing and GFLOPs")
    args = p.parse_args(argv)
    names = [REFERENCE] + [m for m in args.models if m != REFERENCE]
    start = time.perf_counter()
    table = cost_table(names, size="tiny", infer_size=args.infer_size, rounds=args.rounds, bf16=args.bf16,
                       progress=False)
    step = next(c for c in table.columns if c.startswith("train s/step"))
    table["train step vs " + REFERENCE] = table[step] / table.loc[REFERENCE, step]
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, bf16 {args.bf16}, {args.rounds} rounds, {time.perf_counter() - start:.0f} s")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
