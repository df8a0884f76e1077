"""TACO's own files: its annotation files read and checked, and where each photo comes from.

A source is TACO's repository, as a local checkout (or its `data/` folder) or as a URL of its raw files
(default: the official repository on GitHub). Photos lie beside the annotation files as `data/<file_name>`
in a checkout that has them; otherwise each has a URL (`flickr_url`) to download it from.
"""
from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from trashlib.data.coco import DatasetError, Problem, file_name_problem, is_side
from trashlib.data.download import FetchError, fetch
from trashlib.data.segmentation import segmentation_problems
from trashlib.data.taco.classes import taco_class
from trashlib.data.values import is_count, is_id, label, show
from trashlib.io import parse_json

DEFAULT_SOURCE = "https://raw.githubusercontent.com/pedropro/TACO/master"
# TACO set -> its annotation file in the repository
ANNOTATION_FILES = {"official": "data/annotations.json", "unofficial": "data/annotations_unofficial.json"}


@dataclass(frozen=True)
class TacoPhoto:
    """One annotated TACO photo: its polygons as (trashlib class id, [flat polygon, ...]) on its annotated grid."""

    taco_set: str
    taco_id: int
    file_name: str
    width: int
    height: int
    url: str | None
    license: str | None
    annotations: tuple[tuple[int, tuple[tuple[float, ...], ...]], ...]
    dropped: int  # annotations of dropped categories (taco_classes)


@dataclass(frozen=True)
class AnnotationFile:
    taco_set: str
    name: str        # as it is shown in messages: the path or URL read
    sha256: str
    photos: tuple[TacoPhoto, ...]


def is_url(source: str) -> bool:
    """Whether a --source is a URL (else a local path)."""
    return urllib.parse.urlsplit(str(source)).scheme in ("http", "https")


def local_data_dir(source: str | Path) -> Path:
    """The folder holding annotations.json in a local TACO checkout (its `data/`, or the folder itself)."""
    path = Path(source).expanduser()
    for folder in (path / "data", path):
        if (folder / "annotations.json").is_file():
            return folder.resolve()
    raise FileNotFoundError(f"--source {source}: no TACO checkout there (neither {path / 'data/annotations.json'} "
                            f"nor {path / 'annotations.json'} exists)")


def read_annotation_file(source: str, taco_set: str, *, cache: Path | None, timeout: float,
                         retries: int) -> AnnotationFile:
    """The photos of one TACO annotation file, from a checkout or downloaded once into `cache` (a folder); DatasetError
    listing every fault (broken JSON, missing keys, unknown categories, bad polygons), each with its item."""
    rel = ANNOTATION_FILES[taco_set]
    if is_url(source):
        if cache is None:
            raise ValueError("a URL source needs a cache folder for its annotation files")
        name = f"{source.rstrip('/')}/{rel}"
        path = cache / Path(rel).name
        if not path.is_file():  # kept: a resumed build reads the same annotations
            try:
                fetch(name, path, timeout=timeout, retries=retries, check=lambda p: _parse(p.read_bytes(), name))
            except FetchError as e:
                raise ValueError(f"{name}: cannot download TACO's annotations: {e.reason}") from None
    else:
        path = local_data_dir(source) / Path(rel).name
        name = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"{name} does not exist (--unofficial needs TACO's {Path(rel).name})")
    raw = path.read_bytes()
    return AnnotationFile(taco_set, name, hashlib.sha256(raw).hexdigest(), _photos(_parse(raw, name), taco_set, name))


def _parse(raw: bytes, name: str):
    try:
        data = parse_json(raw, name)
    except RecursionError:
        raise ValueError(f"{name}: JSON nested too deeply to read") from None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict)
               or not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(f"{name}: not a TACO annotation file (no list {', '.join(map(repr, missing))})")
    return data


def _categories(data: dict, name: str, problems: list[Problem]) -> dict:
    """TACO category id -> trashlib class id or None (dropped)."""
    out = {}
    for k, cat in enumerate(data["categories"]):
        item = f"category {label(cat['id'])}" if isinstance(cat, dict) and is_id(cat.get("id")) else f"categories[{k}]"
        if not isinstance(cat, dict) or not is_count(cat.get("id")) or not isinstance(cat.get("name"), str):
            problems.append(Problem(name, item, "needs an integer 'id' and a string 'name'"))
            continue
        try:
            out[cat["id"]] = taco_class(cat["name"])
        except KeyError as e:
            problems.append(Problem(name, item, e.args[0]))
    return out


def _image(im, k: int, name: str, problems: list[Problem]) -> dict | None:
    item = f"image {label(im['id'])}" if isinstance(im, dict) and is_id(im.get("id")) else f"images[{k}]"
    if not isinstance(im, dict) or not is_count(im.get("id")):
        problems.append(Problem(name, item, "not an image entry with an integer 'id'"))
    elif not (is_side(im.get("width")) and is_side(im.get("height"))):
        problems.append(Problem(name, item, f"width/height must be positive integers ({show(im.get('width'))}, "
                                            f"{show(im.get('height'))})"))
    elif msg := file_name_problem(im.get("file_name")):
        problems.append(Problem(name, item, msg))
    elif not isinstance(im.get("flickr_url"), (str, type(None))):
        problems.append(Problem(name, item, f"flickr_url must be a string, not {show(im['flickr_url'])}"))
    else:
        return im
    return None


def _photos(data: dict, taco_set: str, name: str) -> tuple[TacoPhoto, ...]:
    problems: list[Problem] = []
    classes = _categories(data, name, problems)
    images = {}
    for k, im in enumerate(data["images"]):
        if (im := _image(im, k, name, problems)) is not None:
            if im["id"] in images:
                problems.append(Problem(name, f"image {im['id']}", "duplicate image id"))
            images[im["id"]] = im
    anns: dict[int, list] = {i: [] for i in images}
    dropped = dict.fromkeys(images, 0)
    for k, ann in enumerate(data["annotations"]):
        item = f"annotation {label(ann['id'])}" if isinstance(ann, dict) and is_id(ann.get("id")) else f"annotations[{k}]"
        if not isinstance(ann, dict) or not all(key in ann for key in ("image_id", "category_id", "segmentation")):
            problems.append(Problem(name, item, "needs 'image_id', 'category_id' and 'segmentation'"))
            continue
        im = images.get(ann["image_id"]) if is_id(ann["image_id"]) else None
        if im is None:
            problems.append(Problem(name, item, f"points at missing image {show(ann['image_id'])}"))
        elif not is_id(ann["category_id"]) or ann["category_id"] not in classes:
            problems.append(Problem(name, item, f"unknown category_id {show(ann['category_id'])} [image {im['id']}]"))
        elif isinstance(ann["segmentation"], dict):
            problems.append(Problem(name, item, f"RLE segmentation: TACO annotates polygons [image {im['id']}]"))
        elif faults := [m for m, fatal in segmentation_problems(ann["segmentation"], width=im["width"],
                                                                height=im["height"]) if fatal]:
            problems.append(Problem(name, item, f"{faults[0]} [image {im['id']}]"))
        elif classes[ann["category_id"]] is None:
            dropped[im["id"]] += 1
        else:
            # finite: segmentation_problems refused NaN, infinite and far-out coordinates
            anns[im["id"]].append((classes[ann["category_id"]], tuple(tuple(map(float, p)) for p in ann["segmentation"])))
    if problems:
        raise DatasetError(problems)
    return tuple(TacoPhoto(taco_set, i, im["file_name"], im["width"], im["height"], im.get("flickr_url"),
                           im.get("license") if isinstance(im.get("license"), str) else None, tuple(anns[i]),
                           dropped[i]) for i, im in sorted(images.items()))
