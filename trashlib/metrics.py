"""The competition metric: one confusion matrix accumulated over every pixel of every image.

mIoU is NOT the mean of per-image mIoUs: sum the per-image matrices of `confusion_matrix` over the
whole set, then call `miou` once. IoU is averaged over the classes whose union is non-empty, so a
class absent from both the ground truth and the predictions is skipped, while a class predicted
where it never occurs scores 0.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from trashlib.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES


def as_numpy(x) -> np.ndarray:
    """A numpy view of an array-like or a torch tensor (moved to the CPU)."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def confusion_matrix(pred, target, *, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Confusion matrix of one image or batch: rows ground truth, columns prediction.

    Pixels whose target is `ignore_index` are skipped; any other label outside 0..num_classes-1 raises.

    Shape:
        pred, target: (H, W) or (N, H, W) integer label maps of the same shape.
        returns: (num_classes, num_classes) int64.
    """
    pred, target = as_numpy(pred), as_numpy(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    for name, arr in (("pred", pred), ("target", target)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    target = target.astype(np.int64, copy=False).ravel()
    pred = pred.astype(np.int64, copy=False).ravel()
    valid = target != ignore_index
    target, pred = target[valid], pred[valid]
    if target.size and (target.min() < 0 or target.max() >= num_classes):
        bad = target[(target < 0) | (target >= num_classes)][0]
        raise ValueError(f"target holds label {bad}, neither in 0..{num_classes - 1} nor the ignore value {ignore_index}")
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        bad = pred[(pred < 0) | (pred >= num_classes)][0]
        raise ValueError(f"prediction holds label {bad}, outside 0..{num_classes - 1}")
    counts = np.bincount(num_classes * target + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class of a confusion matrix, or of a stack of them: (..., C, C) -> (..., C); NaN where a
    class is neither in the ground truth nor predicted."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(axis=-2) + confusion.sum(axis=-1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def miou(confusion: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean IoU, per-class IoU) from an accumulated confusion matrix; NaN marks empty classes."""
    iou = class_iou(confusion)
    mean = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    return mean, iou


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Share of valid pixels predicted correctly."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def mean_class_accuracy(confusion: np.ndarray) -> float:
    """Mean over ground-truth classes present of the share of their pixels predicted correctly."""
    confusion = np.asarray(confusion, dtype=np.float64)
    gt = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(gt > 0, np.diag(confusion) / np.where(gt > 0, gt, 1), np.nan)
    return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")


def frequency_weighted_iou(confusion: np.ndarray) -> float:
    """IoU per class weighted by the class's share of ground-truth pixels."""
    confusion = np.asarray(confusion, dtype=np.float64)
    freq = confusion.sum(axis=1) / max(confusion.sum(), 1)
    iou = class_iou(confusion)
    present = freq > 0
    return float((freq[present] * np.nan_to_num(iou[present])).sum())


class Scores(NamedTuple):
    miou: float
    per_class_iou: np.ndarray
    pixel_accuracy: float
    mean_class_accuracy: float
    fwiou: float

    def as_dict(self, class_names=None) -> dict:
        """JSON-ready dict; per-class IoU keyed by class name (None where the class is empty)."""
        names = class_names or CLASS_NAMES
        return {
            "mIoU": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "mean_class_accuracy": self.mean_class_accuracy,
            "fwIoU": self.fwiou,
            "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, self.per_class_iou)},
        }


def scores(confusion: np.ndarray) -> Scores:
    """Every competition score of an accumulated confusion matrix."""
    mean, iou = miou(confusion)
    return Scores(mean, iou, pixel_accuracy(confusion), mean_class_accuracy(confusion), frequency_weighted_iou(confusion))


class ConfusionMeter:
    """Accumulates one confusion matrix over a stream of (pred, target) pairs."""

    def __init__(self, *, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, target) -> None:
        """Add one image (H, W) or batch (N, H, W)."""
        self.confusion += confusion_matrix(pred, target, num_classes=self.num_classes, ignore_index=self.ignore_index)

    def compute(self) -> Scores:
        """Scores of everything added so far."""
        return scores(self.confusion)


# -- small objects: not the competition's metric, a view of what its mean over pixels hides ----------------
def object_hits(pred, objects, *, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Objects found and objects there, by class: a (2, classes) int64 array for one image.

    An object is found when more than half of its visible pixels are predicted as its class.
    `objects` lists (category_id, flat indices of the object's pixels in `pred`), as
    `trashlib.data.instances.small_objects` gives them.
    """
    flat = as_numpy(pred).ravel()
    hits = np.zeros((2, num_classes), np.int64)
    for cat, where in objects:
        hits[1, cat] += 1
        hits[0, cat] += 2 * np.count_nonzero(flat[where] == cat) > len(where)
    return hits


def object_recall(hits: np.ndarray) -> tuple[float, np.ndarray]:
    """(recall over every object, recall per class) of summed `object_hits` (..., 2, classes); NaN where
    there is no object."""
    hits = np.asarray(hits).reshape(-1, 2, np.shape(hits)[-1]).sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = hits[0] / hits[1]
    total = hits[1].sum()
    return (float(hits[0].sum() / total) if total else float("nan")), per_class
