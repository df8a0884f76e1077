"""The one class table: pixel value = COCO category_id, with a name and an RGB colour."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class TrashClass(NamedTuple):
    id: int
    name: str
    color: tuple[int, int, int]


CLASSES: tuple[TrashClass, ...] = (
    TrashClass(0, "Background", (0, 0, 0)),
    TrashClass(1, "General trash", (192, 0, 128)),
    TrashClass(2, "Paper", (0, 128, 192)),
    TrashClass(3, "Paper pack", (0, 128, 64)),
    TrashClass(4, "Metal", (128, 0, 0)),
    TrashClass(5, "Glass", (64, 0, 128)),
    TrashClass(6, "Plastic", (64, 0, 192)),
    TrashClass(7, "Styrofoam", (192, 128, 64)),
    TrashClass(8, "Plastic bag", (192, 192, 128)),
    TrashClass(9, "Battery", (64, 64, 128)),
    TrashClass(10, "Clothing", (128, 0, 192)),
)
NUM_CLASSES = len(CLASSES)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
IGNORE_INDEX = 255
# (256, 3) uint8 lookup table: PALETTE[mask] colours a label map; the ignore value paints white.
PALETTE = np.zeros((256, 3), dtype=np.uint8)
for _c in CLASSES:
    PALETTE[_c.id] = _c.color
PALETTE[IGNORE_INDEX] = (255, 255, 255)

# Annotation counts of the real competition's train_all.json (3272 images, 26,240 annotations).
COMPETITION_COUNTS: dict[str, int] = {
    "General trash": 2782,
    "Paper": 9311,
    "Paper pack": 659,
    "Metal": 562,
    "Glass": 610,
    "Plastic": 3090,
    "Styrofoam": 1343,
    "Plastic bag": 7643,
    "Battery": 63,
    "Clothing": 177,
}

# The five classes with the fewest annotations there, in class order: what copy-paste and the consensus
# overwrite exist for, and what every comparison reports per class.
RARE_CLASSES: tuple[str, ...] = tuple(n for n in CLASS_NAMES if n in sorted(COMPETITION_COUNTS,
                                                                              key=COMPETITION_COUNTS.get)[:5])


def class_id(name: str) -> int:
    """The category_id of a class name (case-insensitive); raises KeyError listing the names."""
    for c in CLASSES:
        if c.name.lower() == name.lower():
            return c.id
    raise KeyError(f"unknown class {name!r}; valid names: {', '.join(CLASS_NAMES)}")


def coco_categories() -> list[dict]:
    """The competition's COCO `categories` list (Background is not a COCO category)."""
    return [{"id": c.id, "name": c.name, "supercategory": c.name} for c in CLASSES[1:]]
