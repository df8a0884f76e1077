"""The colour-only floor: a per-pixel classifier on colour and local texture, with no spatial context.

Every pixel becomes a feature vector - RGB, CIE Lab, hue as a point on the unit circle (so red's 0
and 360 degrees meet), and the standard deviation of grey levels in its 5x5 neighbourhood - and each
class is a Gaussian over those features (mean and full covariance, fitted on pixels sampled from the
training split), weighted by the class's pixel share. A pixel gets the class of highest posterior.

It is honest course material (quadratic discriminant analysis, the textbook's first classifier) and
the line every deep model must clear: a network that does not beat it has learned no more than colour.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.metrics import ConfusionMeter, Scores

FEATURES = ("R", "G", "B", "L", "a", "b", "cos hue", "sin hue", "local std 5x5")


def pixel_features(image: np.ndarray) -> np.ndarray:
    """Per-pixel colour and texture features.

    Shape:
        image: (H, W, 3) uint8 RGB; returns: (H, W, 9) float32
    """
    rgb = image.astype(np.float32) / 255
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32) / 255
    hue = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)[..., 0].astype(np.float32) * (2 * np.pi / 256)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    mean = cv2.blur(grey, (5, 5))
    std = np.sqrt(np.maximum(cv2.blur(grey * grey, (5, 5)) - mean * mean, 0))
    return np.concatenate([rgb, lab, np.cos(hue)[..., None], np.sin(hue)[..., None], std[..., None]], axis=-1)


@dataclass
class ColourFloor:
    """Class-wise Gaussians over `pixel_features`; `fit(dataset)`, then `predict(image)`."""

    means: np.ndarray | None = None        # (C, F)
    precisions: np.ndarray | None = None   # (C, F, F) inverse covariances
    log_norms: np.ndarray | None = None    # (C,) log prior - half log det covariance
    ridge: float = 1e-4                    # added to every covariance: a class seen on few pixels stays invertible

    def fit(self, dataset, *, pixels_per_image: int = 4000, max_images: int | None = None, seed: int = 0):
        """Fit on pixels sampled uniformly from each image of a labelled dataset (ignore pixels skipped)."""
        rng = np.random.default_rng(seed)
        feats, labels = [], []
        n = len(dataset) if max_images is None else min(max_images, len(dataset))
        for i in range(n):
            mask = dataset.load_mask(i)
            f = pixel_features(dataset.load_image(i)).reshape(-1, len(FEATURES))
            pick = rng.choice(mask.size, size=min(pixels_per_image, mask.size), replace=False)
            keep = mask.reshape(-1)[pick] != IGNORE_INDEX
            feats.append(f[pick][keep])
            labels.append(mask.reshape(-1)[pick][keep])
        x, y = np.concatenate(feats).astype(np.float64), np.concatenate(labels)
        dim = x.shape[1]
        counts = np.bincount(y, minlength=NUM_CLASSES).astype(np.float64)
        self.means = np.zeros((NUM_CLASSES, dim))
        self.precisions = np.zeros((NUM_CLASSES, dim, dim))
        self.log_norms = np.full(NUM_CLASSES, -np.inf)  # a class never seen is never predicted
        for c in np.flatnonzero(counts >= 2):
            xc = x[y == c]
            cov = np.cov(xc, rowvar=False) + self.ridge * np.eye(dim)
            self.means[c] = xc.mean(0)
            self.precisions[c] = np.linalg.inv(cov)
            self.log_norms[c] = np.log(counts[c] / counts.sum()) - 0.5 * np.linalg.slogdet(cov)[1]
        return self

    def log_posterior(self, image: np.ndarray) -> np.ndarray:
        """Unnormalised log posterior of every class at every pixel.

        Shape:
            image: (H, W, 3) uint8 RGB; returns: (C, H, W) float32
        """
        if self.means is None:
            raise RuntimeError("ColourFloor.predict before fit")
        f = pixel_features(image).reshape(-1, len(FEATURES))
        out = np.empty((NUM_CLASSES, f.shape[0]), dtype=np.float32)
        for c in range(NUM_CLASSES):
            d = f - self.means[c].astype(np.float32)
            mahalanobis = np.einsum("ni,ij,nj->n", d, self.precisions[c].astype(np.float32), d, optimize=True)
            out[c] = self.log_norms[c] - 0.5 * mahalanobis
        return out.reshape(NUM_CLASSES, *image.shape[:2])

    def predict(self, image: np.ndarray) -> np.ndarray:
        """(H, W) uint8 label map."""
        return self.log_posterior(image).argmax(0).astype(np.uint8)


def score_colour_floor(train, val, *, max_train_images: int | None = None, max_val_images: int | None = None,
                       seed: int = 0) -> tuple[ColourFloor, Scores]:
    """Fit the floor on (the first images of) a training dataset and score it on a validation one."""
    floor = ColourFloor().fit(train, max_images=max_train_images, seed=seed)
    meter = ConfusionMeter()
    n = len(val) if max_val_images is None else min(max_val_images, len(val))
    for i in range(n):
        meter.update(floor.predict(val.load_image(i)), val.load_mask(i))
    return floor, meter.compute()
