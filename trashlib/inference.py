"""Inference: per-image class probabilities with test-time augmentation, streamed to disk.

`predict(run, data_root, "test", tta=("hflip",), scales=(0.75, 1, 1.25))` writes one compressed file
per image under runs/<name>/probs/<split>-<tag>/ and an index.json last, and returns a `ProbIndex`
that ensembling, CRF and submission code iterate over; the split is never held in memory. Storage:
probabilities quantised to uint8 with largest-remainder rounding, so each pixel's 11 values sum to
exactly 255 (error < 1/255, no renormalisation drift), then np.savez_compressed. Measured on
512x512 maps of 11 classes: uint8 0.06-0.7 MB and 60 ms to compress, float16 1.3-4.3 MB and 260 ms.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trashlib.io import atomic_open, read_json, write_json

TTA_NAMES = ("hflip",)
INDEX_FILE, SETTINGS_FILE = "index.json", "settings.json"


# -- tensor functions ------------------------------------------------------------------------------
def _starts(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, length - size + 1, stride))
    return starts if starts[-1] == length - size else starts + [length - size]


@torch.no_grad()
def sliding_window(model, images: torch.Tensor, *, size: int, stride: int) -> torch.Tensor:
    """Probabilities averaged over size x size windows every `stride` pixels (images padded up to size).

    Shape:
        images: (N, 3, H, W) float in [0, 1]
        returns: (N, C, H, W)
    """
    n, _, h, w = images.shape
    ph, pw = max(h, size), max(w, size)
    if (ph, pw) != (h, w):
        images = F.pad(images, (0, pw - w, 0, ph - h))
    total, count = None, torch.zeros(1, 1, ph, pw, device=images.device)
    for y in _starts(ph, size, stride):
        for x in _starts(pw, size, stride):
            p = model.predict_proba(images[..., y:y + size, x:x + size])
            if total is None:
                total = images.new_zeros(n, p.shape[1], ph, pw)
            total[..., y:y + size, x:x + size] += p
            count[..., y:y + size, x:x + size] += 1
    return (total / count)[..., :h, :w]


@torch.no_grad()
def predict_tta(model, images: torch.Tensor, *, hflip: bool = False, scales=(1.0,), window=None) -> torch.Tensor:
    """Probabilities averaged over scales (resize in, predict, resize back bilinearly) and horizontal flips.

    Shape:
        images: (N, 3, H, W) float in [0, 1]
        returns: (N, C, H, W), summing to 1 over C
    """
    n, _, h, w = images.shape
    total, views = None, 0
    for s in scales:
        x = images if s == 1 else F.interpolate(images, size=(round(h * s), round(w * s)), mode="bilinear",
                                                 align_corners=False)
        batch = torch.cat([x, x.flip(-1)]) if hflip else x  # one forward for both views
        if window is None:
            p = model.predict_proba(batch)
        else:
            p = sliding_window(model, batch, size=window[0], stride=window[1])
        p = p.float()
        if hflip:
            p = p[:n] + p[n:].flip(-1)
        if s != 1:
            p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
        total = p if total is None else total + p
        views += 2 if hflip else 1
    total /= views
    return total / total.sum(1, keepdim=True).clamp_min(1e-12)  # against float drift of the averages


# -- storage ---------------------------------------------------------------------------------------
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


class ProbIndex:
    """The probability maps of one split: len, iteration of (file_name, probs), load(i), argmax(i)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta = read_json(self.path / INDEX_FILE)
        self.items = self.meta["items"]

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        meta = self.meta
        return f"ProbIndex({str(self.path)!r}, {len(self)} images, tta={meta['tta']}, scales={meta['scales']})"

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


# -- predict ---------------------------------------------------------------------------------------
def tta_tag(*, hflip: bool, scales, window) -> str:
    """Folder tag of a TTA setting, e.g. "hflip_s0.75-1-1.25_w512-384" ("plain" for none)."""
    parts = ["hflip"] if hflip else []
    if tuple(scales) != (1.0,):
        parts.append("s" + "-".join(f"{s:g}" for s in scales))
    if window:
        parts.append(f"w{window[0]}-{window[1]}")
    return "_".join(parts) or "plain"


def _weights_fingerprint(model) -> str:
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _resolve_model(run_or_model, which: str, device):
    """(model, description, default output folder) of a Run, a run folder or a bare model.

    A run's model goes to `device` (default: CUDA when available); a bare model stays where it is
    unless `device` is given.
    """
    from trashlib.training.runs import Run

    if isinstance(run_or_model, (str, os.PathLike)):
        run_or_model = Run(run_or_model)
    if isinstance(run_or_model, Run):
        ckpt = run_or_model.checkpoint(which)
        st = ckpt.stat()
        desc = {"run": run_or_model.name, "checkpoint": ckpt.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return run_or_model.load_model(which, device=device), desc, run_or_model.path / "probs"
    model = run_or_model if device is None else run_or_model.to(device)  # None: where the model is
    desc = {"name": getattr(model, "name", type(model).__name__), "weights": _weights_fingerprint(model)}
    return model, desc, None


class _Images(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return i, self.dataset.load_image(i)


def predict(run_or_model, data_root=None, split: str = "test", *, tta=("hflip",), scales=(1.0,), window=None,
            out_dir=None, batch_size: int = 1, quantize: bool = True, which: str = "best", device=None,
            workers: int = 2, force: bool = False, progress: bool = True, max_images: int | None = None) -> ProbIndex:
    """Write every image's TTA probabilities of a split to disk (reusing a complete identical result).

    `run_or_model`: a Run, a run folder, or a SegmentationModel (then `out_dir` is required).
    Output: <out_dir or run/probs>/<split>-<tta tag>/ with one NNNNN.npz per image and index.json.
    `max_images` predicts only the first images of the split (quick looks; never for a submission).
    """
    from tqdm.auto import tqdm

    from trashlib.data import TrashDataset
    from trashlib.training.evaluate import images_to_tensor, same_size_groups

    unknown = set(tta or ()) - set(TTA_NAMES)
    if unknown:
        raise ValueError(f"unknown TTA {sorted(unknown)}; valid: {', '.join(TTA_NAMES)}")
    hflip, scales = "hflip" in (tta or ()), tuple(float(s) for s in scales)
    window = tuple(int(v) for v in window) if window else None
    if window and (len(window) != 2 or min(window) < 1 or window[1] > window[0]):
        raise ValueError(f"window must be (size, stride) with 0 < stride <= size, got {window}")
    model, desc, default_out = _resolve_model(run_or_model, which, device)
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    if out_dir is None and default_out is None:
        raise ValueError("predict(model, ...) on a bare model needs out_dir= (runs store probs in their folder)")
    dataset = TrashDataset(data_root, split=split)
    tag = tta_tag(hflip=hflip, scales=scales, window=window) + (f"-first{max_images}" if max_images else "")
    folder = Path(out_dir or default_out) / f"{split}-{tag}"
    settings = {"split": split, "data_root": str(dataset.root), "split_sha1": dataset.sha1, "model": desc,
                "tta": sorted(tta or ()), "scales": list(scales), "window": list(window) if window else None,
                "quantize": quantize, "max_images": max_images}
    if not force and (folder / INDEX_FILE).exists() and read_json(folder / INDEX_FILE)["settings"] == settings:
        return ProbIndex(folder)
    if force or not (folder / SETTINGS_FILE).exists() or read_json(folder / SETTINGS_FILE) != settings:
        shutil.rmtree(folder, ignore_errors=True)  # files of other settings; same settings: keep, resume
    write_json(folder / SETTINGS_FILE, settings)

    items = [{"image_id": info["id"], "file_name": info["file_name"], "path": f"{i:05d}.npz",
              "shape": [model.num_classes, info["height"], info["width"]]}
             for i, info in enumerate(dataset.image_infos[:max_images])]
    todo = [i for i, it in enumerate(items) if not (folder / it["path"]).exists()]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(_Images(dataset), todo), batch_size=batch_size,
                                         num_workers=workers, collate_fn=list)
    model.eval()
    pending = []
    with ThreadPoolExecutor(max_workers=2) as pool, tqdm(total=len(items), initial=len(items) - len(todo),
                                                         disable=not progress, desc=f"predict {split}") as bar:
        for batch in loader:  # writing (zlib releases the GIL) overlaps the next forward pass
            for group in same_size_groups([(i, image, None) for i, image in batch]):
                probs = predict_tta(model, images_to_tensor([g[1] for g in group], device), hflip=hflip,
                                    scales=scales, window=window)
                stored = (quantize_probs(probs) if quantize else probs.half()).cpu().numpy()
                for (i, _, _), p in zip(group, stored):
                    pending.append(pool.submit(save_probs, folder / items[i]["path"], p, quantize=quantize))
                bar.update(len(group))
            while len(pending) > 4:  # bounded: never more than a few maps in memory
                pending.pop(0).result()
        for f in pending:
            f.result()
    write_json(folder / INDEX_FILE, {"version": 1, "settings": settings, **settings,
                                     "dtype": "uint8" if quantize else "float16", "items": items})
    return ProbIndex(folder)


def predictions_to_submission(index: ProbIndex, path: str | os.PathLike) -> Path:
    """Write the argmax maps of a ProbIndex (in split order) as a competition submission CSV."""
    from trashlib.submission import write_submission

    return write_submission(path, ((name, index.argmax(i)) for i, name in enumerate(index.file_names)))


def predict_to_submission(run, data_root=None, *, submission, split: str = "test", **predict_kwargs):
    """What `python -m trashlib predict` does: predict, write the CSV, validate it against the split's JSON.

    Returns (ProbIndex, list of validation problems; empty when the CSV is valid).
    """
    from trashlib.paths import resolve_data_root
    from trashlib.submission import validate_submission

    index = predict(run, data_root, split, **predict_kwargs)
    predictions_to_submission(index, submission)
    return index, validate_submission(submission, resolve_data_root(data_root) / f"{split}.json")
