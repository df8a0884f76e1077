"""Batching images of possibly different sizes for inference and validation.

Neutral ground for the training loop's validation and for `inference.predict`: a loader of
(index, image, mask) items in index order, the split of a batch into stackable runs of one image
size, and the uint8 -> float conversion every model input goes through.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


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


class _Items(Dataset):
    """(index, image, mask or None) of a subset of a dataset, untransformed (full image size)."""

    def __init__(self, dataset, indices, *, masks: bool):
        self.dataset, self.indices, self.masks = dataset, list(indices), masks

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = self.indices[k]
        return i, self.dataset.load_image(i), self.dataset.load_mask(i) if self.masks else None


def item_loader(dataset, indices, *, batch_size: int, workers: int = 0, masks: bool = True) -> DataLoader:
    """Batches (lists) of (index, image, mask) in index order; images may differ in size.

    `masks=False` skips the label maps (prediction of unlabelled splits); the mask is then None.
    """
    return DataLoader(_Items(dataset, indices, masks=masks), batch_size=batch_size, shuffle=False,
                      num_workers=workers, collate_fn=list,
                      # an explicit generator keeps the loader off the global torch RNG (resumable state)
                      generator=torch.Generator().manual_seed(0))
