"""Copy & paste augmentation: objects cut from training photos pasted onto others, and ClassMix.

Pure functions of (image, mask, donor, rng): nothing here reads files, so the online stream
(`trashlib.training.sampling`) and the offline sets (`trashlib.data.pasted`) paste the same way.

- A **donor** (`cut_donor`) is one object with its own shape: the pixels of its COCO instance mask
  that show it (where another object lies on top they show that one, so they are left out), cut
  to its bounding box plus a margin that feathered edges can fade into.
- `paste_object` puts a donor on top of an image at a random scale, flip and position. The pixels
  it covers take its class, ignore pixels too (an object is known to lie there now); every other
  pixel keeps its label, so an object it partly covers stays where it is still visible. The image is
  blended through the donor's mask, hard or feathered by a Gaussian of `blend_sigma` pixels; the
  labels follow the hard mask.
- `classmix` (Olsson et al. 2021) pastes all pixels of a random half of the classes of one training
  image onto another. Background and ignore pixels are never among those classes: background would
  paste the other photo's floor, ignore pixels are no class.
- `Paster` is a recipe (how often, how many objects, which donors) applied with a given generator;
  `paste_rng(seed, position)` is the generator of one training sample, its own stream beside the
  augmentation's, so pasting changes no other random decision of the sample.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from trashlib.classes import IGNORE_INDEX

MARGIN = 4            # pixels kept around a donor's box: room for a feathered edge
PASTE_STREAM = 0x0C0B  # third word of a sample's seed: the paste's stream differs from augment.item_seed's
DONOR_SAMPLING = ("uniform", "inverse", "classes")


@dataclass(frozen=True)
class Donor:
    """One object to paste: its crop, the pixels that are the object, its class and where it came from.

    Shape:
        image: (h, w, 3) uint8; mask: (h, w) bool, True on the object.
    """

    image: np.ndarray
    mask: np.ndarray
    category_id: int
    source: str = ""
    reference_size: int = 0  # longer side of the photo it was cut from (0: this crop's own)


def cut_donor(image: np.ndarray, instance: np.ndarray, *, category_id: int, source: str = "",
              margin: int = MARGIN) -> Donor | None:
    """The donor of one object of a photo (None when `instance` holds no pixel).

    Shape:
        image: (H, W, 3) uint8; instance: (H, W) bool, the object's visible pixels.
    """
    rows, cols = instance.any(axis=1), instance.any(axis=0)  # the box without listing every pixel (np.nonzero)
    if not rows.any():
        return None
    h, w = instance.shape
    top, bottom = int(rows.argmax()), h - int(rows[::-1].argmax())
    left, right = int(cols.argmax()), w - int(cols[::-1].argmax())
    y0, y1 = max(0, top - margin), min(h, bottom + margin)
    x0, x1 = max(0, left - margin), min(w, right + margin)
    return Donor(np.ascontiguousarray(image[y0:y1, x0:x1]), np.ascontiguousarray(instance[y0:y1, x0:x1]),
                 int(category_id), source, max(h, w))


def _blend_into(image: np.ndarray, patch: np.ndarray, hard: np.ndarray, blend_sigma: float) -> None:
    """image = alpha * patch + (1 - alpha) * image in place, alpha = the hard mask, blurred by a Gaussian
    of `blend_sigma` pixels when > 0 (OpenCV's blend: a tenth of numpy's time, and this is the hot loop).

    Shape:
        image, patch: (h, w, 3) uint8 (views allowed); hard: (h, w) bool.
    """
    alpha = hard.view(np.uint8).astype(np.float32)
    if blend_sigma > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=blend_sigma)
    image[...] = cv2.blendLinear(np.ascontiguousarray(patch), np.ascontiguousarray(image), alpha, 1 - alpha)


def _reach(blend_sigma: float) -> int:
    """Pixels beyond the hard mask that a feathered edge reaches (OpenCV's kernel radius, about 4 sigma)."""
    return int(np.ceil(4 * blend_sigma)) + 1 if blend_sigma > 0 else 0


def _paste_into(image: np.ndarray, mask: np.ndarray, donor: Donor, *, rng: np.random.Generator,
                scale_range=(1.0, 1.0), blend_sigma: float = 0.0) -> None:
    """`paste_object` writing into `image` and `mask`."""
    height, width = mask.shape
    # draw everything first, in a fixed order: the stream of a sample does not depend on what it meets
    factor = float(rng.uniform(*scale_range)) * max(height, width) / (donor.reference_size or max(donor.mask.shape))
    flip, ry, rx = rng.random() < 0.5, rng.random(), rng.random()
    h = max(1, round(donor.mask.shape[0] * factor))
    w = max(1, round(donor.mask.shape[1] * factor))
    shrink = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    crop = cv2.resize(donor.image, (w, h), interpolation=shrink)
    hard = cv2.resize(donor.mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
    if flip:
        crop, hard = cv2.flip(crop, 1), hard[:, ::-1]
    # top-left corner: the crop lies inside the image when it fits, else covers it and is clipped
    top = min(0, height - h) + int(ry * (abs(height - h) + 1))
    left = min(0, width - w) + int(rx * (abs(width - w) + 1))
    ty, tx = slice(max(0, top), min(height, top + h)), slice(max(0, left), min(width, left + w))
    cy, cx = slice(ty.start - top, ty.stop - top), slice(tx.start - left, tx.stop - left)
    hard = np.ascontiguousarray(hard[cy, cx])
    _blend_into(image[ty, tx], crop[cy, cx], hard, blend_sigma)
    mask[ty, tx][hard] = donor.category_id


def paste_object(image: np.ndarray, mask: np.ndarray, donor: Donor, *, rng: np.random.Generator,
                 scale_range=(1.0, 1.0), blend_sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """`image` and `mask` with `donor` on top: scaled by a factor drawn from `scale_range` (relative to its size
    in its own photo, that photo's longer side mapped to this one's), flipped half the time, at a random place.

    Shape:
        image: (H, W, 3) uint8; mask: (H, W) uint8 labels (255 = ignore); returns new arrays of the same shapes.
    """
    image, mask = np.array(image, copy=True), np.array(mask, copy=True)
    _paste_into(image, mask, donor, rng=rng, scale_range=scale_range, blend_sigma=blend_sigma)
    return image, mask


def classmix(image: np.ndarray, mask: np.ndarray, donor_image: np.ndarray, donor_mask: np.ndarray, *,
             rng: np.random.Generator, blend_sigma: float = 0.0,
             ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """ClassMix: every pixel of a random half (rounded up) of the donor's classes pasted where it is.

    A donor of another size is resized to the image's first (labels nearest). Background (0)
    and `ignore_index` are never chosen; without another class the image comes back unchanged.

    Shape:
        image, donor_image: (H, W, 3) uint8; mask, donor_mask: (H, W) uint8; returns new (H, W, 3), (H, W).
    """
    image, mask = np.array(image, copy=True), np.array(mask, copy=True)
    if donor_mask.shape != mask.shape:
        size = (mask.shape[1], mask.shape[0])
        shrink = donor_mask.shape[0] * donor_mask.shape[1] > mask.size
        donor_image = cv2.resize(donor_image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        donor_mask = cv2.resize(donor_mask, size, interpolation=cv2.INTER_NEAREST)
    classes = [int(c) for c in np.flatnonzero(np.bincount(donor_mask.ravel(), minlength=256))
               if c not in (0, ignore_index)]
    if not classes:
        return image, mask
    chosen = np.zeros(256, bool)
    chosen[rng.choice(classes, size=(len(classes) + 1) // 2, replace=False)] = True
    hard = chosen[donor_mask]
    rows, cols = np.flatnonzero(hard.any(1)), np.flatnonzero(hard.any(0))
    reach, (height, width) = _reach(blend_sigma), mask.shape  # blend only the box the classes (and edges) cover
    box = (slice(max(0, rows[0] - reach), min(height, rows[-1] + 1 + reach)),
           slice(max(0, cols[0] - reach), min(width, cols[-1] + 1 + reach)))
    _blend_into(image[box], donor_image[box], hard[box], blend_sigma)
    np.copyto(mask, donor_mask, where=hard)
    return image, mask


def class_probabilities(counts: Mapping[int, int], *, sampling: str = "uniform",
                        classes: Sequence[int] = ()) -> dict[int, float]:
    """Probability of drawing a donor of each class, from the number of donors per class.

    uniform: every object equally likely (a class in proportion to its count); inverse: a class in
    proportion to 1 / its count (the rarer, the more often); classes: the listed classes, equally.
    Classes without donors get no probability; a listed class without any is an error.
    """
    counts = {int(c): int(n) for c, n in counts.items() if n > 0 and c not in (0, IGNORE_INDEX)}
    if sampling == "uniform":
        weights = {c: float(n) for c, n in counts.items()}
    elif sampling == "inverse":
        weights = {c: 1.0 / n for c, n in counts.items()}
    elif sampling == "classes":
        missing = sorted(set(classes) - set(counts))
        if not classes or missing:
            raise ValueError(f"no objects of class(es) {missing or '(none listed)'} to paste; classes with objects: "
                             f"{sorted(counts)}")
        weights = {int(c): 1.0 for c in classes}
    else:
        raise ValueError(f"donor sampling must be one of {DONOR_SAMPLING}, got {sampling!r}")
    if not weights:
        raise ValueError("no objects to paste: the donors hold no class")
    total = sum(weights.values())
    return {c: w / total for c, w in sorted(weights.items())}


def paste_rng(seed: int, position: int) -> np.random.Generator:
    """The generator of training sample `position`'s paste: a pure function of (seed, position)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(position), PASTE_STREAM]))


@dataclass
class Paster:
    """A copy-paste recipe; called with a generator, it pastes with probability `prob`. `donors` maps a class
    to its donors (object pasting), `partners` is a dataset of (image, mask) ClassMix partners; `sampling`
    and `classes` pick each object's class (`class_probabilities`) from `counts` (default: `donors`' sizes).
    `work_size` (the training's working resolution) pastes onto the image brought to that size first, as
    the augmentation would (longer side, area interpolation, labels nearest): 1/16 of the pixels for
    512 -> 128. `blend_sigma` is in pixels of the photo at its own size, so a paste looks the same online
    and offline."""

    donors: Mapping[int, Sequence[Donor]] | None = None
    partners: object = None
    sampling: str = "uniform"
    classes: tuple[int, ...] = ()
    counts: Mapping[int, int] | None = None
    prob: float = 0.5
    max_objects: int = 3
    scale_range: tuple[float, float] = (0.5, 1.5)
    blend_sigma: float = 1.0
    work_size: int | None = None

    def __post_init__(self):
        if (self.donors is None) == (self.partners is None):
            raise ValueError("a Paster needs donors (object pasting) or partners (ClassMix), not both")
        lo, hi = self.scale_range
        if not (np.isfinite([self.prob, lo, hi, self.blend_sigma]).all() and 0 <= self.prob <= 1 and 0 < lo <= hi
                and self.blend_sigma >= 0 and self.max_objects >= 1):
            raise ValueError(f"invalid Paster: prob {self.prob} (in [0, 1]), scale_range {self.scale_range} (0 < low "
                             f"<= high), blend_sigma {self.blend_sigma} (>= 0), max_objects {self.max_objects} (>= 1)")
        if self.donors is not None:
            counts = self.counts or {c: len(d) for c, d in self.donors.items()}
            self.probabilities = class_probabilities(counts, sampling=self.sampling, classes=self.classes)
            self._classes = np.array(list(self.probabilities), dtype=np.int64)
            self._p = np.array(list(self.probabilities.values()))

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
        """(image, mask) pasted with probability `prob`, else unchanged (the same arrays)."""
        return self.paste(image, mask, rng) if rng.random() < self.prob else (image, mask)

    def paste(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
        """New (image, mask) with 1..max_objects objects pasted on top, or mixed with a ClassMix partner.

        Shape:
            image: (H, W, 3) uint8; mask: (H, W) uint8; returns the same shapes, or (h, w, 3), (h, w)
            with max(h, w) = work_size when the image is larger.
        """
        sigma = self.blend_sigma
        longest = max(mask.shape)
        if self.work_size is not None and longest > self.work_size:
            scale = self.work_size / longest  # LongestMaxSize's sizes: the augmentation then leaves them as they are
            size = (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
            sigma *= scale
        if self.partners is not None:
            donor_image, donor_mask = self.partners[int(rng.integers(len(self.partners)))]
            return classmix(image, mask, donor_image, donor_mask, rng=rng, blend_sigma=sigma)
        image, mask = np.array(image, copy=True), np.array(mask, copy=True)
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            donors = self.donors[int(rng.choice(self._classes, p=self._p))]
            _paste_into(image, mask, donors[int(rng.integers(len(donors)))], rng=rng,
                        scale_range=self.scale_range, blend_sigma=sigma)
        return image, mask
