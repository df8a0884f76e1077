"""No val or test image in training: a training set is checked against the held-out splits of its data root.

Held out are the val split (a config's `val_split`) and the test split. An item of an extra training set
(a label-map set) is a held-out image when its file name is one of the split's, its image is one of the
split's files, or its pixels are: the 32x32 greyscale thumbnails (area-averaged) lie less than `NEAR`
grey levels apart (root mean square). Measured on the embedded dataset: a JPEG re-encode at quality
20-95 or a resize by 0.25-1.5 stays within 1.2 levels of its original, while distinct images lie 15 or
more apart (25 or more among the TACO photos, 2.9 among 80 of the tests' near-blank 64x64 images); a
crop, a flip or a colour change is not caught.
Pixels rather than file bytes, so a renamed or re-encoded copy is caught too. Thumbnails are kept
under data/interim/thumbnails/, keyed by the files' paths, sizes and times: a set is decoded once.

Test images may be trained on as pseudo labels only (a set that `trashlib.pseudo.labels` made from a teacher's
predictions of the test split: no label file is read), never with labels from elsewhere.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np

from trashlib import paths
from trashlib.data.dataset import TrashDataset
from trashlib.data.embedded import resolve_data_root
from trashlib.data.images import read_image
from trashlib.data.labelmaps import LabelMapDataset
from trashlib.io import atomic_open

THUMBNAIL = 32       # pixels per side of the compared thumbnails
NEAR = 2.0           # grey levels (RMS) below which two thumbnails are the same image
THUMBNAIL_VERSION = 1
TEST_SPLIT = "test"


def thumbnails(files: list[Path], *, file: str, items: list[str]) -> np.ndarray:
    """The (N, THUMBNAIL**2) float32 greyscale thumbnails of image files, cached by their paths, sizes and times.

    An unreadable image is a DatasetError naming `file` and the item (`items[i]`).
    """
    h = hashlib.sha1(f"{THUMBNAIL_VERSION}\n{THUMBNAIL}\n".encode())
    for path in files:
        try:
            st = os.stat(path)
            h.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            h = None  # read_image names the missing file below
            break
    cached = paths.cache_dir("thumbnails") / f"{h.hexdigest()[:24]}.npy" if h is not None else None
    if cached is not None and cached.is_file():
        try:
            out = np.load(cached, allow_pickle=False)
            if out.shape == (len(files), THUMBNAIL * THUMBNAIL):
                return out
        except (OSError, ValueError):
            pass  # a damaged cache file of ours: computed again and written over
    out = np.zeros((len(files), THUMBNAIL * THUMBNAIL), np.float32)
    for i, path in enumerate(files):
        grey = cv2.cvtColor(read_image(path, file=file, item=items[i]), cv2.COLOR_RGB2GRAY)
        out[i] = cv2.resize(grey, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA).ravel()
    if cached is not None:
        try:
            with atomic_open(cached, "wb") as f:
                np.save(f, out)
        except OSError:
            pass  # a read-only cache costs the decoding again next time, nothing else
    return out


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) RMS grey-level distances between thumbnails."""
    a, b = a.astype(np.float64) - 128, b.astype(np.float64) - 128
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0) / a.shape[1])


def _pseudo_labelled_splits(dataset: LabelMapDataset) -> set[str]:
    """The splits a set labels with a teacher's predictions (trashlib.pseudo.labels records its teachers' splits)."""
    key = dataset.recipe.get("key") if isinstance(dataset.recipe, dict) else None
    teachers = key.get("teachers") if isinstance(key, dict) else None
    return {t["split"] for t in teachers if isinstance(t, dict) and isinstance(t.get("split"), str)} \
        if isinstance(teachers, list) else set()


def held_out_splits(data_root, val_split: str | None = "val") -> list[TrashDataset]:
    """The splits of a data root that training must not see: `val_split` and the test split, where present."""
    root = resolve_data_root(data_root)
    names = dict.fromkeys(s for s in (val_split, TEST_SPLIT) if s)
    return [TrashDataset(root, split=s) for s in names if (root / f"{s}.json").is_file()]


def check_no_held_out(dataset: LabelMapDataset, data_root=None, *, val_split: str | None = "val") -> None:
    """Refuse a label-map set that holds a val or test image of `data_root`, by file name, file or pixels.

    ValueError naming the set, its item, the held-out image and its split. Test images pass in a
    pseudo-label set of the test split only.
    """
    held = held_out_splits(data_root, val_split)
    if not held or not len(dataset):
        return
    allowed = _pseudo_labelled_splits(dataset) & {TEST_SPLIT}
    files = [dataset.files(i)[0] for i in range(len(dataset))]
    names = [f"item {i} ({it['file_name']})" for i, it in enumerate(dataset.items)]
    mine = None
    for split in held:
        if split.split in allowed:
            continue
        by_name = {n: n for n in split.file_names}
        by_file = {(split.root / n).resolve(): n for n in split.file_names}
        for i, it in enumerate(dataset.items):
            found = by_name.get(it["file_name"]), by_file.get(files[i].resolve())
            if any(found):
                how = "by file name" if found[0] else f"its image is the file {split.root / found[1]}"
                _refuse(dataset, names[i], split, found[0] or found[1], how)
        if mine is None:
            mine = thumbnails(files, file=str(dataset.path), items=names)
        theirs = thumbnails([split.root / n for n in split.file_names], file=str(split.path),
                            items=[f"image {n}" for n in split.file_names])
        d = _distances(mine, theirs)
        close = np.argwhere(d < NEAR)
        if len(close):
            i, j = close[0]
            _refuse(dataset, names[i], split, split.file_names[j],
                    f"by its pixels: their {THUMBNAIL}x{THUMBNAIL} thumbnails differ by {d[i, j]:.1f} grey levels")


def _refuse(dataset: LabelMapDataset, item: str, split: TrashDataset, name: str, how: str):
    rule = ("test images may be trained on only as pseudo labels (trashlib.pseudo.labels)" if split.split == TEST_SPLIT
            else f"training on it would inflate the {split.split} score")
    raise ValueError(f"{dataset.path}: {item} is {split.split} image {name} of {split.root} ({how}); {rule}: "
                     "remove it from the set")


def check_train_split(data_root, train_split: str, val_split: str | None) -> None:
    """Refuse a training split that shares an image (by file name) with the val split, e.g. train_all with val."""
    if not val_split:
        return
    root = resolve_data_root(data_root)
    if train_split == val_split:
        raise ValueError(f"train_split and val_split are both {train_split!r}: validation would score training "
                         "images; set val_split=None to train without validation")
    if not (root / f"{val_split}.json").is_file():
        return  # TrashDataset names the missing split where it is opened
    train, val = TrashDataset(root, split=train_split), TrashDataset(root, split=val_split)
    val_names = set(val.file_names)
    shared = [n for n in train.file_names if n in val_names]
    if shared:
        raise ValueError(f"{train.path}: holds {len(shared)} image(s) of the {val_split} split (e.g. {shared[0]}): "
                         f"validation would score training images; train on another split or set val_split=None")
