"""Label-map datasets: training images whose masks are PNG label maps, not COCO polygons.

Offline copy-paste (04) and pseudo labels (06) make such sets under data/interim/label-maps/. A set
is a folder with `index.json` and the files it lists:

    {"version": 1, "recipe": {...}, "items": [{"file_name": ..., "image": ..., "mask": ...}, ...]}

`image` and `mask` are paths relative to the folder, or absolute (pseudo labels point at the test
images of the data root instead of copying them). A mask is a single-channel uint8 PNG whose pixels
are category ids, with 255 = ignore (pixels the set does not label: low-confidence pseudo labels).
`write_label_maps` builds a set in a temporary folder and renames it into place when complete, so a
set on disk is always whole; the temporary folder's name holds the writer's host and process id, so one
a killed writer left is removed by the next writer (`remove_stale_temporaries`) and a live writer's is
not. `LabelMapDataset` reads a set with the same interface as `TrashDataset`; `verify` checks every item
up front, before a training run draws it.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from trashlib import paths
from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.data.coco import DatasetError, Problem
from trashlib.data.images import read_image
from trashlib.io import read_json, write_json

INDEX_FILE = "index.json"
MARKER_FILE = ".trashlib-label-maps"  # written into every set: only such folders are ever replaced
VERIFY_VERSION = 1  # bump when `verify` checks more


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
        if not isinstance(items, list) or not all(
                isinstance(it, dict) and all(isinstance(it.get(k), str) and it[k] for k in ("file_name", "image", "mask"))
                for it in items):
            raise DatasetError(f"{self.path}: 'items' must be a list of {{file_name, image, mask}} entries (texts)")
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

    def files(self, i: int) -> tuple[Path, Path]:
        """The image and label-map files of item i."""
        it = self.items[i]
        return self.root / it["image"], self.root / it["mask"]

    def verify(self) -> None:
        """Check every item now, not when training draws it: the image's header readable, the label map
        readable, single-channel 8-bit, of its image's size, with values 0..NUM_CLASSES-1 or 255.

        DatasetError naming the set and the item. A verified set is remembered by the sha1 of its index
        and its files' sizes and times (under data/interim/), so it is read once, not at every run.
        """
        key = self._verify_key()
        done = paths.cache_dir("label-map-checks") / f"{key}.ok" if key else None
        if done is not None and done.exists():
            return
        for i, it in enumerate(self.items):
            image_path, _ = self.files(i)
            where = f"item {i} ({it['file_name']})"
            try:
                with Image.open(image_path) as im:  # the header only: the pixels are decoded when drawn
                    width, height = im.size
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise DatasetError([Problem(str(self.path), where, f"image file {image_path} cannot be read "
                                                                   f"({e.__class__.__name__})")]) from None
            mask = self.load_mask(i)
            if mask.shape != (height, width):
                raise DatasetError([Problem(str(self.path), where, f"label map is {mask.shape[1]}x{mask.shape[0]}, "
                                                                   f"its image {image_path} {width}x{height}")])
        if done is not None:
            done.touch()

    def _verify_key(self) -> str | None:
        h = hashlib.sha1(f"{VERIFY_VERSION}\n{self.root}\n{self.sha1}\n".encode())
        for i in range(len(self)):
            for path in self.files(i):
                try:
                    st = path.stat()
                except OSError:
                    return None  # verify names the missing file
                h.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        return h.hexdigest()


def _owner() -> str:
    """This process, as temporary names spell it: host-pid."""
    return f"{re.sub(r'[^A-Za-z0-9.-]+', '-', socket.gethostname()) or 'host'}-{os.getpid()}"


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary folders a killed `write_label_maps` of `folder` left beside it; returns them.

    Only names this module makes (`.<folder name>.<host>-<pid>.XXXXXXXX.tmp`) of this host whose process
    is gone: a live writer's folder, another host's, or anything else is left alone.
    """
    folder = Path(folder).expanduser().resolve()
    pattern = re.compile(re.escape(f".{folder.name}.") + r"(?P<host>.+)-(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp")
    host = _owner().rsplit("-", 1)[0]
    removed = []
    for p in (folder.parent.iterdir() if folder.parent.is_dir() else ()):
        m = pattern.fullmatch(p.name)
        if m and m["host"] == host and not _alive(int(m["pid"])) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process (or a number no pid can be): keep it
        return True
    return True


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
    remove_stale_temporaries(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{_owner()}.", suffix=".tmp", dir=folder.parent))
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
