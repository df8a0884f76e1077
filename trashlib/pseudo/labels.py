"""Pseudo labels: label maps of unlabelled images made from a teacher's stored probabilities.

A teacher is one `ProbIndex` per unlabelled split (the test split, and any other split without
labels): a run's predictions or an ensemble's. Three recipes turn its probabilities into label maps
with 255 = ignore where the teacher is not confident enough:

- "hard": argmax on every pixel, no threshold (the winning team's recipe);
- "global": argmax where the top probability is at least `threshold`;
- "per_class": for each predicted class, keep the `keep` share (0-1) of its pixels with the highest
  confidence over the whole split, so rare classes, on which the teacher is rarely sure, are not starved.

`make_pseudo_labels` writes a label-map set under data/interim/label-maps/ through
`write_label_maps`; its images are the data root's own files, referenced, not copied. The folder name
holds a hash of the recipe and the teacher, and an identical set is reused. Nothing here reads a label
file: only the teacher's probabilities (its settings name the split and the data root), so the
pseudo labels cannot leak val or test labels into training. A teacher on the val split is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from trashlib import paths
from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.data.labelmaps import INDEX_FILE, LabelMapDataset, write_label_maps
from trashlib.io import read_json, write_json
from trashlib.progress import shown

KINDS = ("hard", "global", "per_class")
BINS = 1000  # confidence is quantised to 1/BINS for the per-class thresholds, in both passes alike
LABELLED_SPLITS = ("val", "train_all")  # splits whose images are validated on: never pseudo-labelled


@dataclass(frozen=True)
class PseudoRecipe:
    """How probabilities become pseudo labels: `kind` (hard, global, per_class) and its one knob."""

    kind: str = "hard"
    threshold: float = 0.9   # global: keep pixels whose top probability is >= threshold
    keep: float = 0.5        # per_class: share of each predicted class's pixels kept, most confident first

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown pseudo-label recipe {self.kind!r}; valid: {', '.join(KINDS)}")
        for name in ("threshold", "keep"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or not 0 <= v <= 1:
                raise ValueError(f"PseudoRecipe {name} must be a finite number in [0, 1], got {v!r}")
        if self.kind == "per_class" and self.keep == 0:
            raise ValueError("PseudoRecipe keep=0 keeps no pixel; give a share in (0, 1]")

    @property
    def tag(self) -> str:
        """Folder tag: "hard", "global-t0.9", "perclass-q0.5"."""
        return {"hard": "hard", "global": f"global-t{self.threshold:g}", "per_class": f"perclass-q{self.keep:g}"}[self.kind]

    def as_dict(self) -> dict:
        """The knobs that matter for this kind only (so a hard recipe's hash ignores the threshold)."""
        d = asdict(self)
        return {k: v for k, v in d.items() if k == "kind" or (k, self.kind) in (("threshold", "global"),
                                                                                 ("keep", "per_class"))}


def confidence(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pred, conf): argmax label map and its probability; non-finite probabilities are refused.

    Shape:
        probs: (C, H, W) float summing to 1 over C; returns pred (H, W) uint8 and conf (H, W) float32
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3:
        raise ValueError(f"probs must be (C, H, W), got shape {probs.shape}")
    if not np.isfinite(probs).all():
        raise ValueError("probs hold non-finite values")
    pred = probs.argmax(0)
    return pred.astype(np.uint8), np.take_along_axis(probs, pred[None], 0)[0]


def confidence_bins(conf: np.ndarray) -> np.ndarray:
    return np.minimum((conf * BINS + 1e-4).astype(np.int64), BINS - 1)  # 1e-4: 0.9 is bin 900, not 899


def pseudo_label(probs, *, threshold: float | np.ndarray = 0.0) -> np.ndarray:
    """Argmax labels with 255 where the top probability is below `threshold` (a number, or one per class).

    Per-class thresholds apply to the predicted class; thresholds are compared on the 1/BINS grid.

    Shape:
        probs: (C, H, W); threshold: scalar or (C,); returns (H, W) uint8
    """
    pred, conf = confidence(probs)
    t = np.asarray(threshold, dtype=np.float64)
    limit = confidence_bins(t) if t.ndim == 0 else confidence_bins(t)[pred]
    return np.where(confidence_bins(conf) >= limit, pred, IGNORE_INDEX).astype(np.uint8)


def class_thresholds(indices, *, keep: float, num_classes: int = NUM_CLASSES,
                     progress: bool | None = None) -> np.ndarray:
    """Per predicted class, the highest confidence t such that pixels >= t are at least `keep` of its pixels.

    One streamed pass over every map of `indices`; a class never predicted gets threshold 1.

    Shape:
        returns: (num_classes,) float64 on the 1/BINS grid
    """
    hist = np.zeros((num_classes, BINS), np.int64)
    for index in indices:
        for _, probs in tqdm(index, total=len(index), disable=not shown(progress), desc="confidence histogram"):
            pred, conf = confidence(probs)
            hist += np.bincount(pred.astype(np.int64).ravel() * BINS + confidence_bins(conf).ravel(),
                                minlength=num_classes * BINS).reshape(num_classes, BINS)[:num_classes]
    above = hist[:, ::-1].cumsum(1)[:, ::-1]  # above[c, b]: pixels of class c with bin >= b
    need = np.ceil(keep * hist.sum(1) - 1e-9)
    out = np.ones(num_classes)
    for c in range(num_classes):
        if hist[c].sum():
            out[c] = np.flatnonzero(above[c] >= need[c]).max() / BINS
    return out


def _teacher_identity(index) -> dict:
    settings = index.settings
    if not isinstance(settings, dict) or not settings.get("split"):
        raise ValueError(f"{index.path}: the teacher's settings name no split; cannot tell whether it is unlabelled")
    if settings["split"] in LABELLED_SPLITS:
        raise ValueError(f"{index.path}: the teacher predicted the {settings['split']!r} split; pseudo-labelling "
                         "images that are validated on leaks them into training (label test or unlabelled splits)")
    return {"folder": str(Path(index.path).resolve()), "split": settings["split"],
            "settings_sha1": hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()}


def _data_root(index, data_root) -> Path:
    root = data_root or index.settings.get("data_root")
    if not root:
        raise ValueError(f"{index.path}: the teacher's settings name no data root; pass data_root=")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} of teacher {index.path} does not exist")
    return root


def _samples(indices, roots, recipe: PseudoRecipe, thresholds, stats: dict, progress: bool):
    for index, root in zip(indices, roots):
        for name, probs in tqdm(index, total=len(index), disable=not shown(progress),
                                desc=f"pseudo labels {recipe.tag}"):
            if recipe.kind == "hard":
                mask = pseudo_label(probs)
            elif recipe.kind == "global":
                mask = pseudo_label(probs, threshold=recipe.threshold)
            else:
                mask = pseudo_label(probs, threshold=thresholds)
            counts = np.bincount(mask.ravel(), minlength=256)
            stats["pixels"] += int(mask.size)
            stats["labelled"] += int(mask.size - counts[IGNORE_INDEX])
            stats["per_class"] = [a + int(b) for a, b in zip(stats["per_class"], counts[:NUM_CLASSES])]
            yield name, root / name, mask


def make_pseudo_labels(teachers, recipe: PseudoRecipe = PseudoRecipe(), *, data_root=None, out_dir=None,
                       force: bool = False, progress: bool | None = None) -> LabelMapDataset:
    """The label-map set of `recipe` applied to `teachers` (one ProbIndex, or one per unlabelled split).

    Written under data/interim/label-maps/pseudo_<splits>-<tag>-<hash>/ (or `out_dir`), reused when the
    recipe and the teachers are unchanged. `data_root` defaults to the one in the teachers' settings.
    """
    indices = [teachers] if hasattr(teachers, "settings") else list(teachers)
    if not indices:
        raise ValueError("make_pseudo_labels needs at least one teacher ProbIndex")
    key = {"version": 1, "recipe": recipe.as_dict(), "teachers": [_teacher_identity(ix) for ix in indices]}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    splits = "+".join(dict.fromkeys(t["split"] for t in key["teachers"]))
    folder = Path(out_dir or paths.LABEL_MAPS_DIR) / f"pseudo_{splits}-{recipe.tag}-{digest}"
    if not force and (folder / INDEX_FILE).is_file():
        meta = read_json(folder / INDEX_FILE)
        if isinstance(meta, dict) and (meta.get("recipe") or {}).get("key") == key:
            return LabelMapDataset(folder)
    roots = [_data_root(ix, data_root) for ix in indices]
    thresholds = None
    if recipe.kind == "per_class":
        thresholds = class_thresholds(indices, keep=recipe.keep, progress=progress)
    stats = {"pixels": 0, "labelled": 0, "per_class": [0] * NUM_CLASSES}
    samples = _samples(indices, roots, recipe, thresholds, stats, progress)
    # the generator fills `stats` as write_label_maps consumes it; they are known once the set is written
    out = write_label_maps(folder, samples, recipe={"key": key}, overwrite=True)
    meta = read_json(out.path)
    meta["recipe"].update(stats=stats, thresholds=None if thresholds is None else thresholds.tolist())
    write_json(out.path, meta)  # a set cut off before this line lacks only the stats: `pseudo_stats` recounts
    return LabelMapDataset(folder)


def pseudo_stats(dataset: LabelMapDataset) -> dict:
    """{"pixels", "labelled", "per_class"} of a pseudo-label set: from its index, else counted from its masks."""
    stats = (dataset.recipe or {}).get("stats")
    if stats is None:
        stats = {"pixels": 0, "labelled": 0, "per_class": [0] * NUM_CLASSES}
        for i in range(len(dataset)):
            counts = np.bincount(dataset.load_mask(i).ravel(), minlength=256)
            stats["pixels"] += int(counts.sum())
            stats["labelled"] += int(counts.sum() - counts[IGNORE_INDEX])
            stats["per_class"] = [a + int(b) for a, b in zip(stats["per_class"], counts[:NUM_CLASSES])]
    return stats


def labelled_share(dataset: LabelMapDataset) -> float:
    """The share of a pseudo-label set's pixels that carry a label (not 255)."""
    stats = pseudo_stats(dataset)
    return stats["labelled"] / stats["pixels"] if stats["pixels"] else float("nan")
