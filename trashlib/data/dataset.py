"""TrashDataset: (image, mask) pairs of one split, label maps rasterised once and cached on disk."""
from __future__ import annotations

import hashlib
import operator
import os
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from trashlib import paths
from trashlib.data.cache import FlatCache
from trashlib.data.coco import ANNOTATED_SPLITS, DatasetError, load_coco
from trashlib.data.embedded import resolve_data_root
from trashlib.data.images import read_image
from trashlib.data.raster import rasterize
from trashlib.data.values import label
from trashlib.progress import shown

CACHE_VERSION = "v1"  # bump when the rasteriser or the cache layout changes


def available_splits(root: str | os.PathLike) -> list[str]:
    """Names of the JSON files in a data root (the splits TrashDataset can open)."""
    return sorted(p.stem for p in Path(root).glob("*.json"))


class TrashDataset:
    """One split of a competition-layout data root; `ds[i]` -> (image, mask), mask None without labels.

    Shape:
        image: (H, W, 3) uint8 RGB; mask: (H, W) uint8, pixel value = category_id.

    Masks are rasterised on first access and kept in a memory-mapped file under
    data/interim/masks/<sha1 of the JSON>/, so later epochs (and other processes) only copy them.
    `cache_images=True` also keeps decoded images there (H*W*3 bytes each), which removes JPEG
    decoding from every epoch after the first, at the cost of disk space.
    """

    def __init__(self, data_root: str | os.PathLike | None = None, split: str = "train", *,
                 cache_images: bool = False):
        self.root = resolve_data_root(data_root)
        self.split = split
        self.path = self.root / f"{split}.json"
        if not self.path.is_file():
            raise DatasetError(f"{self.path}: no split {split!r} in {self.root}; "
                               f"available: {', '.join(available_splits(self.root)) or 'none'}")
        coco = load_coco(self.path, annotated=split in ANNOTATED_SPLITS)
        if coco.warnings:
            warnings.warn(f"{coco.warnings[0]} (and {len(coco.warnings) - 1} more non-fatal problem(s); "
                          f"`python -m trashlib data check {self.root}` lists them)", stacklevel=2)
        self.sha1 = coco.sha1
        self.image_infos: list[dict] = coco.images
        # image paths relative to the root (the submission's image_id) and COCO ids, in file order
        self.file_names: list[str] = [im["file_name"] for im in coco.images]
        self.image_ids: list = [im["id"] for im in coco.images]
        self.categories: list[dict] = coco.categories
        self._anns = coco.annotations_by_image()
        self.has_masks = bool(coco.annotations)
        self._masks = self._images = None
        if self.has_masks:
            self._masks = FlatCache(paths.cache_dir("masks", self.sha1[:16]) / f"labels-{CACHE_VERSION}.u8",
                                    [im["height"] * im["width"] for im in self.image_infos])
        if cache_images:
            self._images = FlatCache(paths.cache_dir("images", self._image_key()[:16]) / "rgb.u8",
                                     [im["height"] * im["width"] * 3 for im in self.image_infos])

    def _image_key(self) -> str:
        """Content key of the decoded-image cache: the JSON plus each file's size and mtime."""
        h = hashlib.sha1(f"{CACHE_VERSION}\n{self.sha1}\n{self.root}\n".encode())
        for name in self.file_names:
            try:
                st = os.stat(self.root / name)
                h.update(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{name}\tmissing\n".encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.image_infos)

    def __repr__(self) -> str:
        return (f"TrashDataset({paths.shown(self.root)!r}, split={self.split!r}, {len(self)} images, "
                f"{'masks' if self.has_masks else 'no masks'})")

    def _index(self, i: int) -> int:
        i = operator.index(i)
        j = i + len(self) if i < 0 else i
        if not 0 <= j < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images of {self.path.name}")
        return j

    def _item(self, info: dict) -> str:
        return f"image {label(info['id'])}"

    def annotations(self, i: int) -> list[dict]:
        """The COCO annotations of image i, in file order."""
        return self._anns[self.image_infos[self._index(i)]["id"]]

    def load_image(self, i: int) -> np.ndarray:
        """Image i as (H, W, 3) uint8 RGB."""
        i = self._index(i)
        info = self.image_infos[i]
        h, w = info["height"], info["width"]
        if self._images is not None and (flat := self._images.get(i)) is not None:
            return flat.reshape(h, w, 3)
        image = read_image(self.root / info["file_name"], width=w, height=h, file=str(self.path), item=self._item(info))
        if self._images is not None:
            self._images.put(i, image)
        return image

    def load_mask(self, i: int) -> np.ndarray | None:
        """Label map i as (H, W) uint8 (None for splits without annotations); rasterised once."""
        i = self._index(i)
        if self._masks is None:
            return None
        info = self.image_infos[i]
        h, w = info["height"], info["width"]
        if (flat := self._masks.get(i)) is not None:
            return flat.reshape(h, w)
        try:  # rasterize names the file, image and annotation of a bad segmentation itself
            mask = rasterize(self._anns[info["id"]], height=h, width=w, file=str(self.path))
        except DatasetError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:  # what validation cannot foresee
            raise DatasetError(f"{self.path}: {self._item(info)}: cannot rasterise its annotations: {e}") from e
        self._masks.put(i, mask)
        return mask

    def build_cache(self, *, progress: bool | None = None) -> int:
        """Rasterise every mask not cached yet (optionally with a progress bar); returns how many."""
        if self._masks is None:
            return 0
        todo = [i for i in range(len(self)) if not self._masks.ready(i)]
        if shown(progress) and todo:
            todo = tqdm(todo, desc=f"masks {self.split}", unit="img")
        for i in todo:
            self.load_mask(i)
        return len(todo)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.load_image(i), self.load_mask(i)
