"""COCO annotation files: loading and schema validation, with errors naming the file and the item.

The validator (`trashlib.data.check`) and the reader (`TrashDataset`) share these functions, so a
fault is described the same way by both: `train.json: annotation 345: polygon 0 has 2 points ...`.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from trashlib.classes import CLASSES
from trashlib.data.segmentation import segmentation_problems
from trashlib.data.values import is_count, is_finite_number, is_id, label, show
from trashlib.io import parse_json
from trashlib.memo import remember

# Splits that must carry annotations; test.json (and unknown extras) may have none.
ANNOTATED_SPLITS = ("train_all", "train", "val")
IMAGE_KEYS = ("id", "file_name", "width", "height")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation")
CATEGORY_KEYS = ("id", "name")
# Larger images are refused: a hostile size would exhaust memory (see also data.segmentation)
MAX_IMAGE_SIDE = 16384  # pixels; the competition's images are 512, phone photos about 4000


class Problem(NamedTuple):
    """One fault in a dataset; `fatal` faults are errors (the reader refuses them, or, like a JPEG damaged
    inside, they would spoil training unnoticed), the others warnings that only the validator reports."""

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


def _read(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DatasetError([Problem(name, None, f"cannot read file: {e.strerror or e}")]) from None


def _parse(raw: bytes, name: str):
    try:
        return parse_json(raw, name)
    except ValueError as e:
        raise DatasetError([Problem(name, None, str(e).removeprefix(f"{name}: "))]) from None
    except RecursionError:
        raise DatasetError([Problem(name, None, "JSON nested too deeply to read")]) from None


def load_json(path: str | Path, *, name: str | None = None) -> tuple[object, str]:
    """The parsed JSON and the sha1 of its bytes; DatasetError (with line/column) when unreadable."""
    path = Path(path)
    name = name or str(path)
    raw = _read(path, name)
    return _parse(raw, name), hashlib.sha1(raw).hexdigest()


def _missing(entry: dict, keys: tuple[str, ...]) -> str | None:
    absent = [k for k in keys if k not in entry]
    return f"missing key(s) {', '.join(repr(k) for k in absent)}" if absent else None


def is_side(value) -> bool:
    """Whether a value can be an image side in pixels (1..MAX_IMAGE_SIDE)."""
    return is_count(value) and 0 < value <= MAX_IMAGE_SIDE


def annotation_item(ann, k: int) -> str:
    """How annotation k of a file is named in problems: `annotation <id>`, or `annotations[k]` without a usable id."""
    return f"annotation {label(ann['id'])}" if isinstance(ann, dict) and is_id(ann.get("id")) else f"annotations[{k}]"


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


def file_name_problem(name) -> str | None:
    """Why `name` cannot be an image's file_name: it must be a relative path that stays in the data root."""
    if not isinstance(name, str) or not name:
        return "file_name must be a non-empty string"
    if "\0" in name:
        return "file_name contains a NUL character"
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in re.split(r"[\\/]", name):
        # symbolic links inside the root may point elsewhere (an image folder on another disk): allowed
        return f"file_name {show(name)} leaves the data root (absolute or '..'); it must be relative to the root"
    return None


def _check_images(images: list, file: str, problems: list[Problem]) -> dict:
    """id -> entry of every image with a usable, unique id (even if other fields are faulty)."""
    by_id: dict = {}
    by_file: dict = {}
    for k, im in enumerate(images):
        item = f"image {label(im['id'])}" if isinstance(im, dict) and is_id(im.get("id")) else f"images[{k}]"
        if not isinstance(im, dict):
            problems.append(Problem(file, item, "not a JSON object"))
            continue
        if msg := _missing(im, IMAGE_KEYS):
            problems.append(Problem(file, item, msg))
        if "id" in im and not is_id(im["id"]):
            problems.append(Problem(file, item, f"id must be an integer or string, not {show(im['id'])}"))
            continue
        if im.get("id") in by_id:
            problems.append(Problem(file, item, "duplicate image id"))
            continue
        if "id" in im:
            by_id[im["id"]] = im
        w, h = im.get("width", 1), im.get("height", 1)  # a missing one is reported as a missing key
        if not (is_side(w) and is_side(h)):
            problems.append(Problem(file, item, f"width/height must be integers in 1..{MAX_IMAGE_SIDE} "
                                                f"({show(w)}, {show(h)})"))
        name = im.get("file_name", "-")
        if msg := file_name_problem(name):
            problems.append(Problem(file, item, msg))
        elif name in by_file:
            problems.append(Problem(file, item, f"file_name {show(name)} is also image {label(by_file[name])}: "
                                                f"one photo counted twice", fatal=False))
        elif "id" in im:
            by_file[name] = im["id"]
    return by_id


def _check_categories(categories: list, file: str, problems: list[Problem]) -> set:
    ids: set = set()
    names = {c.id: c.name for c in CLASSES[1:]}
    for k, cat in enumerate(categories):
        item = f"category {label(cat['id'])}" if isinstance(cat, dict) and is_id(cat.get("id")) else f"categories[{k}]"
        if not isinstance(cat, dict) or (msg := _missing(cat, CATEGORY_KEYS)):
            problems.append(Problem(file, item, msg if isinstance(cat, dict) else "not a JSON object"))
        elif not is_id(cat["id"]):
            problems.append(Problem(file, item, f"id must be an integer, not {show(cat['id'])}"))
        elif cat["id"] in ids:
            problems.append(Problem(file, item, "duplicate category id"))
        elif cat["id"] not in names:
            problems.append(Problem(file, item, f"id is not a trashlib class (valid: 1..{len(names)}; pixel value = category id)"))
        else:
            ids.add(cat["id"])
            if not isinstance(cat["name"], str) or cat["name"].lower() != names[cat["id"]].lower():
                problems.append(Problem(file, item, f"name {show(cat['name'])} differs from the class table's "
                                                    f"{names[cat['id']]!r}", fatal=False))
    return ids


def has_size(image: dict) -> bool:
    """Whether an image entry states a usable width and height."""
    return is_side(image.get("width")) and is_side(image.get("height"))


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
        item = annotation_item(ann, k)
        if not isinstance(ann, dict) or (msg := _missing(ann, ANNOTATION_KEYS)):
            problems.append(Problem(file, item, msg if isinstance(ann, dict) else "not a JSON object"))
            continue
        if not is_id(ann["id"]):
            problems.append(Problem(file, item, f"id must be an integer or string, not {show(ann['id'])}", fatal=False))
        elif ann["id"] in seen:
            problems.append(Problem(file, item, "duplicate annotation id", fatal=False))
        else:
            seen.add(ann["id"])
        image = images.get(ann["image_id"]) if is_id(ann["image_id"]) else None
        if image is None:
            problems.append(Problem(file, item, f"points at missing image {show(ann['image_id'])}"))
            continue
        at = f" [image {label(image['id'])}]"
        if not is_id(ann["category_id"]) or (cat_ids is not None and ann["category_id"] not in cat_ids):
            known = f" (categories: {sorted(cat_ids)})" if cat_ids is not None else ""
            problems.append(Problem(file, item, f"unknown category_id {show(ann['category_id'])}{known}{at}"))
        if "area" in ann and not is_finite_number(ann["area"]):
            # the area orders the painting: NaN would scramble it silently
            problems.append(Problem(file, item, f"area must be a finite number, not {show(ann['area'])}{at}"))
        if not has_size(image):
            continue  # reported with the image
        for msg, fatal in segmentation_problems(ann["segmentation"], width=image["width"], height=image["height"]):
            problems.append(Problem(file, item, f"{msg}{at}", fatal=fatal))
    return problems


def load_coco(path: str | Path, *, annotated: bool = True, name: str | None = None) -> CocoFile:
    """Read and validate a COCO file; DatasetError listing the fatal faults, others kept as warnings.

    The parsed content of the last few valid files is kept by the sha1 of their bytes and shared by every
    reader in the process: treat a CocoFile's lists and dicts as read-only.
    """
    path = Path(path)
    name = name or str(path)
    raw = _read(path, name)
    sha1 = hashlib.sha1(raw).hexdigest()
    data = _PARSED.get(sha1)
    if data is None:
        data = _parse(raw, name)
    key = (sha1, name, annotated)
    if (warnings := _VALID.get(key)) is None:
        problems = validate_coco(data, file=name, annotated=annotated)
        fatal = [p for p in problems if p.fatal]
        if fatal:
            raise DatasetError(fatal)
        warnings = remember(_VALID, key, [p for p in problems if not p.fatal], keep=_KEEP_VALID)
    if sha1 not in _PARSED:
        remember(_PARSED, sha1, data, keep=_KEEP_PARSED)
    return CocoFile(path, sha1, data["images"], data["categories"], data.get("annotations"), list(warnings))


# The warnings of files that passed validation, by (sha1 of the bytes, name, annotated): validation is a
# pure function of these, and it costs seconds on a real-sized train file, which notebooks load once per run.
_VALID: dict[tuple, list[Problem]] = {}
_KEEP_VALID = 32
# The parsed content of the last files that passed, by the sha1 of their bytes: a training run opens its
# train and val files several times (datasets, donors, checks), and parsing the embedded train.json (5 MB)
# took 0.15 s each time; reading and hashing it takes a tenth of that. Bounded: a real train file parses to
# hundreds of MB of Python objects.
_PARSED: dict[str, object] = {}
_KEEP_PARSED = 3
