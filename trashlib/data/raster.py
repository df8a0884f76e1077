"""COCO polygons -> label map: pixel value = category_id, largest area painted first so small objects stay on top."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def annotation_rle(ann: dict, *, height: int, width: int) -> dict:
    """One annotation's segmentation (polygons, RLE or compressed RLE) as a compressed RLE."""
    seg = ann["segmentation"]
    if isinstance(seg, list):  # polygons: one RLE each, merged into the object's mask
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if isinstance(seg["counts"], list):  # uncompressed RLE (iscrowd)
        return mask_utils.frPyObjects(seg, height, width)
    return seg


def paint_order(annotations: list[dict], rles: list[dict]) -> list[int]:
    """Indices sorted by area, largest first; ties keep file order. A missing area is measured."""
    areas = [float(a["area"]) if "area" in a else float(mask_utils.area(r)) for a, r in zip(annotations, rles)]
    return sorted(range(len(annotations)), key=lambda k: -areas[k])


def rasterize(annotations: list[dict], *, height: int, width: int) -> np.ndarray:
    """The (height, width) uint8 label map of one image's annotations.

    Same result as the competition's loaders (coco.annToMask per annotation, sorted by `area`
    descending, each painted over the previous ones), without their float64 intermediate.
    """
    # pycocotools decodes column-major; painting the transposed map keeps every pass sequential in memory
    mask_t = np.zeros((width, height), np.uint8)
    if annotations:
        rles = [annotation_rle(a, height=height, width=width) for a in annotations]
        for k in paint_order(annotations, rles):
            obj_t = mask_utils.decode(rles[k]).T  # (width, height), C-contiguous 0/1
            np.copyto(mask_t, annotations[k]["category_id"], where=obj_t.view(bool))
    return np.ascontiguousarray(mask_t.T)
