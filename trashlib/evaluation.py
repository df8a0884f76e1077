"""Scoring stored predictions and comparing runs: what notebooks 02, 03 and 07 report.

`evaluate_index` scores a `ProbIndex` (the stored per-image probabilities of a split) against the
split's label maps with the competition metric (one confusion matrix over every pixel), and keeps a
per-image score so the best and worst images can be shown. `compare_runs` builds the backbone
comparison table: validation mIoU and per-class IoU, parameters, GFLOPs and speeds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trashlib.classes import CLASS_NAMES, NUM_CLASSES
from trashlib.metrics import ConfusionMeter, Scores, confusion_matrix, miou, scores


@dataclass
class Evaluation:
    """Scores of one split: the accumulated confusion matrix, its scores and a per-image table."""

    confusion: np.ndarray
    scores: Scores
    per_image: pd.DataFrame  # index, file_name, mIoU, pixel_accuracy (one row per image)

    def per_class_frame(self) -> pd.DataFrame:
        """Per-class IoU with ground-truth and predicted pixel counts."""
        return pd.DataFrame({"IoU": self.scores.per_class_iou, "gt_pixels": self.confusion.sum(1),
                             "pred_pixels": self.confusion.sum(0)}, index=list(CLASS_NAMES[:len(self.confusion)]))


def evaluate_predictions(pairs, *, num_classes: int = NUM_CLASSES) -> Evaluation:
    """Evaluate an iterable of (file_name, pred HxW, mask HxW) triples, streaming."""
    meter = ConfusionMeter(num_classes=num_classes)
    rows = []
    for i, (name, pred, mask) in enumerate(pairs):
        cm = confusion_matrix(pred, mask, num_classes=num_classes)
        meter.confusion += cm
        total = cm.sum()
        rows.append({"index": i, "file_name": name, "mIoU": miou(cm)[0],
                     "pixel_accuracy": float(np.trace(cm) / total) if total else np.nan})
    return Evaluation(meter.confusion, scores(meter.confusion), pd.DataFrame(rows))


def evaluate_index(index, data_root=None, split: str = "val", *, max_images: int | None = None) -> Evaluation:
    """Score the argmax of stored probabilities (a ProbIndex) against the split's label maps."""
    from trashlib.data import TrashDataset

    dataset = TrashDataset(data_root, split=split)
    if not dataset.has_masks:
        raise ValueError(f"{dataset.path}: split {split!r} has no annotations to score against")
    by_name = {name: i for i, name in enumerate(dataset.file_names)}
    missing = [n for n in index.file_names if n not in by_name]
    if missing:
        raise ValueError(f"{dataset.path}: predictions for images not in the split, e.g. {missing[0]!r}")
    n = len(index) if max_images is None else min(max_images, len(index))
    return evaluate_predictions((name, index.argmax(i), dataset.load_mask(by_name[name]))
                                for i, name in zip(range(n), index.file_names))


def train_seconds_per_step(run) -> float:
    """Median seconds per optimizer step from a run's loss log (evaluation pauses fall out as outliers)."""
    train = run.metrics_frame("train")
    if len(train) < 2:
        return float("nan")
    rate = train["time"].diff() / train["step"].diff()
    return float(rate.dropna().median())


def compare_runs(runs, *, evaluations: dict | None = None, infer_size: int = 512, repeats: int = 2) -> pd.DataFrame:
    """One row per run: val mIoU (from `evaluations[run.name]` or the run's best eval), per-class IoU,
    parameters (M), GFLOPs at infer_size, train seconds per step and inference seconds per image."""
    from trashlib.models.profile import count_gflops, count_parameters, time_inference

    rows = []
    for run in runs:
        cfg = run.config
        if evaluations and run.name in evaluations:
            ev = evaluations[run.name].scores
            mean, per_class = ev.miou, ev.per_class_iou
        else:
            best = run.best_metrics() or {}
            mean = best.get("mIoU", np.nan)
            per_class = [(best.get("per_class_iou") or {}).get(c, np.nan) for c in CLASS_NAMES]
        model = run.load_model()
        row = {"model": cfg.model, "size": cfg.size, "run": run.name, "val mIoU": mean,
               "params (M)": count_parameters(model) / 1e6, "GFLOPs@512": count_gflops(model, infer_size),
               "train s/step": train_seconds_per_step(run),
               "infer s/img": time_inference(model, infer_size, repeats)}
        row.update({f"IoU {c}": v for c, v in zip(CLASS_NAMES, per_class)})
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
