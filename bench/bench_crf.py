"""DenseCRF seconds per 512x512 image (11 classes, 5 iterations): one process against the pool on every core.

Three timings on the same images, in one run: the bare `dense_crf` call in this process; `crf_index`
with workers=1 (in-process: loading the maps and the image, CRF, storing the result); `crf_index` with
the pool on every core (wall-clock, pool start-up included). The speed-up is the ratio of the last two.
Probabilities are made from the label maps (0.6 on the true class) mixed with smooth noise, so the
CRF has real work; images are the split's own photos. Goal of issue 9: <= 0.4 s per image wall-clock
on 2 cores.

    .venv/bin/python bench/bench_crf.py [--data ROOT] [--split val] [--images 16] [--iters 5]

Without --data: the embedded generated dataset (512x512 images).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trashlib.data import TrashDataset  # noqa: E402
from trashlib.postprocess.crf import CRFParams, crf_index, dense_crf  # noqa: E402
from trashlib.predict.probs import ProbWriter  # noqa: E402


def synthetic_probs(mask: np.ndarray, rng, *, num_classes: int = 11) -> np.ndarray:
    """(C, H, W): half a 0.6-confident map of `mask`, half a softmax of smooth random logits (32 px cells)."""
    h, w = mask.shape
    logits = rng.normal(size=(num_classes, -(-h // 32), -(-w // 32))) * 2
    logits = logits.repeat(32, 1).repeat(32, 2)[:, :h, :w]
    noise = np.exp(logits - logits.max(0))
    noise /= noise.sum(0)
    sure = np.full((num_classes, h, w), 0.4 / (num_classes - 1))
    np.put_along_axis(sure, mask[None].astype(np.int64), 0.6, axis=0)
    return (0.5 * sure + 0.5 * noise).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="data root (default: the embedded dataset)")
    p.add_argument("--split", default="val", help="a split with label maps (default val)")
    p.add_argument("--images", type=int, default=16, help="images timed (default 16)")
    p.add_argument("--iters", type=int, default=5, help="mean-field iterations (default 5)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    dataset = TrashDataset(args.data, split=args.split)
    n = min(args.images, len(dataset))
    rng = np.random.default_rng(args.seed)
    params = CRFParams(iters=args.iters)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="bench-crf-") as tmp:
        tmp = Path(tmp)
        items = [{"image_id": dataset.image_ids[i], "file_name": dataset.file_names[i],
                  "shape": [11, *dataset.load_image(i).shape[:2]]} for i in range(n)]
        writer = ProbWriter(tmp / "input" / "maps", items, {"bench": "crf", "seed": args.seed})
        for i in range(n):
            writer.write(i, synthetic_probs(dataset.load_mask(i), rng))
        index = writer.close()
        shape = tuple(items[0]["shape"][1:])

        t = time.perf_counter()
        for i in range(n):
            dense_crf(index.load(i), dataset.load_image(i), **params.as_dict())
        bare = (time.perf_counter() - t) / n

        timings, cpu = {}, {}
        for workers in (1, cores):
            t, c = time.perf_counter(), time.process_time()
            crf_index(index, args.data, args.split, params, workers=workers, out_dir=tmp / f"w{workers}",
                      progress=False)
            timings[workers], cpu[workers] = (time.perf_counter() - t) / n, (time.process_time() - c) / n

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average before: {load_before:.1f}; other processes share these cores, so wall-clock times "
          f"are upper bounds")
    print(f"DenseCRF on {n} images of {shape[0]}x{shape[1]}, 11 classes, {args.iters} iterations, "
          f"{cores} cores (load average {load:.1f} at the end)")
    print(f"bare dense_crf, one process:        {bare:.3f} s/image")
    print(f"crf_index, workers=1 (in-process):  {timings[1]:.3f} s/image (load + CRF + store; "
          f"{cpu[1]:.3f} CPU s/image -> {cpu[1] / cores:.3f} s/image on {cores} idle cores)")
    print(f"crf_index, pool of {cores} processes:     {timings[cores]:.3f} s/image wall-clock")
    print(f"speed-up of the pool: {timings[1] / timings[cores]:.2f}x on {cores} cores "
          f"(goal: <= 0.4 s/image wall-clock on 2 cores: {'met' if timings[cores] <= 0.4 else 'NOT met'})")


if __name__ == "__main__":
    main()
