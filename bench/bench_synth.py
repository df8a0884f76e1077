"""Time the generated dataset: per-scene render cost, and the whole default dataset with N workers.

    .venv/bin/python bench/bench_synth.py [--workers 2] [--scenes 30] [--full OUT]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from trashlib.synth import generate_dataset
from trashlib.synth.scene import encode_scene


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scenes", type=int, default=30, help="scenes rendered in this process for the per-scene time")
    p.add_argument("--full", type=Path, default=None, help="also write the default 500-image dataset here")
    args = p.parse_args()
    encode_scene(0)  # imports and first-call costs out of the timing
    start, cpu = time.perf_counter(), time.process_time()
    anns = sum(len(encode_scene((0, i))[1]) for i in range(args.scenes))
    per, per_cpu = (time.perf_counter() - start) / args.scenes, (time.process_time() - cpu) / args.scenes
    print(f"render+JPEG: {per * 1000:.0f} ms wall, {per_cpu * 1000:.0f} ms CPU per 512x512 scene "
          f"({anns / args.scenes:.1f} objects); 500 images on {args.workers} idle cores: "
          f"~{500 * per_cpu / args.workers:.0f} s")
    out = args.full or Path(tempfile.mkdtemp()) / "synth"
    start = time.perf_counter()
    generate_dataset(out, workers=args.workers, overwrite=args.full is not None)
    print(f"default dataset (500 images) with {args.workers} workers: {time.perf_counter() - start:.1f} s -> {out}")
    if args.full is None:
        shutil.rmtree(out.parent)


if __name__ == "__main__":
    main()
