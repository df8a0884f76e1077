"""Data-loading throughput: TrashDataset (warm on-disk cache) against the competition peers' loader.

The baseline is the peers' CustomDataLoader: cv2.imread + BGR->RGB, then pycocotools `annToMask`
for every annotation of the image, sorted by area, painted into a float64 map - on every access.
Both run one epoch of the train split through albumentations HorizontalFlip(p=0.5) with the mask,
on the same images, in the same process, alternating, best of `--repeats` epochs (wall and CPU time).

    python bench/bench_loader.py [--data ROOT] [--split train] [--repeats 3]

Without --data: the embedded generated dataset if present, else a 512x512 dataset with ~8 polygons
of ~40 points per image (the competition's annotation density), made once under data/interim/bench/.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from trashlib import paths  # noqa: E402
from trashlib.data import TrashDataset  # noqa: E402
from trashlib.data.images import read_image  # noqa: E402
from trashlib.data.raster import rasterize  # noqa: E402


class PeersDataset:
    """The baseline: what the competition's notebooks did per item (no cache)."""

    def __init__(self, json_path: Path, transform):
        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(json_path))
        self.root, self.transform = json_path.parent, transform
        self.ids = [im["id"] for im in json.loads(json_path.read_text())["images"]]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        info = self.coco.loadImgs(self.ids[i])[0]
        image = cv2.cvtColor(cv2.imread(str(self.root / info["file_name"])), cv2.COLOR_BGR2RGB)
        anns = sorted(self.coco.loadAnns(self.coco.getAnnIds(imgIds=info["id"])), key=lambda a: a["area"], reverse=True)
        mask = np.zeros((info["height"], info["width"]))
        for ann in anns:
            mask[self.coco.annToMask(ann) == 1] = ann["category_id"]
        out = self.transform(image=image, mask=mask.astype(np.uint8))
        return out["image"], out["mask"]


def make_bench_dataset(root: Path, *, n: int = 160, size: int = 512, objects: int = 8, points: int = 40,
                       seed: int = 0) -> Path:
    """Photo-like JPEGs (smooth texture + noise, ~q90) with star-shaped polygons, in the competition layout."""
    from pycocotools import mask as mask_utils

    from trashlib.classes import coco_categories

    if (root / "train.json").exists():
        return root
    rng = np.random.default_rng(seed)
    (root / "batch_01").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        low = rng.integers(40, 200, (size // 32, size // 32, 3)).astype(np.uint8)
        img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        for _ in range(objects):
            c = rng.uniform(0.15, 0.85, 2) * size
            angles = np.sort(rng.uniform(0, 2 * np.pi, points))
            radii = rng.uniform(0.04, 0.25) * size * rng.uniform(0.6, 1.0, points)
            poly = np.stack([c[0] + radii * np.cos(angles), c[1] + radii * np.sin(angles)], 1).clip(0, size - 1)
            flat = poly.round(1).ravel().tolist()
            rle = mask_utils.merge(mask_utils.frPyObjects([flat], size, size))
            obj = mask_utils.decode(rle).astype(bool)
            img[obj] = np.clip(img[obj] * 0.5 + rng.integers(0, 255, 3) * 0.5, 0, 255)
            anns.append({"id": len(anns), "image_id": i, "category_id": int(rng.integers(1, 11)), "iscrowd": 0,
                         "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(),
                         "segmentation": [flat]})
        cv2.imwrite(str(root / "batch_01" / f"{i:04d}.jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": i, "file_name": f"batch_01/{i:04d}.jpg", "width": size, "height": size})
    n_val = n // 5
    split = {"train": images[n_val:], "val": images[:n_val], "train_all": images, "test": []}
    for name, ims in split.items():
        ids = {im["id"] for im in ims}
        coco = {"images": ims, "categories": coco_categories(), "annotations": [a for a in anns if a["image_id"] in ids]}
        (root / f"{name}.json").write_text(json.dumps(coco))
    return root


def epoch_seconds(ds) -> tuple[float, float]:
    """(wall, CPU) seconds of one pass over the dataset; CPU time is steadier on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(len(ds)):
        ds[i]
    return time.perf_counter() - wall, time.process_time() - cpu


def per_image_ms(fn, n: int) -> float:
    """CPU milliseconds per call of fn(i) over i < n."""
    start = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - start) / n * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="data root (default: embedded dataset or a generated one)")
    p.add_argument("--split", default="train")
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per loader; the best counts")
    args = p.parse_args(argv)
    import albumentations as A

    if args.data is not None:
        root = args.data
    elif (paths.SYNTH_DIR / "train.json").exists():
        root = paths.SYNTH_DIR
    else:
        root = make_bench_dataset(paths.cache_dir("bench", "loader-512"))
    flip = lambda: A.Compose([A.HorizontalFlip(p=0.5)], seed=0)  # noqa: E731
    loaders = {
        "peers' loader (annToMask every access)": PeersDataset(root / f"{args.split}.json", flip()),
        "TrashDataset (mask cache)": TrashDataset(root, args.split, flip()),
        "TrashDataset (mask + decoded-image cache)": TrashDataset(root, args.split, flip(), cache_images=True),
    }
    ds = loaders["TrashDataset (mask cache)"]
    n_anns = sum(len(ds.annotations(i)) for i in range(len(ds)))
    print(f"data: {root} split {args.split}: {len(ds)} images, {n_anns / len(ds):.1f} annotations/image")
    for loader in loaders.values():  # warm: fill the caches, read every file once (OS page cache)
        epoch_seconds(loader)
    times = {name: [] for name in loaders}
    for _ in range(args.repeats):  # alternate, so a burst of load elsewhere hits every loader alike
        for name, loader in loaders.items():
            times[name].append(epoch_seconds(loader))
    wall = {name: min(t[0] for t in ts) for name, ts in times.items()}
    cpu = {name: min(t[1] for t in ts) for name, ts in times.items()}
    base = next(iter(loaders))
    print(f"\n{'loader (best of ' + str(args.repeats) + ' epochs)':<44} {'s/epoch':>8} {'images/s':>9} "
          f"{'speed-up':>9} {'CPU s':>7} {'CPU speed-up':>12}")
    for name in loaders:
        print(f"{name:<44} {wall[name]:8.3f} {len(ds) / wall[name]:9.1f} {wall[base] / wall[name]:8.2f}x "
              f"{cpu[name]:7.3f} {cpu[base] / cpu[name]:11.2f}x")

    infos = ds.image_infos
    anns = [ds.annotations(i) for i in range(len(ds))]
    flipper = flip()
    png_dir = Path(tempfile.mkdtemp(dir=paths.cache_dir("bench")))
    pngs = [png_dir / f"{i}.png" for i in range(len(ds))]
    for i, path in enumerate(pngs):  # the cache format we did not choose, for the record
        cv2.imwrite(str(path), ds.load_mask(i), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    image, mask = ds.load_image(0), ds.load_mask(0)
    parts = {
        "cv2.imread + cvtColor (peers)": lambda i: cv2.cvtColor(cv2.imread(str(root / infos[i]["file_name"])), cv2.COLOR_BGR2RGB),
        "read_image (imdecode to RGB, checks)": lambda i: read_image(root / infos[i]["file_name"]),
        "annToMask loop (peers)": lambda i: loaders["peers' loader (annToMask every access)"].coco.annToMask(anns[i][0]) if anns[i] else None,
        "rasterize (this package, cache miss)": lambda i: rasterize(anns[i], height=infos[i]["height"], width=infos[i]["width"]),
        "mask from cache (uint8 memmap)": ds.load_mask,
        "mask from a PNG per image (alternative)": lambda i: cv2.imread(str(pngs[i]), cv2.IMREAD_UNCHANGED),
        "image from decoded-image cache": loaders["TrashDataset (mask + decoded-image cache)"].load_image,
        "HorizontalFlip(p=0.5) image + mask": lambda i: flipper(image=image, mask=mask),
    }
    print(f"\n{'where the time goes (CPU)':<44} {'ms/image':>8}")
    for name, fn in parts.items():
        ms = per_image_ms(fn, len(ds))
        if name == "annToMask loop (peers)":  # one annotation timed; scale to the image's count
            name, ms = "annToMask x annotations (peers, estimate)", ms * n_anns / len(ds)
        print(f"{name:<44} {ms:8.2f}")
    shutil.rmtree(png_dir)
    ours, cached = "TrashDataset (mask cache)", "TrashDataset (mask + decoded-image cache)"
    print(f"\nspeed-up over the peers' loader, wall (CPU): TrashDataset {wall[base] / wall[ours]:.2f}x "
          f"({cpu[base] / cpu[ours]:.2f}x); with the opt-in decoded-image cache "
          f"{wall[base] / wall[cached]:.1f}x ({cpu[base] / cpu[cached]:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
