"""COCO annotation files: loading and schema validation, with errors naming the file and the item.

The validator (`trashlib.data.check`) and the reader (`TrashDataset`) share these functions, so a
fault is described the same way by both: `train.json: annotation 345: polygon 0 has 2 points ...`.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from trashlib.classes import CLASSES
from trashlib.io import parse_json

# Splits that must carry annotations; test.json (and unknown extras) may have none.
ANNOTATED_SPLITS = ("train_all", "train", "val")
IMAGE_KEYS = ("id", "file_name", "width", "height")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation")
CATEGORY_KEYS = ("id", "name")


class Problem(NamedTuple):
    """One fault in a dataset; `fatal` faults stop the reader, the others only the validator."""

    file: str
    item: str | None
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.file}: {self.item}: {self.message}" if self.item else f"{self.file}: {self.message}"


class DatasetError(ValueError):
    """A dataset that cannot be read as the competition layout; `.problems` lists every fault found."""

    def __init__(self, problems: list[Problem] | str):
        self.problems = [] if isinstance(problems, str) else list(problems)
        if isinstance(problems, str):
            msg = problems
        else:
            msg = str(self.problems[0])
            if len(self.problems) > 1:
                msg += f" (and {len(self.problems) - 1} more problem(s); `python -m trashlib data check` lists them)"
        super().__init__(msg)


@dataclass
class CocoFile:
    """A loaded, validated COCO file; `annotations` is None when the file has no annotations key."""

    path: Path
    sha1: str
    images: list[dict]
    categories: list[dict]
    annotations: list[dict] | None
    warnings: list[Problem] = field(default_factory=list)

    def annotations_by_image(self) -> dict:
        """image id -> that image's annotations, in file order (empty list for unannotated images)."""
        by_image: dict = {im["id"]: [] for im in self.images}
        for ann in self.annotations or ():
            by_image[ann["image_id"]].append(ann)
        return by_image


def load_json(path: str | Path, *, name: str | None = None) -> tuple[object, str]:
    """The parsed JSON and the sha1 of its bytes; DatasetError (with line/column) when unreadable."""
    path = Path(path)
    name = name or str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DatasetError([Problem(name, None, f"cannot read file: {e.strerror or e}")]) from None
    try:
        data = parse_json(raw, name)
    except ValueError as e:
        raise DatasetError([Problem(name, None, str(e).removeprefix(f"{name}: "))]) from None
    return data, hashlib.sha1(raw).hexdigest()


def _missing(entry: dict, keys: tuple[str, ...]) -> str | None:
    absent = [k for k in keys if k not in entry]
    return f"missing key(s) {', '.join(repr(k) for k in absent)}" if absent else None


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def segmentation_problems(seg, *, width: int, height: int) -> list[tuple[str, bool]]:
    """(message, fatal) for each fault of one COCO segmentation (polygon list or RLE dict)."""
    if isinstance(seg, dict):  # RLE, used for iscrowd annotations
        if "counts" not in seg or "size" not in seg:
            return [("RLE segmentation lacks 'counts' or 'size'", True)]
        if not isinstance(seg["counts"], (str, list)):
            return [("RLE counts must be a string or a list of run lengths", True)]
        if seg["size"] != [height, width]:
            return [(f"RLE size {seg['size']} differs from the image's [{height}, {width}]", True)]
        return []
    if not isinstance(seg, list) or not seg:
        return [("segmentation must be a non-empty list of polygons or an RLE dict", True)]
    out = []
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(isinstance(v, (int, float)) for v in poly):
            out.append((f"polygon {k} is not a flat list of numbers", True))
        elif not math.isfinite(sum(poly)):
            out.append((f"polygon {k} has a NaN or infinite coordinate", True))
        elif len(poly) % 2:
            out.append((f"polygon {k} has an odd number of coordinates ({len(poly)})", True))
        elif len(poly) < 6:
            # pycocotools would even read a 4-number polygon as a box
            out.append((f"polygon {k} has {len(poly) // 2} point(s) (needs at least 3)", True))
        else:
            xs, ys = poly[0::2], poly[1::2]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            # one pixel of slack: coordinates on the far edge (x == width) are common and harmless
            if x0 < -1 or y0 < -1 or x1 > width + 1 or y1 > height + 1:
                out.append((f"polygon {k} lies outside the {width}x{height} image "
                            f"(x {x0:g}..{x1:g}, y {y0:g}..{y1:g})", x1 < 0 or y1 < 0 or x0 > width or y0 > height))
    return out


def _entries(data: dict, key: str, file: str, problems: list[Problem], *, required: bool = True) -> list[dict] | None:
    if key not in data:
        if required:
            problems.append(Problem(file, None, f"missing top-level key {key!r}"))
        return None
    value = data[key]
    if not isinstance(value, list):
        problems.append(Problem(file, None, f"{key!r} must be a list, not {type(value).__name__}"))
        return None
    return value


def _check_images(images: list, file: str, problems: list[Problem]) -> dict:
    """id -> entry of every image with a usable, unique id (even if other fields are faulty)."""
    by_id: dict = {}
    for k, im in enumerate(images):
        item = f"image {im['id']}" if isinstance(im, dict) and _is_id(im.get("id")) else f"images[{k}]"
        if not isinstance(im, dict):
            problems.append(Problem(file, item, "not a JSON object"))
            continue
        if msg := _missing(im, IMAGE_KEYS):
            problems.append(Problem(file, item, msg))
        if "id" in im and not _is_id(im["id"]):
            problems.append(Problem(file, item, f"id must be an integer or string, not {im['id']!r}"))
            continue
        if im.get("id") in by_id:
            problems.append(Problem(file, item, "duplicate image id"))
            continue
        if "id" in im:
            by_id[im["id"]] = im
        w, h = im.get("width", 1), im.get("height", 1)
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            problems.append(Problem(file, item, f"width/height must be positive integers ({w!r}, {h!r})"))
        if not isinstance(im.get("file_name", "-"), str) or not im.get("file_name", "-"):
            problems.append(Problem(file, item, "file_name must be a non-empty string"))
    return by_id


def _check_categories(categories: list, file: str, problems: list[Problem]) -> set:
    ids: set = set()
    names = {c.id: c.name for c in CLASSES[1:]}
    for k, cat in enumerate(categories):
        item = f"category {cat['id']}" if isinstance(cat, dict) and _is_id(cat.get("id")) else f"categories[{k}]"
        if not isinstance(cat, dict) or (msg := _missing(cat, CATEGORY_KEYS)):
            problems.append(Problem(file, item, msg if isinstance(cat, dict) else "not a JSON object"))
        elif not _is_id(cat["id"]):
            problems.append(Problem(file, item, f"id must be an integer, not {cat['id']!r}"))
        elif cat["id"] in ids:
            problems.append(Problem(file, item, "duplicate category id"))
        elif cat["id"] not in names:
            problems.append(Problem(file, item, f"id is not a trashlib class (valid: 1..{len(names)}; pixel value = category id)"))
        else:
            ids.add(cat["id"])
            if str(cat["name"]).lower() != names[cat["id"]].lower():
                problems.append(Problem(file, item, f"name {cat['name']!r} differs from the class table's "
                                                    f"{names[cat['id']]!r}", fatal=False))
    return ids


def validate_coco(data, *, file: str, annotated: bool = True) -> list[Problem]:
    """Every schema fault of a parsed COCO file; `annotated` requires the annotations key."""
    if not isinstance(data, dict):
        return [Problem(file, None, "top level must be a JSON object with images, annotations and categories")]
    problems: list[Problem] = []
    images = _check_images(_entries(data, "images", file, problems) or [], file, problems)
    categories = _entries(data, "categories", file, problems)
    # without a categories list every annotation would repeat the same complaint
    cat_ids = None if categories is None else _check_categories(categories, file, problems)
    seen: set = set()
    for k, ann in enumerate(_entries(data, "annotations", file, problems, required=annotated) or []):
        item = f"annotation {ann['id']}" if isinstance(ann, dict) and _is_id(ann.get("id")) else f"annotations[{k}]"
        if not isinstance(ann, dict) or (msg := _missing(ann, ANNOTATION_KEYS)):
            problems.append(Problem(file, item, msg if isinstance(ann, dict) else "not a JSON object"))
            continue
        if not _is_id(ann["id"]):
            problems.append(Problem(file, item, f"id must be an integer or string, not {ann['id']!r}", fatal=False))
        elif ann["id"] in seen:
            problems.append(Problem(file, item, "duplicate annotation id", fatal=False))
        else:
            seen.add(ann["id"])
        image = images.get(ann["image_id"]) if _is_id(ann["image_id"]) else None
        if image is None:
            problems.append(Problem(file, item, f"points at missing image {ann['image_id']!r}"))
            continue
        if not _is_id(ann["category_id"]) or (cat_ids is not None and ann["category_id"] not in cat_ids):
            problems.append(Problem(file, item, f"unknown category_id {ann['category_id']!r} "
                                                f"(categories: {sorted(cat_ids)}) [image {image['id']}]"))
        if "area" in ann and (not isinstance(ann["area"], (int, float)) or isinstance(ann["area"], bool)):
            problems.append(Problem(file, item, f"area must be a number, not {ann['area']!r}"))
        w, h = image.get("width"), image.get("height")
        if not (isinstance(w, int) and isinstance(h, int)):
            continue  # reported with the image
        for msg, fatal in segmentation_problems(ann["segmentation"], width=w, height=h):
            problems.append(Problem(file, item, f"{msg} [image {image['id']}]", fatal=fatal))
    return problems


def load_coco(path: str | Path, *, annotated: bool = True, name: str | None = None) -> CocoFile:
    """Read and validate a COCO file; DatasetError listing the fatal faults, others kept as warnings."""
    path = Path(path)
    data, sha1 = load_json(path, name=name)
    problems = validate_coco(data, file=name or str(path), annotated=annotated)
    fatal = [p for p in problems if p.fatal]
    if fatal:
        raise DatasetError(fatal)
    return CocoFile(path, sha1, data["images"], data["categories"], data.get("annotations"),
                    [p for p in problems if not p.fatal])
