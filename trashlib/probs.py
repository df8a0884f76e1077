"""The probability store: per-image class probabilities on disk, written once, read by every consumer.

Predictions of a run (`inference.predict`), ensembles and CRF output (notebook 05) are all stored
the same way, under data/interim/probs/<source>/<data>_<split>-<tag>/: one compressed NNNNN.npz per
image, `settings.json` (what made them) first and `index.json` (the items) last, so a folder with an
index is complete. `ProbIndex` reads one: len, iteration of (file_name, probs), load(i), argmax(i);
evaluation, submission and notebook 07 read any index alike.

Storage: probabilities quantised to uint8 with largest-remainder rounding, so each pixel's values sum
to exactly 255 (error < 1/255, no renormalisation drift), then np.savez_compressed. Measured on
512x512 maps of 11 classes: uint8 0.06-0.7 MB and 60 ms to compress, float16 1.3-4.3 MB and 260 ms.
"""
from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from trashlib import paths
from trashlib.io import atomic_open, read_json, write_json

INDEX_FILE, SETTINGS_FILE = "index.json", "settings.json"


def quantize_probs(probs):
    """uint8 probabilities summing to exactly 255 per pixel (largest-remainder rounding).

    Each value is floor(255 p) plus one unit for the classes with the largest remainders, as many as
    the floors fall short of 255: error < 1/255 and no renormalisation drift. Runs on the tensor's
    device (a GPU then ships a quarter of the bytes); numpy in, numpy out.

    Shape:
        probs: (..., C, H, W) float summing to 1 over C; returns the same shape, uint8
    """
    as_numpy = isinstance(probs, np.ndarray)
    scaled = torch.as_tensor(probs).float().clamp(0, 1) * 255
    q = scaled.floor()
    deficit = (255 - q.sum(dim=-3, keepdim=True)).round()
    rank = (scaled - q).argsort(dim=-3, descending=True, stable=True).argsort(dim=-3)
    q = (q + (rank < deficit)).to(torch.uint8)
    return q.numpy() if as_numpy else q


def save_probs(path: Path, probs: np.ndarray, *, quantize: bool = True) -> None:
    """Write one image's (C, H, W) probabilities atomically: uint8 as given, floats quantised or float16."""
    if probs.dtype != np.uint8:
        probs = quantize_probs(probs) if quantize else probs.astype(np.float16)
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, probs=probs)


def load_probs(path: Path) -> np.ndarray:
    """(C, H, W) float32 probabilities of one file, re-normalised to sum to 1 over C."""
    with np.load(path) as z:
        arr = z["probs"]
    p = arr.astype(np.float32) / 255 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return p / np.maximum(p.sum(0, keepdims=True), 1e-12)


def store_dir(source: str, data_root: str | os.PathLike, split: str, tag: str) -> Path:
    """Where the maps of `source` (a run name, an ensemble name) for one split of a data root live."""
    name = f"{Path(data_root).name}_{split}-{tag}"
    return Path(paths.PROBS_DIR) / re.sub(r"[^A-Za-z0-9._-]+", "-", source) / re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def stored_index(folder: str | os.PathLike, settings: dict) -> "ProbIndex | None":
    """The complete index in `folder` if it was made with `settings`, else None."""
    path = Path(folder) / INDEX_FILE
    if not path.exists():
        return None
    meta = read_json(path)
    return ProbIndex(folder) if isinstance(meta, dict) and meta.get("settings") == settings else None


def derived_dir(index, suffix: str, out_dir=None) -> Path:
    """The folder of an index derived from `index` (CRF, overwrite): beside it, or under `out_dir`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{Path(index.path).name}_{suffix}")
    return (Path(paths.PROBS_DIR) / Path(index.path).parent.name if out_dir is None else Path(out_dir)) / name


class ProbIndex:
    """The probability maps of one split: len, iteration of (file_name, probs), load(i), argmax(i)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / INDEX_FILE).exists():
            raise FileNotFoundError(f"{self.path} holds no complete probability maps (no {INDEX_FILE})")
        self.meta = read_json(self.path / INDEX_FILE)
        if not isinstance(self.meta, dict) or not isinstance(self.meta.get("items"), list) or "settings" not in self.meta:
            raise ValueError(f"{self.path / INDEX_FILE}: not a probability index (needs 'settings' and an 'items' list)")
        self.settings = self.meta["settings"]
        self.items = self.meta["items"]

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"ProbIndex({str(self.path)!r}, {len(self)} images, {self.settings.get('split')})"

    @property
    def file_names(self) -> list[str]:
        return [it["file_name"] for it in self.items]

    @property
    def image_ids(self) -> list:
        return [it["image_id"] for it in self.items]

    def load(self, i: int) -> np.ndarray:
        """Probabilities of image i as (C, H, W) float32 summing to 1."""
        return load_probs(self.path / self.items[i]["path"])

    def argmax(self, i: int) -> np.ndarray:
        """Label map of image i as (H, W) uint8."""
        return self.load(i).argmax(0).astype(np.uint8)

    def __iter__(self):
        for i, item in enumerate(self.items):
            yield item["file_name"], self.load(i)


class ProbWriter:
    """Writes the maps of one index: `todo`, `write(i, probs)`, `close() -> ProbIndex`.

    `items` are {"image_id", "file_name", "shape"} dicts in split order. A folder holding the same
    settings is resumed (its written maps kept); other settings, or `force`, start it afresh - but
    only a folder this class made (it has settings.json) is ever cleared. Compression runs in two
    background threads (zlib releases the GIL), overlapping the caller's next computation; at most a
    few maps wait in memory.
    """

    def __init__(self, folder: str | os.PathLike, items: list[dict], settings: dict, *, quantize: bool = True,
                 force: bool = False):
        self.folder, self.settings, self.quantize = Path(folder), settings, quantize
        self.items = [{**it, "path": f"{i:05d}.npz"} for i, it in enumerate(items)]
        saved = self.folder / SETTINGS_FILE
        self.complete = not force and stored_index(self.folder, settings) is not None
        if self.complete:
            self.todo = []
            return
        if self.folder.exists() and any(self.folder.iterdir()):
            if not saved.exists():
                raise FileExistsError(f"{self.folder} holds files trashlib did not write; choose another folder")
            if force or read_json(saved) != settings:
                shutil.rmtree(self.folder)
        write_json(saved, settings)
        self.todo = [i for i, it in enumerate(self.items) if not (self.folder / it["path"]).exists()]
        self._pool = ThreadPoolExecutor(max_workers=2)
        self._pending = []

    def write(self, i: int, probs) -> None:
        """Store image i's (C, H, W) probabilities (float, or uint8 already quantised)."""
        if self.complete:
            raise RuntimeError(f"{self.folder} is complete; nothing to write")
        self._pending.append(self._pool.submit(save_probs, self.folder / self.items[i]["path"], probs,
                                               quantize=self.quantize))
        while len(self._pending) > 4:
            self._pending.pop(0).result()

    def close(self) -> ProbIndex:
        """Wait for the writes, then write index.json; the folder is complete from here on."""
        if not self.complete:
            for f in self._pending:
                f.result()
            self._pool.shutdown()
            missing = [it["path"] for it in self.items if not (self.folder / it["path"]).exists()]
            if missing:
                raise RuntimeError(f"{self.folder}: {len(missing)} maps were never written, e.g. {missing[0]}")
            write_json(self.folder / INDEX_FILE, {"version": 2, "settings": self.settings,
                                                  "dtype": "uint8" if self.quantize else "float16",
                                                  "items": self.items})
            self.complete = True
        return ProbIndex(self.folder)
