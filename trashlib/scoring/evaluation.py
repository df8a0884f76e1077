"""Scoring stored predictions and submissions, and comparing runs: what notebooks 02-07 report.

`evaluate_index` scores a `ProbIndex` (the stored per-image probabilities of a split: a run's
predictions, an ensemble, CRF output) against the split's label maps with the competition metric (one
confusion matrix over every pixel), and keeps a per-image score so the best and worst images can be
shown (`prediction_gallery`); a part of a split is scored only on request, and says so ("8 of 80
images"). `score_submission` scores a CSV. Learning curves compare runs over training time (what a model
costs is `trashlib.models.cost`).
(The training loop's own validation of a live model is `trashlib.training.validate`.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trashlib.classes import CLASS_NAMES, NUM_CLASSES
from trashlib.data import TrashDataset, build_train_dataset
from trashlib.data.instances import small_objects
from trashlib.io import read_json
from trashlib.metrics import ConfusionMeter, Scores, confusion_matrix, miou, object_hits, object_recall, scores
from trashlib.predict.batching import item_loader
from trashlib.submission import downsample_prediction, read_submission, validate_submission
from trashlib.training.validate import validate


@dataclass
class Evaluation:
    """Scores of one split: the accumulated confusion matrix, its scores, a per-image table, and how many
    of the split's images were scored (`coverage`: "8 of 80 images", "all 80 images")."""

    confusion: np.ndarray
    scores: Scores
    per_image: pd.DataFrame  # index, file_name, mIoU, pixel_accuracy (one row per image)
    images: int | None = None        # images scored
    split_images: int | None = None  # images in the split (None: not known)
    objects: np.ndarray | None = None  # small objects found and there per image, (images, 2, classes)
    confusions: np.ndarray | None = None  # each image's confusion matrix, (images, classes, classes)

    @property
    def small_object_recall(self) -> float | None:
        """The share of the scored images' small objects that were found (`metrics.object_recall`); None
        when they were not counted or there are none."""
        if self.objects is None:
            return None
        recall = object_recall(self.objects)[0]
        return recall if np.isfinite(recall) else None

    @property
    def complete(self) -> bool:
        """Whether every image of the split was scored."""
        return self.images is not None and self.images == self.split_images

    @property
    def coverage(self) -> str:
        """The scored share of the split in words: "8 of 80 images", "all 80 images"."""
        if self.split_images is None:
            return f"{self.images} images"
        return f"all {self.images} images" if self.complete else f"{self.images} of {self.split_images} images"

    def describe(self) -> str:
        """One line: "mIoU 0.3012 on 8 of 80 images"."""
        return f"mIoU {self.scores.miou:.4f} on {self.coverage}"

    def per_class_frame(self) -> pd.DataFrame:
        """Per-class IoU with ground-truth and predicted pixel counts."""
        return pd.DataFrame({"IoU": self.scores.per_class_iou, "gt_pixels": self.confusion.sum(1),
                             "pred_pixels": self.confusion.sum(0)}, index=list(CLASS_NAMES[:len(self.confusion)]))


def evaluate_label_maps(pairs, *, num_classes: int = NUM_CLASSES, objects=None) -> Evaluation:
    """Evaluate an iterable of (file_name, pred HxW, mask HxW) triples, streaming; with `objects` (per
    triple, in order, its image's small objects: `data.instances.small_objects`), count those found too.
    Each image's confusion matrix is kept (`Evaluation.confusions`: what a paired bootstrap over the
    images resamples, `compare.image_contrast`)."""
    meter = ConfusionMeter(num_classes=num_classes)
    rows, hits, per_image = [], [], []
    for i, (name, pred, mask) in enumerate(pairs):
        if objects is not None:
            hits.append(object_hits(pred, objects[i], num_classes=num_classes))
        cm = confusion_matrix(pred, mask, num_classes=num_classes)
        meter.confusion += cm
        per_image.append(cm)
        total = cm.sum()
        rows.append({"index": i, "file_name": name, "mIoU": miou(cm)[0],
                     "pixel_accuracy": float(np.trace(cm) / total) if total else np.nan})
    if objects is not None:
        objects = np.stack(hits) if hits else np.zeros((0, 2, num_classes), np.int64)
    confusions = np.stack(per_image) if per_image else np.zeros((0, num_classes, num_classes), np.int64)
    return Evaluation(meter.confusion, scores(meter.confusion), pd.DataFrame(rows), images=len(rows), objects=objects,
                      confusions=confusions)


def evaluate_index(index, data_root=None, split: str = "val", *, subset: bool = False,
                   max_images: int | None = None) -> Evaluation:
    """Score the argmax of stored probabilities (a ProbIndex) against the split's label maps.

    An index that misses images of the split is refused unless `subset` (or `max_images`, its first
    images only) asks for a part on purpose; the result's `coverage` then says "N of M images".
    """
    dataset = TrashDataset(data_root, split=split)
    if not dataset.has_masks:
        raise ValueError(f"{dataset.path}: split {split!r} has no annotations to score against")
    total = index.check_split(dataset, subset=subset or max_images is not None)
    by_name = {name: i for i, name in enumerate(dataset.file_names)}
    n = len(index) if max_images is None else min(max_images, len(index))
    small = small_objects(dataset)
    evaluation = evaluate_label_maps(((name, index.argmax(i), dataset.load_mask(by_name[name]))
                                      for i, name in zip(range(n), index.file_names)),
                                     objects=[small[by_name[name]] for name in index.file_names[:n]])
    evaluation.split_images = total
    return evaluation


def ranked_images(evaluation: Evaluation, *, best: int = 2, worst: int = 2) -> list[int]:
    """Positions of the `best` highest- then the `worst` lowest-scoring images (by their own mIoU)."""
    order = evaluation.per_image.sort_values("mIoU", kind="stable")["index"].tolist()
    top = order[::-1][:best]
    return top + [i for i in order if i not in top][:worst]  # a small split shows each image once


def prediction_gallery(dataset, predictions: dict, file_names, *, evaluations: dict | None = None):
    """(images, masks, titles) for `plots.show_gallery`: per image its ground truth, then each prediction.

    `predictions` maps a title ("baseline", "+ CRF") to a ProbIndex; `evaluations` (same keys, optional)
    adds each image's own mIoU to the titles. Lay it out with ncols = 1 + len(predictions).
    """
    position = {name: i for i, name in enumerate(dataset.file_names)}
    images, masks, titles = [], [], []
    for name in file_names:
        image = dataset.load_image(position[name])
        images.append(image)
        masks.append(dataset.load_mask(position[name]))
        titles.append(f"{name}: ground truth")
        for title, index in predictions.items():
            k = index.file_names.index(name)
            images.append(image)
            masks.append(index.argmax(k))
            score = ""
            if evaluations and title in evaluations:
                score = f" (mIoU {evaluations[title].per_image.loc[k, 'mIoU']:.2f})"
            titles.append(f"{title}{score}")
    return images, masks, titles


def score_submission(csv_path: str | os.PathLike, labels_json: str | os.PathLike) -> Scores:
    """Competition scores of a submission CSV against a COCO file with the test annotations."""
    csv_path, labels_json = Path(csv_path), Path(labels_json)
    coco = read_json(labels_json)
    if not isinstance(coco, dict) or "annotations" not in coco:
        raise ValueError(f"{labels_json}: has no 'annotations'; scoring needs the labelled test file "
                         f"(e.g. test_labels.json), not test.json")
    del coco
    problems = validate_submission(csv_path, labels_json)
    if problems:
        raise ValueError(f"{csv_path} is not a valid submission for {labels_json}:\n" + "\n".join(problems))
    dataset = TrashDataset(labels_json.parent, labels_json.stem)
    position = {name: i for i, name in enumerate(dataset.file_names)}
    meter = ConfusionMeter()
    for image_id, pred in read_submission(csv_path):
        mask = dataset.load_mask(position[image_id])
        if mask is None:
            raise ValueError(f"{labels_json}: the data layer found no labels for {image_id}")
        try:
            target = downsample_prediction(mask)  # exactly as the submission was reduced
        except ValueError as e:
            raise ValueError(f"{labels_json}: ground truth of {image_id}: {e}") from None
        meter.update(pred, target)
    return meter.compute()


def train_seconds_per_step(run) -> float:
    """Median seconds per optimizer step from a run's loss log (evaluation pauses fall out as outliers)."""
    train = run.metrics_frame("train")
    if len(train) < 2:
        return float("nan")
    rate = train["time"].diff() / train["step"].diff()
    return float(rate.dropna().median())


def training_budget(run) -> dict:
    """What a run cost: steps, images seen, epochs of its training set, crop and working size, minutes."""
    cfg = run.config
    seen = cfg.steps * cfg.batch_size * cfg.grad_accum
    n = len(build_train_dataset(cfg))
    train = run.metrics("train")
    minutes = (train[-1]["time"] / 60) if train else float("nan")
    return {"steps": cfg.steps, "batch": cfg.batch_size * cfg.grad_accum, "images_seen": seen,
            "train_images": n, "epochs": seen / n, "crop": cfg.image_size, "work_size": cfg.work_size,
            "minutes": minutes}


def learning_curve(run) -> pd.DataFrame:
    """A run's evaluations: step, minutes of training, val mIoU and per-class IoU (one row per evaluation)."""
    rows = [{"step": r["step"], "minutes": r["time"] / 60, "val mIoU": r["mIoU"],
             **{c: r["per_class_iou"].get(c) for c in CLASS_NAMES}} for r in run.metrics("eval")]
    return pd.DataFrame(rows, columns=["step", "minutes", "val mIoU", *CLASS_NAMES])


def learning_curves(runs) -> pd.DataFrame:
    """Runs' evaluations on one clock: model, step, images seen, training seconds (steps x the run's median
    seconds per step, so evaluation pauses do not count) and val mIoU; one row per evaluation, for
    comparing models at equal CPU time (`at_equal_time`)."""
    rows = []
    for run in runs:
        per_step = train_seconds_per_step(run)
        for r in run.metrics("eval"):
            rows.append({"model": run.config.model, "run": run.name, "step": r["step"],
                         "images seen": r["step"] * run.config.batch_size * run.config.grad_accum,
                         "train seconds": r["step"] * per_step, "val mIoU": r["mIoU"]})
    return pd.DataFrame(rows, columns=["model", "run", "step", "images seen", "train seconds", "val mIoU"])


def at_equal_time(curves: pd.DataFrame) -> tuple[float, pd.Series]:
    """The longest training time every curve reached, and each model's last val mIoU at or before it
    (NaN for a model not evaluated by then)."""
    if curves.empty:
        raise ValueError("no evaluations to compare")
    common = float(curves.groupby("model")["train seconds"].max().min())
    reached = curves[curves["train seconds"] <= common * (1 + 1e-9)].sort_values("train seconds", kind="stable")
    values = reached.groupby("model", sort=False)["val mIoU"].last()
    return common, values.reindex(curves["model"].unique())


def score_split(run, data_root=None, split: str = "train", *, max_images: int | None = None,
                which: str = "last", per_image: np.ndarray | None = None) -> Scores:
    """A run's scores on (the first images of) any labelled split, at its working resolution, no TTA.

    Scoring the training split beside the validation split tells underfitting (both low) from
    overfitting (train above val by more than the choice of images explains: `compare.split_gap` of the two
    splits' per-image confusions). `per_image`, an (images, classes, classes) array, receives each scored
    image's confusion matrix.
    """
    dataset = TrashDataset(data_root if data_root is not None else run.config.data_root, split)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    model = run.load_model(which)
    loader = item_loader(dataset, range(n), batch_size=8, workers=0)
    return validate(model, loader, num_classes=model.num_classes, work_size=run.config.work_size, per_image=per_image)


def steps_to_reach(steps, miou, target: float) -> float:
    """Optimizer steps at which a log-linear fit mIoU = a + b ln(step) of a learning curve reaches `target`.

    An extrapolation, honest only as a rough order: NaN with fewer than 3 evaluations or a curve that
    does not rise; the steps already run when the curve has reached the target.
    """
    x, y = np.asarray(steps, dtype=np.float64), np.asarray(miou, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[keep], y[keep]
    if (y >= target).any():
        return float(x[np.argmax(y >= target)])
    if len(x) < 3:
        return float("nan")
    b, a = np.polyfit(np.log(x), y, 1)
    return float(np.exp((target - a) / b)) if b > 0 else float("nan")

