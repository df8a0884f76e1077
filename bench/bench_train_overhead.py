"""Overhead of the training loop: `train()` step time against a bare forward/backward/AdamW step.

Both sides: the same model (build_model with the same seed), the same AdamW parameter groups and
gradient clipping, batch B at SxS. The bare loop reads batches already augmented and held in memory;
`train()` loads, augments and collates them in DataLoader workers, sets the lr, logs (one `.item()`
per step here, log_every=1) and keeps its deterministic data order. Evaluation and checkpoints are
off (val_split=None, no save interval before the end). Steady state: the first `--warmup` steps of
each side are excluded; `train()` is timed from its metrics.jsonl step times, so its start-up
(Accelerate, model build, worker start) is excluded too. Target: ratio <= 1.15.

    .venv/bin/python bench/bench_train_overhead.py [--model mask2former-swin] [--steps 20]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def bench_data(data: str | None) -> Path:
    """The given data root, or a small generated 512x512 dataset cached under data/interim/."""
    if data:
        return Path(data)
    from trashlib.paths import cache_dir
    from trashlib.synth import generate_dataset

    root = cache_dir("bench") / "synth-small"
    if not (root / "train.json").exists():
        generate_dataset(root, n_train=24, n_val=4, n_test=8, overwrite=True)
    return root


def bare_steps(cfg, batches, *, device) -> list[float]:
    """Per-step seconds of forward/backward/clip/AdamW over in-memory batches."""
    import torch

    from trashlib.models import build_model
    from trashlib.training.loop import make_optimizer

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, size=cfg.size).to(device).train()
    opt = make_optimizer(model, cfg)
    times = []
    for images, masks in batches:
        t = time.perf_counter()
        x = images.to(device).float().div_(255)
        loss = model(x, masks.to(device).long()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # same sync as the loop's per-step log
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def loop_steps(cfg) -> list[float]:
    """Per-step seconds of train() from the step times in metrics.jsonl."""
    from trashlib.training import train

    run = train(cfg, force=True, progress=False)
    t = [r["time"] for r in run.metrics("train")]
    return [b - a for a, b in zip(t, t[1:])]


def main() -> None:
    import numpy as np
    import torch

    from trashlib.data import TrashDataset
    from trashlib.config import TrainConfig
    from trashlib.training.augment import transform_from_config
    from trashlib.training.sampling import TrainStream, train_loader

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mask2former-swin")
    p.add_argument("--size", default="tiny")
    p.add_argument("--data", default=None)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds of both sides")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args()

    root = bench_data(args.data)
    out = tempfile.mkdtemp(prefix="bench-train-")
    cfg = TrainConfig(model=args.model, size=args.size, data_root=str(root), steps=args.steps,
                      batch_size=args.batch_size, image_size=args.image_size, val_split=None, eval_every=None,
                      log_every=1, num_workers=args.workers, out_dir=out, run_name="bench")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    stream = TrainStream(TrashDataset(root, split="train"), transform_from_config(cfg), seed=cfg.seed)
    batches = list(train_loader(stream, start=0, end=args.steps, batch_size=args.batch_size))

    # alternate the sides so that a change of machine load hits both
    bare, loop = [], []
    for _ in range(args.repeats):
        bare += bare_steps(cfg, batches, device=device)[args.warmup:]
        loop += loop_steps(cfg)[args.warmup - 1:]
    b, l_ = float(np.median(bare)), float(np.median(loop))
    print(f"device {device}, torch threads {torch.get_num_threads()}, DataLoader workers {cfg.workers}")
    print(f"{args.model}-{args.size}, batch {args.batch_size} at {args.image_size}x{args.image_size}, "
          f"{len(bare)} timed steps per side (median)")
    print(f"bare step  {b * 1000:8.1f} ms  (mean {np.mean(bare) * 1000:.1f})")
    print(f"train()    {l_ * 1000:8.1f} ms  (mean {np.mean(loop) * 1000:.1f})")
    print(f"ratio      {l_ / b:8.3f}  (target <= 1.15)")


if __name__ == "__main__":
    main()
