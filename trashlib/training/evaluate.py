"""Validation with the competition metric, and the CDB class weights derived from it.

Images are evaluated at their full size: argmax of `predict_proba`, one confusion matrix summed over
the split (trashlib.metrics), batches streamed from a DataLoader so the split is never in memory.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.metrics import ConfusionMeter, Scores, scores


def images_to_tensor(images, device) -> torch.Tensor:
    """uint8 images to a float batch in [0, 1] on `device`.

    Shape:
        images: list of (H, W, 3) uint8 arrays, or a (N, 3, H, W) uint8 tensor
        returns: (N, 3, H, W) float32
    """
    if not torch.is_tensor(images):
        images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return images.to(device, non_blocking=True).float().div_(255)


def same_size_groups(batch):
    """Split a list of (index, image, mask) into runs of equal image size (stackable)."""
    group = []
    for item in batch:
        if group and item[1].shape != group[-1][1].shape:
            yield group
            group = []
        group.append(item)
    if group:
        yield group


@torch.no_grad()
def evaluate(model, loader, *, device="cpu", num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
             autocast=contextlib.nullcontext, reduce=None) -> Scores:
    """Competition scores of `model` over the (index, image, mask) batches of `loader`.

    `reduce` (e.g. a sum over processes) is applied to the confusion matrix before scoring.
    """
    was_training = model.training
    model.eval()
    meter = ConfusionMeter(num_classes=num_classes, ignore_index=ignore_index)
    try:
        for batch in loader:
            for group in same_size_groups(batch):
                x = images_to_tensor([g[1] for g in group], device)
                with autocast():
                    probs = model.predict_proba(x)
                pred = probs.argmax(1).to("cpu", torch.uint8).numpy()
                meter.update(pred, np.stack([g[2] for g in group]))
    finally:
        model.train(was_training)
    confusion = meter.confusion if reduce is None else reduce(meter.confusion)
    return scores(confusion)


def evaluate_split(model, data_root=None, split: str = "val", *, batch_size: int = 2, max_images: int | None = None,
                   workers: int = 0) -> Scores:
    """Competition scores of `model` on a split (the first `max_images` images when given)."""
    from trashlib.data import TrashDataset
    from trashlib.training.sampling import eval_loader

    dataset = TrashDataset(data_root, split=split)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    device = next(model.parameters()).device
    return evaluate(model, eval_loader(dataset, range(n), batch_size=batch_size, workers=workers),
                    device=device, num_classes=model.num_classes)


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
