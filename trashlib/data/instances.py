"""The small objects of a labelled split: each annotation's visible pixels, for the small-object recall.

An object's visible pixels are its instance mask (from the COCO segmentation) less what other objects
cover in the label map (`label == its class`), as copy & paste cuts donors. An object is small when it
shows fewer than SMALL_AREA pixels at the competition's 512 (32 x 32; scaled by the image's longer side
for other sizes). `trashlib.metrics.object_hits` counts which of them a prediction finds.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from trashlib.data.dataset import TrashDataset
from trashlib.data.raster import annotation_rle
from trashlib.memo import remember

SMALL_AREA = 32 * 32  # visible pixels at 512 x 512
REFERENCE_SIDE = 512  # the competition's image size, at which SMALL_AREA is counted

_SMALL: dict = {}
_KEEP = 4


def visible_pixels(dataset: TrashDataset, i: int) -> list[tuple[int, np.ndarray]]:
    """(category_id, flat indices of its visible pixels) per annotation of image i, in file order; an
    object that shows no pixel has an empty array. A bad segmentation is a DatasetError naming it."""
    mask = dataset.load_mask(i)
    if mask is None:
        return []
    h, w = mask.shape
    flat = mask.ravel()
    out = []
    for k, ann in enumerate(dataset.annotations(i)):
        rle = annotation_rle(ann, height=h, width=w, file=str(dataset.path), k=k)
        x, y, bw, bh = mask_utils.toBbox(rle)
        x, y, bw, bh = int(x), int(y), int(np.ceil(bw)), int(np.ceil(bh))
        inside = mask_utils.decode(rle).view(bool)[y:y + bh + 1, x:x + bw + 1]  # the box holds every pixel
        ys, xs = np.nonzero(inside)
        where = (ys + y) * w + (xs + x)
        cat = ann["category_id"]
        out.append((cat, where[flat[where] == cat].astype(np.int64)))
    return out


def small_objects(dataset: TrashDataset, *, area: int = SMALL_AREA) -> list[list[tuple[int, np.ndarray]]]:
    """Per image of a labelled split, its small objects: (category_id, flat indices of the visible pixels)
    for each object showing between 1 and `area` - 1 pixels at 512 (kept for the last few splits asked)."""
    key = (str(dataset.path), dataset.sha1, area)
    if key not in _SMALL:
        per_image = []
        for i, info in enumerate(dataset.image_infos):
            limit = area * (max(info["height"], info["width"]) / REFERENCE_SIDE) ** 2
            per_image.append([(c, p) for c, p in visible_pixels(dataset, i) if 0 < len(p) < limit])
        remember(_SMALL, key, per_image, keep=_KEEP)
    return _SMALL[key]
