"""Training augmentation (albumentations): multi-scale rescale, crop with ignore padding, flip, colour.

The pipeline is the mmsegmentation one trimmed to what the competition needs: optionally bring the image
to the working resolution (`work_size`: its longer side, area interpolation for the image, nearest for the
mask), rescale it by a random factor in `scale_range` (relative to that size, so 512-pixel photos are seen
at 256..1024 without a working resolution),
take a random `image_size` crop (padding with 0 in the image and `ignore_index` in the mask where the
rescaled image is smaller), flip horizontally, jitter colour. Evaluation uses the full image, untouched.
"""
from __future__ import annotations

import os
import random

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # before the import: it asks the package index otherwise
import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from trashlib.classes import IGNORE_INDEX  # noqa: E402


def train_transform(*, image_size: int, scale_range=(0.5, 2.0), hflip: float = 0.5,
                    color_jitter: float = 0.2, work_size: int | None = None, ignore_index: int = IGNORE_INDEX):
    """The albumentations Compose for training crops (call `seed_transform` before each item)."""
    lo, hi = scale_range
    steps = []
    if work_size is not None:  # deterministic: draws no random number, so seeds mean the same with or without
        steps.append(A.LongestMaxSize(max_size=work_size, interpolation=cv2.INTER_AREA,
                                      mask_interpolation=cv2.INTER_NEAREST, p=1.0))
    if (lo, hi) != (1.0, 1.0):
        # RandomScale draws the factor from 1 + scale_limit; masks use nearest-neighbour.
        steps.append(A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR, p=1.0))
    steps.append(A.RandomCrop(image_size, image_size, pad_if_needed=True, pad_position="random",
                              border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index))
    if hflip > 0:
        steps.append(A.HorizontalFlip(p=hflip))
    if color_jitter > 0:
        s = color_jitter
        steps.append(A.ColorJitter(brightness=s, contrast=s, saturation=s, hue=s / 4, p=0.8))
    return A.Compose(steps)


def transform_from_config(cfg):
    """`train_transform` with a TrainConfig's settings."""
    return train_transform(image_size=cfg.image_size, scale_range=cfg.scale_range, hflip=cfg.hflip,
                           color_jitter=cfg.color_jitter, work_size=cfg.work_size)


def item_seed(seed: int, position: int) -> int:
    """A 32-bit seed that depends only on (run seed, sample position)."""
    return int(np.random.SeedSequence([int(seed), int(position)]).generate_state(1)[0])


def seed_transform(transform, seed: int) -> None:
    """Give every step of `transform` ONE shared generator seeded with `seed`.

    `Compose.set_random_seed` would give each step its own generator with the same seed, which
    correlates the steps' decisions (flip whenever the crop goes left); one shared stream does not.
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
