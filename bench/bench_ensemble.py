"""Peak memory of the streamed soft ensemble against stacking everything in memory, at 25 and 100 images.

Inputs: 3 probability indices of N synthetic 512x512 maps of 11 classes (smooth random logits, stored
uint8 like real predictions). Each measurement runs in its own process and reports its peak resident
memory (VmHWM) above its resident memory once the inputs are opened (VmRSS):
- streamed: `trashlib.postprocess.ensemble.ensemble` (one image's maps at a time, written through ProbWriter);
- stacked: the peers' soft vote, a preallocated (N, C, H, W) float16 sum over the models, then stored
  image by image through the same ProbWriter.
Printed: both peaks at each N, stacked/streamed at the largest N, and streamed(largest)/streamed(smallest)
(goal: flat in the number of images, ratio ~1).

    .venv/bin/python bench/bench_ensemble.py [--images 25 100] [--models 3] [--size 512]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trashlib.postprocess.ensemble import ensemble  # noqa: E402
from trashlib.predict.probmap import quantize_probs  # noqa: E402
from trashlib.predict.probs import ProbIndex, ProbWriter  # noqa: E402

NUM_CLASSES = 11


def memory_mib() -> tuple[float, float]:
    """(current resident, peak resident) memory of this process in MiB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def make_inputs(folder: Path, *, models: int, images: int, size: int, seed: int = 0) -> list[str]:
    """`models` indices of `images` maps each (8 distinct smooth maps per model, cycled), stored uint8."""
    rng = np.random.default_rng(seed)
    items = [{"image_id": i, "file_name": f"batch_01/{i:04d}.jpg", "shape": [NUM_CLASSES, size, size]}
             for i in range(images)]
    folders = []
    for m in range(models):
        maps = []
        for _ in range(8):
            logits = rng.normal(size=(NUM_CLASSES, size // 32, size // 32)) * 3
            logits = logits.repeat(32, 1).repeat(32, 2)
            e = np.exp(logits - logits.max(0))
            maps.append(quantize_probs((e / e.sum(0)).astype(np.float32)))
        writer = ProbWriter(folder / f"model{m}" / f"bench_test-{images}", items, {"bench": m, "images": images,
                                                                                   "split": "test"})
        for i in writer.todo:
            writer.write(i, maps[i % len(maps)])
        folders.append(str(writer.close().path))
    return folders


def stacked_vote(indices, out: Path) -> None:
    """The peers' way: one dataset-sized float16 array, every model added in, then stored."""
    first = indices[0]
    c, h, w = first.items[0]["shape"]
    total = np.zeros((len(first), c, h, w), np.float16)
    for index in indices:
        for i in range(len(index)):
            total[i] += (index.load(i) / len(indices)).astype(np.float16)
    writer = ProbWriter(out, [{k: it[k] for k in ("image_id", "file_name", "shape")} for it in first.items],
                        {"bench": "stacked"})
    for i in range(len(first)):
        writer.write(i, total[i].astype(np.float32))
    writer.close()


def child(mode: str, out: str, folders: list[str]) -> None:
    indices = [ProbIndex(f) for f in folders]
    rss, _ = memory_mib()
    if mode == "streamed":
        ensemble(indices, out_dir=out, progress=False)
    else:
        stacked_vote(indices, Path(out) / "stacked")
    _, peak = memory_mib()
    print(json.dumps({"baseline_mib": rss, "peak_mib": peak, "above_mib": peak - rss}))


def measure(mode: str, out: Path, folders: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(out), *folders]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, nargs="+", default=[25, 100], help="image counts (default 25 100)")
    p.add_argument("--models", type=int, default=3)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2:])
        return

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        tmp = Path(tmp)
        for n in args.images:
            folders = make_inputs(tmp / "inputs", models=args.models, images=n, size=args.size)
            for mode in ("streamed", "stacked"):
                results[mode, n] = measure(mode, tmp / f"{mode}-{n}", folders)
                r = results[mode, n]
                print(f"{mode:>8}, {n:4d} images x {args.models} models of {args.size}x{args.size}: peak "
                      f"{r['above_mib']:7.1f} MiB above the {r['baseline_mib']:.0f} MiB after start-up")
    lo, hi = min(args.images), max(args.images)
    stream_hi, stack_hi = results["streamed", hi]["above_mib"], results["stacked", hi]["above_mib"]
    print(f"stacked / streamed at {hi} images: {stack_hi / stream_hi:.1f}x")
    print(f"streamed {hi} / {lo} images: {stream_hi / results['streamed', lo]['above_mib']:.2f}x (flat: ~1); "
          f"stacked {hi} / {lo}: {stack_hi / results['stacked', lo]['above_mib']:.2f}x")
    if hi > lo:
        slope = {mode: (results[mode, hi]["above_mib"] - results[mode, lo]["above_mib"]) / (hi - lo)
                 for mode in ("streamed", "stacked")}
        at = {mode: results[mode, hi]["above_mib"] + slope[mode] * (819 - hi) for mode in slope}
        print(f"per extra image: streamed {slope['streamed']:+.2f} MiB, stacked {slope['stacked']:+.2f} MiB; "
              f"extrapolated to the 819 test images: streamed {at['streamed']:.0f} MiB, "
              f"stacked {at['stacked']:.0f} MiB ({at['stacked'] / at['streamed']:.1f}x)")


if __name__ == "__main__":
    main()
