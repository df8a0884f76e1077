"""COCO polygons -> label map: pixel value = category_id, largest area painted first so small objects stay on top.

Every segmentation is checked (`segmentation.segmentation_problems`) before pycocotools sees it: its C code
crashes or exhausts memory on coordinates far outside the image and reads garbage from a damaged RLE.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from trashlib.data.coco import DatasetError, Problem, annotation_item
from trashlib.data.segmentation import segmentation_problems
from trashlib.data.values import is_finite_number, label, show


def annotation_rle(ann: dict, *, height: int, width: int, file: str = "annotations", k: int = 0) -> dict:
    """One annotation's segmentation (polygons, RLE or compressed RLE) as a compressed RLE.

    DatasetError naming `file`, the annotation (`k`: its index, for one without an id) and its image
    when the segmentation is unusable.
    """
    item, at = annotation_item(ann, k), f" [image {label(ann.get('image_id'))}]"
    cat = ann.get("category_id")
    if not (isinstance(cat, int) and 0 <= cat < 256) or isinstance(cat, bool):
        raise DatasetError([Problem(file, item, f"category_id {show(cat)} is not a label value{at}")])
    problems = segmentation_problems(ann.get("segmentation"), width=width, height=height)
    if fatal := [Problem(file, item, msg + at) for msg, is_fatal in problems if is_fatal]:
        raise DatasetError(fatal)
    seg = ann["segmentation"]
    try:
        if isinstance(seg, list):  # polygons: one RLE each, merged into the object's mask
            return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        if isinstance(seg["counts"], list):  # uncompressed RLE (iscrowd)
            return mask_utils.frPyObjects(seg, height, width)
    except (ValueError, TypeError, OverflowError) as e:  # what the checks above cannot foresee
        raise DatasetError([Problem(file, item, f"cannot rasterise its segmentation: {e}{at}")]) from None
    return seg


def _area(ann: dict, rle: dict) -> float:
    area = ann.get("area")
    return float(area) if is_finite_number(area) else float(mask_utils.area(rle))


def paint_order(annotations: list[dict], rles: list[dict]) -> list[int]:
    """Indices sorted by area, largest first; ties keep file order. A missing (or unusable) area is measured."""
    areas = [_area(a, r) for a, r in zip(annotations, rles)]
    return sorted(range(len(annotations)), key=lambda k: -areas[k])


def rasterize(annotations: list[dict], *, height: int, width: int, file: str = "annotations") -> np.ndarray:
    """The (height, width) uint8 label map of one image's annotations; DatasetError naming `file` if one is bad.

    Same result as the competition's loaders (coco.annToMask per annotation, sorted by `area`
    descending, each painted over the previous ones), without their float64 intermediate.
    """
    # pycocotools decodes column-major; painting the transposed map keeps every pass sequential in memory
    mask_t = np.zeros((width, height), np.uint8)
    if annotations:
        rles = [annotation_rle(a, height=height, width=width, file=file, k=k) for k, a in enumerate(annotations)]
        for k in paint_order(annotations, rles):
            try:
                obj_t = mask_utils.decode(rles[k]).T  # (width, height), C-contiguous 0/1
            except (ValueError, TypeError) as e:
                at = f" [image {label(annotations[k].get('image_id'))}]"
                raise DatasetError([Problem(file, annotation_item(annotations[k], k),
                                            f"cannot rasterise its segmentation: {e}{at}")]) from None
            np.copyto(mask_t, annotations[k]["category_id"], where=obj_t.view(bool))
    return np.ascontiguousarray(mask_t.T)
