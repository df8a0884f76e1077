"""The dataset validator: every problem of a data root, each naming the file and the image/annotation id.

`python -m trashlib data check ROOT` prints `format_problems(check_dataset(ROOT), ROOT)` and exits 1
when anything is wrong. The schema checks are the reader's own (`trashlib.data.coco`); this module
adds what the reader only meets lazily, so that training never hits a problem the check missed:
missing split files, every annotation rasterised, and every image file decoded once (with libjpeg's
warnings, which are how a JPEG damaged in the middle shows).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pycocotools import mask as mask_utils

from trashlib.data.coco import (ANNOTATED_SPLITS, DatasetError, Problem, annotation_item, file_name_problem, has_size,
                                load_json, validate_coco)
from trashlib.data.images import read_image
from trashlib.data.raster import annotation_rle
from trashlib.data.values import is_id, label

# libjpeg decodes a JPEG damaged inside its compressed data to smeared or grey blocks and says so only
# with a warning on the C stderr (fd 2); these warnings mean the pixels are not the photo's
JPEG_DAMAGE = re.compile(rb"(Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters|"
                         rb"Inconsistent progression sequence)[^\n]*")
_FD2 = threading.Lock()  # fd 2 is one per process: decodes that listen to it take turns

EXPECTED_SPLITS = ("train_all", "train", "val", "test")

__all__ = ["EXPECTED_SPLITS", "Problem", "check_dataset", "format_problems"]


def _load_splits(root: Path, problems: list[Problem]) -> dict[str, dict]:
    """name -> parsed COCO dict of every split file that parses and validates enough to list images."""
    extras = sorted(p.stem for p in root.glob("*.json") if p.stem not in EXPECTED_SPLITS)
    loaded = {}
    for name in (*EXPECTED_SPLITS, *extras):
        file = f"{name}.json"
        if not (root / file).is_file():
            problems.append(Problem(file, None, f"missing split file (a data root holds {', '.join(EXPECTED_SPLITS)})"))
            continue
        try:
            data, _ = load_json(root / file, name=file)
        except DatasetError as e:
            problems.extend(e.problems)
            continue
        if name not in EXPECTED_SPLITS and not (isinstance(data, dict) and "images" in data):
            continue  # another JSON beside the splits (e.g. generator metadata), not a COCO file
        annotated = name in ANNOTATED_SPLITS
        problems.extend(validate_coco(data, file=file, annotated=annotated))
        if annotated and isinstance(data, dict) and isinstance(data.get("annotations"), list) and not data["annotations"]:
            problems.append(Problem(file, None, "has no annotations (a training split needs labels)"))
        loaded[name] = data
    return loaded


def _listed(data: dict, key: str) -> list:
    return data[key] if isinstance(data.get(key), list) else []


def _raster_problems(name: str, data: dict, reported: set, tried: dict) -> list[Problem]:
    """Rasterise each annotation the schema check passed, as training will; `tried` shares results across files."""
    file = f"{name}.json"
    images = {im["id"]: im for im in _listed(data, "images") if isinstance(im, dict) and is_id(im.get("id"))}
    problems = []
    for k, ann in enumerate(_listed(data, "annotations")):
        item = annotation_item(ann, k)
        im = images.get(ann.get("image_id")) if isinstance(ann, dict) and is_id(ann.get("image_id")) else None
        if (file, item) in reported or im is None or not has_size(im):
            continue  # the schema check reported it already
        h, w = im["height"], im["width"]
        key = (h, w, ann.get("category_id"), repr(ann.get("segmentation")))
        if key not in tried:
            try:
                rle = annotation_rle(ann, height=h, width=w, file=file, k=k)
                if isinstance(ann["segmentation"], dict):  # RLEs that pycocotools made from polygons decode
                    mask_utils.decode(rle)
                tried[key] = None
            except DatasetError as e:
                tried[key] = e.problems[0].message
            except Exception as e:  # whatever training would meet
                tried[key] = f"cannot rasterise its segmentation: {type(e).__name__}: {e} [image {label(im['id'])}]"
        if tried[key] is not None:
            problems.append(Problem(file, item, tried[key]))
    return problems


def _image_refs(loaded: dict[str, dict]) -> dict[str, list[tuple[str, dict]]]:
    """file_name -> [(json file, image entry)] for every well-formed image entry, first reference first."""
    refs: dict[str, list[tuple[str, dict]]] = {}
    for name, data in loaded.items():
        for im in _listed(data, "images") if isinstance(data, dict) else ():
            if isinstance(im, dict) and file_name_problem(im.get("file_name")) is None:
                refs.setdefault(im["file_name"], []).append((f"{name}.json", im))
    return refs


@contextlib.contextmanager
def _fd2_captured(log):
    """Send the C-level stderr (fd 2) to the file `log` inside the block, then restore it."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _read_listening(path: Path, **kw):
    """read_image, plus libjpeg's corruption warnings (other stderr output is passed on)."""
    with _FD2, tempfile.TemporaryFile() as log:
        with _fd2_captured(log):
            try:
                image = read_image(path, **kw)
            finally:
                log.seek(0)
                said = log.read()
    damage = [m.group(0).decode(errors="replace").strip() for m in JPEG_DAMAGE.finditer(said)]
    if rest := JPEG_DAMAGE.sub(b"", said).strip():
        os.write(2, rest + b"\n")
    return image, damage


def _check_file(root: Path, file_name: str, refs: list[tuple[str, dict]]) -> list[Problem]:
    """Decode one image file once; a size mismatch is reported per JSON that states another size."""
    file, im = refs[0]
    item = f"image {label(im.get('id'))}"
    also = sorted({f for f, _ in refs[1:]} - {file})
    suffix = f" (also listed in {', '.join(also)})" if also else ""
    try:
        image, damage = _read_listening(root / file_name, file=file, item=item)
    except DatasetError as e:
        return [p._replace(message=p.message.replace(str(root / file_name), file_name) + suffix) for p in e.problems]
    except Exception as e:  # one unreadable file must not cost the whole report
        return [Problem(file, item, f"image file {file_name} cannot be checked: {type(e).__name__}: {e}{suffix}")]
    if damage:
        return [Problem(file, item, f"image file {file_name} is corrupt: libjpeg says {damage[0]!r} "
                                    f"(it decodes, but to damaged pixels){suffix}")]
    problems = []
    h, w = image.shape[:2]
    for file, im in refs:
        if has_size(im) and (im["width"], im["height"]) != (w, h):  # a size that is no size: a schema problem
            problems.append(Problem(file, f"image {label(im.get('id'))}",
                                    f"image file {file_name} is {w}x{h}, the JSON says {im['width']}x{im['height']}"))
    return problems


def check_dataset(root: str | os.PathLike) -> list[Problem]:
    """Every problem of a data root: split files, JSON syntax and schema, each annotation and each image file."""
    root = Path(root)
    if not root.is_dir():
        return [Problem(str(root), None, "data root does not exist or is not a folder")]
    problems: list[Problem] = []
    loaded = _load_splits(root, problems)
    reported = {(p.file, p.item) for p in problems if p.fatal}
    tried: dict = {}
    for name, data in loaded.items():
        if isinstance(data, dict):
            problems.extend(_raster_problems(name, data, reported, tried))
    refs = _image_refs(loaded)
    # decodes take turns on fd 2 (_FD2): a check of 3,000 photos takes seconds longer, and hears every warning
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for found in pool.map(lambda item: _check_file(root, *item), refs.items()):
            problems.extend(found)
    return problems


def format_problems(problems: list[Problem], root: str | os.PathLike) -> str:
    """A readable report: one line per problem, then a summary line (or an OK line when none)."""
    if not problems:
        return f"{root}: OK (no problems found)"
    lines = [f"  {p}" + ("" if p.fatal else "  [warning: the reader still loads it]") for p in problems]
    files = len({p.file for p in problems})
    fatal = sum(p.fatal for p in problems)
    lines.append(f"{root}: {len(problems)} problem(s) in {files} file(s): {fatal} error(s), "
                 f"{len(problems) - fatal} warning(s)")
    return "\n".join(lines)
