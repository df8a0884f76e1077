"""The donor bank: every object of a COCO split cut once and held in memory, for copy & paste.

Online pasting draws objects for every training sample; reading a donor photo from disk each time
would cost as much as the sample itself, so the objects are cut once (`trashlib.data.copy_paste.cut_donor`:
each object's visible pixels, `trashlib.data.instances.visible_pixels`) and kept as
crops. Memory is bounded by keeping at most `max_per_class` objects of a class (a uniform random
subset, the same on every run); `counts` keeps every class's full count, so drawing a class stays
proportional to the data. Objects of fewer than `min_area` visible pixels are skipped: a few pixels
pasted teach nothing. Online pasting at a working resolution keeps its donors at that resolution
(`work_size`). `donor_bank` keeps the last two banks built, so the runs of a notebook share them, and
stores each bank under data/interim/donors/ (keyed by the split's JSON, its image files and the bank's
settings), so a later process loads it in a second instead of cutting every object again (about 16 s
for the 1280 embedded training images on 2 cores).
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from trashlib import paths
from trashlib.classes import CLASS_NAMES
from trashlib.data.copy_paste import Donor, cut_donor
from trashlib.data.dataset import TrashDataset
from trashlib.data.instances import visible_pixels
from trashlib.io import atomic_open
from trashlib.memo import remember

MAX_PER_CLASS = 256
MIN_AREA = 32   # visible pixels
BANK_VERSION = 1  # bump when cutting changes what a bank holds


@dataclass
class DonorBank:
    """Donors by class id (`donors`), with every class's object count before the cap (`counts`)."""

    donors: dict[int, list[Donor]]
    counts: dict[int, int]
    source: str = ""

    @classmethod
    def from_dataset(cls, dataset: TrashDataset, *, max_per_class: int = MAX_PER_CLASS,
                     min_area: int = MIN_AREA, work_size: int | None = None, seed: int = 0) -> "DonorBank":
        """Cut every annotated object of a TrashDataset; a bad segmentation is a DatasetError naming it.

        With `work_size`, each donor is kept as it looks in its photo brought to that size (longer side):
        what online pasting at the working resolution needs, at a fraction of the memory and resizing.
        `min_area` counts pixels at the photo's own resolution either way.
        """
        rng = np.random.default_rng(seed)  # the reservoir's draws: the same subset on every run
        donors: dict[int, list[Donor]] = {}
        counts: dict[int, int] = {}
        for i in range(len(dataset)):
            anns = dataset.annotations(i)
            if not anns:
                continue
            image, mask = dataset[i]
            h, w = mask.shape
            for k, (cat, where) in enumerate(visible_pixels(dataset, i)):
                if len(where) < min_area:
                    continue
                n = counts.get(cat, 0)
                counts[cat] = n + 1
                slot = n if n < max_per_class else int(rng.integers(n + 1))  # reservoir sampling
                if slot >= max_per_class:
                    continue
                visible = np.zeros(mask.shape, bool)
                visible.flat[where] = True
                donor = cut_donor(image, visible, category_id=cat,
                                  source=f"{dataset.file_names[i]} annotation {anns[k].get('id', k)}")
                if work_size is not None and max(h, w) > work_size:
                    donor = shrink_donor(donor, work_size / max(h, w))
                kept = donors.setdefault(cat, [])
                if slot == len(kept):
                    kept.append(donor)
                else:
                    kept[slot] = donor
        return cls(donors, counts, source=f"{paths.shown(dataset.path)} ({dataset.sha1[:12]})")

    def save(self, path: str | os.PathLike) -> None:
        """Write the bank as one .npz of flat arrays (no pickles), atomically."""
        flat = [(c, d) for c in sorted(self.donors) for d in self.donors[c]]
        shapes = np.array([d.mask.shape for _, d in flat], dtype=np.int64).reshape(-1, 2)
        meta = {"version": BANK_VERSION, "source": self.source, "counts": {str(c): n for c, n in self.counts.items()},
                "donors": [[c, d.category_id, d.source, d.reference_size] for c, d in flat]}
        with atomic_open(path, "wb") as f:
            np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), shapes=shapes,
                     images=np.concatenate([d.image.ravel() for _, d in flat] or [np.zeros(0, np.uint8)]),
                     masks=np.concatenate([d.mask.ravel() for _, d in flat] or [np.zeros(0, bool)]))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DonorBank":
        """A bank written by `save`; ValueError when the file is damaged or of another version."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes())
                shapes, images, masks = z["shapes"], z["images"], z["masks"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable donor bank ({e})") from None
        if (not isinstance(meta, dict) or meta.get("version") != BANK_VERSION
                or not isinstance(meta.get("donors"), list) or len(meta["donors"]) != len(shapes)
                or not isinstance(meta.get("counts"), dict)):
            raise ValueError(f"{path}: a donor bank of another version or layout")
        areas = shapes.prod(axis=1)
        if int(areas.sum()) != masks.size or 3 * int(areas.sum()) != images.size:
            raise ValueError(f"{path}: the donor bank's arrays do not match its shapes")
        donors: dict[int, list[Donor]] = {}
        at = np.concatenate([[0], np.cumsum(areas)])
        for (c, category, source, reference), (h, w), a, b in zip(meta["donors"], shapes, at[:-1], at[1:]):
            donors.setdefault(int(c), []).append(Donor(images[3 * a:3 * b].reshape(h, w, 3), masks[a:b].reshape(h, w),
                                                       int(category), source, int(reference)))
        return cls(donors, {int(c): int(n) for c, n in meta["counts"].items()}, source=meta["source"])

    @property
    def nbytes(self) -> int:
        """Memory held by the crops and masks."""
        return sum(d.image.nbytes + d.mask.nbytes for ds in self.donors.values() for d in ds)

    def summary(self) -> str:
        """One line per class: objects in the data, donors kept."""
        return "\n".join(f"{CLASS_NAMES[c]:<14} {self.counts[c]:>6} objects, {len(self.donors[c]):>4} kept"
                         for c in sorted(self.donors))

    def __repr__(self) -> str:
        return (f"DonorBank({self.source}: {sum(self.counts.values())} objects of {len(self.counts)} classes, "
                f"{sum(map(len, self.donors.values()))} kept, {self.nbytes / 2**20:.1f} MiB)")


def shrink_donor(donor: Donor, scale: float) -> Donor:
    """A donor as it looks in its photo scaled by `scale` < 1 (area interpolation, the mask thresholded at 1/2)."""
    h, w = donor.mask.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = cv2.resize(donor.image, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(donor.mask.view(np.uint8) * np.uint8(255), size, interpolation=cv2.INTER_AREA) >= 128
    return replace(donor, image=image, mask=mask, reference_size=max(1, round(donor.reference_size * scale)))


_BANKS: dict = {}
KEEP_BANKS = 2  # a notebook comparing online (working resolution) and offline (full) pasting uses two


def donor_bank(data_root: str | os.PathLike | None, split: str = "train", *,
               work_size: int | None = None) -> DonorBank:
    """The bank of a split (at `work_size`, see `DonorBank.from_dataset`), built on first use and kept for
    later calls with the same data; only the last KEEP_BANKS banks are held in memory."""
    dataset = TrashDataset(data_root, split=split)
    key = (str(dataset.root), split, dataset.sha1, work_size, MAX_PER_CLASS, MIN_AREA)
    if key not in _BANKS:  # memory holds a bounded number of banks
        remember(_BANKS, key, _stored_bank(dataset, work_size), keep=KEEP_BANKS)
    return _BANKS[key]


def bank_path(dataset: TrashDataset, work_size: int | None) -> Path:
    """Where the bank of a split at a working size is stored: its key covers the JSON, the image files' sizes
    and times, and the bank's settings."""
    settings = json.dumps([BANK_VERSION, dataset._image_key(), work_size, MAX_PER_CLASS, MIN_AREA])
    return paths.cache_dir("donors") / f"{dataset.split}-{hashlib.sha1(settings.encode()).hexdigest()[:16]}.npz"


def _stored_bank(dataset: TrashDataset, work_size: int | None) -> DonorBank:
    path = bank_path(dataset, work_size)
    if path.is_file():
        try:
            return DonorBank.load(path)
        except ValueError:
            pass  # a damaged bank of ours: cut it again and write it over
    bank = DonorBank.from_dataset(dataset, work_size=work_size)
    try:
        bank.save(path)
    except OSError:
        pass  # a read-only cache folder costs the next process the cutting again, nothing else
    return bank
