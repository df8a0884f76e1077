"""The training loop's validation with the competition metric, and the CDB class weights derived from it.

Images are scored at their full size: argmax of `predict_proba` (at the working resolution `work_size`
when given, upsampled bilinearly to the label map's size, as `inference.predict` does), one confusion matrix summed over
the split (trashlib.metrics), batches streamed from `batching.item_loader` so the split is never in
memory. Scoring stored predictions (after TTA, ensembles, CRF) is `trashlib.scoring.evaluation`'s job.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.metrics import ConfusionMeter, Scores, confusion_matrix, object_hits, scores
from trashlib.predict.batching import images_to_tensor, same_size_groups
from trashlib.predict.inference import TTA, predict_tta


@torch.no_grad()
def validate(model, loader, *, device="cpu", num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
             autocast=contextlib.nullcontext, reduce=None, work_size: int | None = None,
             per_image: np.ndarray | None = None, objects=None, hits: np.ndarray | None = None) -> Scores:
    """Competition scores of `model` over the (index, image, mask) batches of `loader`.

    `reduce` (e.g. a sum over processes) is applied to the confusion matrix before scoring. `per_image`,
    an (images, classes, classes) array, receives each image's confusion matrix at its index (what
    `trashlib.scoring.compare` resamples); their sum is the split's. With `objects` (per image of the split, its
    small objects: `trashlib.data.instances.small_objects`), `hits`, an (images, 2, classes) array,
    receives each image's `metrics.object_hits`.
    """
    tta = TTA(size=work_size)
    was_training = model.training
    model.eval()
    meter = ConfusionMeter(num_classes=num_classes, ignore_index=ignore_index)
    try:
        for batch in loader:
            for group in same_size_groups(batch):
                x = images_to_tensor([g[1] for g in group], device)
                with autocast():
                    probs = predict_tta(model, x, tta) if work_size else model.predict_proba(x)
                # max(1).indices is argmax(1), first maximum on ties, at a fifth of its cost on CPU (a 512
                # map's class axis is strided): the split's evaluation spent half its time here
                pred = probs.max(1).indices.to("cpu", torch.uint8).numpy()
                if hits is not None:
                    for (index, _, _), p in zip(group, pred):
                        hits[index] = object_hits(p, objects[index], num_classes=num_classes)
                if per_image is None:
                    meter.update(pred, np.stack([g[2] for g in group]))
                    continue
                for (index, _, mask), p in zip(group, pred):
                    per_image[index] = confusion_matrix(p, mask, num_classes=num_classes, ignore_index=ignore_index)
                    meter.confusion += per_image[index]
    finally:
        model.train(was_training)
    confusion = meter.confusion if reduce is None else reduce(meter.confusion)
    return scores(confusion)


def cdb_weights(per_class_iou, *, tau: float = 1.0, floor: float = 0.05) -> np.ndarray:
    """Class-difficulty weights w_c proportional to (1 - IoU_c)^tau, normalised to mean 1.

    Classes without an IoU (absent from ground truth and prediction) get the mean difficulty;
    difficulty is floored at `floor` so a solved class is down-weighted, never switched off.
    """
    iou = np.asarray(per_class_iou, dtype=np.float64)
    difficulty = 1.0 - iou
    known = np.isfinite(difficulty)
    difficulty[~known] = difficulty[known].mean() if known.any() else 1.0
    w = np.clip(difficulty, floor, 1.0) ** tau
    return w / w.mean()
