"""Cost of online copy & paste per training sample, as a ratio to the augmentation pipeline without it.

Both sides are `TrainStream` items (read the image and its cached label map, augment, make tensors)
at the same sample positions, so they load the same images and draw the same augmentation; the
pasting side adds `online_paster(cfg)`: objects from the in-memory donor bank (built once, at the
pipeline's working resolution, its time reported apart), or a ClassMix partner read from the
dataset. Rounds alternate the variants so that load on the machine hits them alike; the ratio is the
median over rounds of (time with paste) / (time without). Two pipelines: the gpu profile's (512
crops at full resolution, scale 0.5-2) and the cpu profile's (working resolution 128). Goal: object
pasting at its default probability <= 1.3x.

    .venv/bin/python bench/bench_copy_paste.py [--data ROOT] [--samples 64] [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

PIPELINES = {"gpu recipe: 512 crops": dict(image_size=512),
             "cpu recipe: work size 128": dict(image_size=128, work_size=128, scale_range=(0.75, 1.33))}
VARIANTS = {"objects, uniform, p=0.5 (default)": dict(copy_paste="online"),
            "objects, inverse, p=1": dict(copy_paste="online", cp_donors="inverse", cp_prob=1.0),
            "ClassMix, p=0.5": dict(copy_paste="online", cp_donors="classmix")}


def seconds_per_sample(stream, positions) -> float:
    t = time.perf_counter()
    for p in positions:
        stream[p]
    return (time.perf_counter() - t) / len(positions)


def main() -> None:
    from trashlib.config import TrainConfig
    from trashlib.data import TrashDataset, resolve_data_root
    from trashlib.data.donors import donor_bank
    from trashlib.data.pasted import online_paster
    from trashlib.training.augment import transform_from_config
    from trashlib.training.sampling import TrainStream

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data root (default: TRASHLIB_DATA or the embedded dataset)")
    parser.add_argument("--samples", type=int, default=64, help="sample positions timed per round and variant")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    root = resolve_data_root(args.data)
    dataset = TrashDataset(root, "train")
    dataset.build_cache(progress=False)  # label maps rasterised before timing, as after a first epoch
    for work_size in (None, 128):  # the banks the two pipelines paste from
        t = time.perf_counter()
        bank = donor_bank(root, "train", work_size=work_size)
        print(f"{bank}\n  at work size {work_size}: built in {time.perf_counter() - t:.1f} s (once per process)")
    print()
    positions = range(args.samples)
    for pipeline, settings in PIPELINES.items():
        base = TrainConfig(data_root=str(root), color_jitter=0.2, **settings)
        streams = {"none": TrainStream(dataset, transform_from_config(base), seed=0)}
        for name, fields in VARIANTS.items():
            cfg = base.replace(**fields)
            streams[name] = TrainStream(dataset, transform_from_config(cfg), seed=0, paste=online_paster(cfg))
        for stream in streams.values():  # warm-up: page cache, lazy imports
            seconds_per_sample(stream, positions[:8])
        times = {name: [] for name in streams}
        for _ in range(args.rounds):
            for name, stream in streams.items():
                times[name].append(seconds_per_sample(stream, positions))
        print(f"{pipeline}: {1000 * statistics.median(times['none']):.2f} ms per sample without copy & paste")
        for name in VARIANTS:
            ratio = statistics.median(a / b for a, b in zip(times[name], times["none"]))
            goal = "  (goal <= 1.3x)" if name.endswith("(default)") else ""
            print(f"  {name:<36} {1000 * statistics.median(times[name]):6.2f} ms   {ratio:.2f}x{goal}")
        print()


if __name__ == "__main__":
    main()
