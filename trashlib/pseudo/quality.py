"""How good pseudo labels are, measured against known test labels: for the report only, never for training.

The embedded dataset keeps its test labels in test_labels.json; a real competition hides them and
this module then has nothing to measure. Both measures are per ground-truth class c:

- **coverage**: the share of c's true pixels that receive a pseudo label (are not 255);
- **accuracy**: the share of those labelled pixels whose pseudo label is c.

`quality_curve` traces both against a global confidence threshold from the teacher's probabilities;
`set_quality` measures a written pseudo-label set; `pseudo_gallery` lays sets beside the truth.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from trashlib.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from trashlib.data import TrashDataset
from trashlib.plots.images import colorize
from trashlib.pseudo.labels import confidence_bins, confidence

THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)


def _truth(labels_json) -> tuple[TrashDataset, dict]:
    labels_json = Path(labels_json)
    truth = TrashDataset(labels_json.parent, labels_json.stem)
    if not truth.has_masks:
        raise ValueError(f"{labels_json}: holds no annotations to measure pseudo labels against")
    return truth, {name: i for i, name in enumerate(truth.file_names)}


def _where(position: dict, name: str, labels_json) -> int:
    if name not in position:
        raise ValueError(f"{labels_json}: has no image {name!r} to measure its pseudo labels against")
    return position[name]


def _frame(total, kept, correct, thresholds=None) -> pd.DataFrame:
    """Long table of coverage and accuracy per class (and "all") from (T, C) pixel counts."""
    rows = []
    for j in range(total.shape[0]):
        for c, name in enumerate([*CLASS_NAMES, "all"]):
            t, k, r = (x.sum() if name == "all" else x[c] for x in (total[j], kept[j], correct[j]))
            row = {"class": name, "pixels": int(t), "coverage": k / t if t else np.nan,
                   "accuracy": r / k if k else np.nan}
            rows.append(row if thresholds is None else {"threshold": float(thresholds[j]), **row})
    return pd.DataFrame(rows)


def quality_curve(indices, labels_json: str | os.PathLike, *, thresholds=THRESHOLDS) -> pd.DataFrame:
    """Coverage and accuracy per true class of argmax labels kept where confidence >= each threshold.

    `indices`: the teacher's ProbIndex (or several), on images that `labels_json` labels. Streamed.
    Returns a long table: threshold, class (class names and "all"), pixels, coverage, accuracy.
    """
    indices = [indices] if hasattr(indices, "settings") else list(indices)
    t = np.asarray(sorted(thresholds), dtype=np.float64)
    if t.size == 0 or not np.isfinite(t).all() or t.min() < 0 or t.max() > 1:
        raise ValueError(f"thresholds must be finite numbers in [0, 1], got {list(thresholds)}")
    truth, position = _truth(labels_json)
    kept = np.zeros((len(t), NUM_CLASSES), np.int64)
    correct = np.zeros_like(kept)
    total = np.zeros(NUM_CLASSES, np.int64)
    for index in indices:
        for name, probs in index:
            gt = truth.load_mask(_where(position, name, labels_json)).ravel().astype(np.int64)
            pred, conf = confidence(probs)
            valid = gt != IGNORE_INDEX
            gt, pred, level = gt[valid], pred.ravel()[valid], confidence_bins(conf.ravel()[valid])
            k = np.searchsorted(confidence_bins(t), level, side="right") - 1  # the highest threshold each pixel passes
            ok = k >= 0
            total += np.bincount(gt, minlength=NUM_CLASSES)[:NUM_CLASSES]
            flat = k[ok] * NUM_CLASSES + gt[ok]
            kept += np.bincount(flat, minlength=kept.size).reshape(kept.shape)
            correct += np.bincount(flat, weights=pred[ok] == gt[ok], minlength=kept.size).reshape(kept.shape).astype(np.int64)
    kept, correct = kept[::-1].cumsum(0)[::-1], correct[::-1].cumsum(0)[::-1]  # passing t_j = passing any t_k >= t_j
    return _frame(np.broadcast_to(total, kept.shape), kept, correct, t)


def set_quality(dataset, labels_json: str | os.PathLike) -> pd.DataFrame:
    """Coverage and accuracy per true class (and "all") of a written pseudo-label set (LabelMapDataset)."""
    truth, position = _truth(labels_json)
    total, kept, correct = (np.zeros((1, NUM_CLASSES), np.int64) for _ in range(3))
    for i, name in enumerate(dataset.file_names):
        gt = truth.load_mask(_where(position, name, labels_json)).ravel().astype(np.int64)
        mask = dataset.load_mask(i).ravel()
        valid = gt != IGNORE_INDEX
        gt, mask = gt[valid], mask[valid]
        total[0] += np.bincount(gt, minlength=NUM_CLASSES)[:NUM_CLASSES]
        kept[0] += np.bincount(gt[mask != IGNORE_INDEX], minlength=NUM_CLASSES)[:NUM_CLASSES]
        correct[0] += np.bincount(gt[mask == gt], minlength=NUM_CLASSES)[:NUM_CLASSES]
    return _frame(total, kept, correct).set_index("class")


def pseudo_gallery(sets: dict, labels_json: str | os.PathLike | None, file_names) -> tuple[list, list, list]:
    """(panels, masks, titles) for `plots.show_gallery(..., mode="image", ncols=2 + len(sets))`.

    Per image: the photo, the truth (when `labels_json` is given), then each set's pseudo labels in
    colour, ignored pixels white.
    """
    first = next(iter(sets.values()))
    truth, position = _truth(labels_json) if labels_json is not None else (None, {})
    panels, masks, titles = [], [], []
    for name in file_names:
        image = first.load_image(first.file_names.index(name))
        panels.append(image)
        masks.append(None)
        titles.append(name)
        if truth is not None:
            gt = truth.load_mask(_where(position, name, labels_json))
            panels.append(colorize(gt))
            masks.append(gt)
            titles.append("truth (report only)")
        for title, s in sets.items():
            m = s.load_mask(s.file_names.index(name))
            panels.append(colorize(m))
            masks.append(m)
            titles.append(f"{title}: {np.mean(m != IGNORE_INDEX):.0%} labelled")
    return panels, masks, titles
