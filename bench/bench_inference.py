"""Inference throughput: images/s of `predict()` without TTA, with hflip, with hflip + 3 scales.

Timed: the whole `predict()` call on a split of 512x512 images (DataLoader reading and decoding,
TTA forward passes, uint8 quantisation, np.savez_compressed in writer threads, index.json), with a
model already built; not timed: building the model and the first (warm-up) call. Also reports the
bare `predict_proba` time per image and the stored size per image (uint8 vs float16).

    .venv/bin/python bench/bench_inference.py [--model segformer] [--images 8]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import torch

    from bench_train_overhead import bench_data
    from trashlib.data import TrashDataset
    from trashlib.predict.inference import predict
    from trashlib.models import build_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="segformer")
    p.add_argument("--size", default="tiny")
    p.add_argument("--data", default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=1)
    args = p.parse_args()

    root = bench_data(args.data)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = build_model(args.model, size=args.size).to(device).eval()
    dataset = TrashDataset(root, split=args.split)
    n = len(dataset)
    image = torch.from_numpy(dataset.load_image(0).copy()).permute(2, 0, 1)[None].float().div(255).to(device)
    shape = tuple(image.shape[-2:])
    model.predict_proba(image)
    t = time.perf_counter()
    for _ in range(3):
        model.predict_proba(image)
    if device == "cuda":
        torch.cuda.synchronize()
    bare = (time.perf_counter() - t) / 3
    print(f"{args.model}-{args.size} on {device}, {n} images of {shape[0]}x{shape[1]}, batch {args.batch_size}")
    print(f"bare predict_proba: {bare * 1000:.0f} ms/image ({1 / bare:.2f} images/s)")

    out = Path(tempfile.mkdtemp(prefix="bench-infer-"))
    settings = [("none", (), (1.0,), True), ("hflip", ("hflip",), (1.0,), True),
                ("hflip + scales 0.75/1/1.25", ("hflip",), (0.75, 1.0, 1.25), True),
                ("none, float16 store", (), (1.0,), False)]
    predict(model, root, args.split, tta=(), out_dir=out / "warm", progress=False)  # worker/thread warm-up
    for label, tta, scales, quantize in settings:
        t = time.perf_counter()
        index = predict(model, root, args.split, tta=tta, scales=scales, out_dir=out / label.replace(" ", "_"),
                        quantize=quantize, batch_size=args.batch_size, force=True, progress=False)
        dt = time.perf_counter() - t
        size = sum((index.path / it["path"]).stat().st_size for it in index.items) / len(index)
        print(f"{label:<28} {n / dt:6.2f} images/s  {dt / n * 1000:6.0f} ms/image  {size / 1024:6.0f} KiB/image")


if __name__ == "__main__":
    main()
