"""Label-map datasets: training images whose masks are PNG label maps, not COCO polygons.

Offline copy-paste (04) and pseudo labels (06) make such sets under data/interim/label-maps/. A set
is a folder with `index.json` and the files it lists:

    {"version": 1, "recipe": {...}, "items": [{"file_name": ..., "image": ..., "mask": ...}, ...]}

`image` and `mask` are paths relative to the folder, or absolute (pseudo labels point at the test
images of the data root instead of copying them). A mask is a single-channel uint8 PNG whose pixels
are category ids, with 255 = ignore (pixels the set does not label: low-confidence pseudo labels).
`write_label_maps` builds a set in a temporary folder and renames it into place when complete, so a
set on disk is always whole; `LabelMapDataset` reads one with the same interface as `TrashDataset`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.data.coco import DatasetError, Problem
from trashlib.data.images import read_image
from trashlib.io import read_json, write_json

INDEX_FILE = "index.json"
MARKER_FILE = ".trashlib-label-maps"  # written into every set: only such folders are ever replaced


def read_label_map(path: str | os.PathLike, *, file: str = "", item: str | None = None) -> np.ndarray:
    """A PNG label map as (H, W) uint8; DatasetError naming the file if it is missing or not one channel."""
    path = Path(path)
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if mask is None:
        raise DatasetError([Problem(file or str(path), item, f"label map {path} is missing or not an image")])
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise DatasetError([Problem(file or str(path), item, f"label map {path} must be single-channel 8-bit, "
                                                             f"got shape {mask.shape} {mask.dtype}")])
    return mask


class LabelMapDataset:
    """A label-map set; `ds[i]` -> (image, mask) with 255 = ignore, like TrashDataset.

    Shape:
        image: (H, W, 3) uint8 RGB; mask: (H, W) uint8, pixel value = category_id or 255.
    """

    def __init__(self, folder: str | os.PathLike):
        self.root = Path(folder).expanduser().resolve()
        self.path = self.root / INDEX_FILE
        if not self.path.is_file():
            raise DatasetError(f"{self.root}: not a label-map dataset (no {INDEX_FILE})")
        raw = self.path.read_bytes()
        self.sha1 = hashlib.sha1(raw).hexdigest()
        meta = read_json(self.path)
        items = meta.get("items") if isinstance(meta, dict) else None
        if not isinstance(items, list) or not all(isinstance(it, dict) and {"file_name", "image", "mask"} <= set(it)
                                                  for it in items):
            raise DatasetError(f"{self.path}: 'items' must be a list of {{file_name, image, mask}} entries")
        self.split = self.root.name
        self.recipe = meta.get("recipe", {})
        self.items = items
        self.file_names = [it["file_name"] for it in items]
        self.has_masks = True

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"LabelMapDataset({str(self.root)!r}, {len(self)} images)"

    def load_image(self, i: int) -> np.ndarray:
        """Image i as (H, W, 3) uint8 RGB."""
        it = self.items[i]
        return read_image(self.root / it["image"], file=str(self.path), item=f"item {i} ({it['file_name']})")

    def load_mask(self, i: int) -> np.ndarray:
        """Label map i as (H, W) uint8 (255 = ignore)."""
        it = self.items[i]
        where = f"item {i} ({it['file_name']})"
        mask = read_label_map(self.root / it["mask"], file=str(self.path), item=where)
        bad = (mask >= NUM_CLASSES) & (mask != IGNORE_INDEX)
        if bad.any():
            raise DatasetError([Problem(str(self.path), where, f"label map holds value {int(mask[bad][0])}, "
                                                               f"neither a class id (0-{NUM_CLASSES - 1}) nor 255")])
        return mask

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.load_image(i), self.load_mask(i)
        if image.shape[:2] != mask.shape:
            raise DatasetError([Problem(str(self.path), f"item {i}", f"image is {image.shape[1]}x{image.shape[0]}, "
                                                                     f"its label map {mask.shape[1]}x{mask.shape[0]}")])
        return image, mask


def write_label_maps(folder: str | os.PathLike, samples, *, recipe: dict | None = None,
                     overwrite: bool = False) -> LabelMapDataset:
    """Write a label-map set from (file_name, image or image path, mask) samples; returns it.

    An image given as a path is referenced, not copied; an array is saved as PNG. The set is built
    in a temporary folder beside `folder` and renamed into place when every file is written. An
    existing `folder` is replaced only with `overwrite=True` and only if this module made it.
    """
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not (overwrite and (folder / MARKER_FILE).exists()):
        why = "pass overwrite=True to replace it" if (folder / MARKER_FILE).exists() else \
            "it was not made by trashlib, so it is left alone"
        raise FileExistsError(f"{folder} already exists: {why}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        items = []
        for k, (name, image, mask) in enumerate(samples):
            mask = np.asarray(mask)
            if mask.ndim != 2 or mask.dtype != np.uint8:
                raise ValueError(f"sample {k} ({name}): mask must be (H, W) uint8, got {mask.shape} {mask.dtype}")
            if isinstance(image, (str, os.PathLike)):
                image_ref = str(Path(image).expanduser().resolve())
            else:
                image_ref = f"images/{k:05d}.png"
                cv2.imwrite(str(tmp / image_ref), cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(tmp / f"masks/{k:05d}.png"), mask)
            items.append({"file_name": str(name), "image": image_ref, "mask": f"masks/{k:05d}.png"})
        write_json(tmp / INDEX_FILE, {"version": 1, "recipe": recipe or {}, "items": items})
        (tmp / MARKER_FILE).touch()
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return LabelMapDataset(folder)
