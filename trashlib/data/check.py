"""The dataset validator: every problem of a data root, each naming the file and the image/annotation id.

`python -m trashlib data check ROOT` prints `format_problems(check_dataset(ROOT), ROOT)` and exits 1
when anything is wrong. The schema checks are the reader's own (`trashlib.data.coco`); this module
adds what the reader only meets lazily: missing split files and every image file, decoded once.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from trashlib.data.coco import ANNOTATED_SPLITS, DatasetError, Problem, load_json, validate_coco
from trashlib.data.images import read_image

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


def _image_refs(loaded: dict[str, dict]) -> dict[str, list[tuple[str, dict]]]:
    """file_name -> [(json file, image entry)] for every well-formed image entry, first reference first."""
    refs: dict[str, list[tuple[str, dict]]] = {}
    for name, data in loaded.items():
        images = data.get("images") if isinstance(data, dict) else None
        for im in images if isinstance(images, list) else ():
            if isinstance(im, dict) and isinstance(im.get("file_name"), str) and im["file_name"]:
                refs.setdefault(im["file_name"], []).append((f"{name}.json", im))
    return refs


def _check_file(root: Path, file_name: str, refs: list[tuple[str, dict]]) -> list[Problem]:
    """Decode one image file once; a size mismatch is reported per JSON that states another size."""
    file, im = refs[0]
    try:
        image = read_image(root / file_name, file=file, item=f"image {im.get('id')}")
    except DatasetError as e:
        also = sorted({f for f, _ in refs[1:]} - {file})
        suffix = f" (also listed in {', '.join(also)})" if also else ""
        return [p._replace(message=p.message.replace(str(root / file_name), file_name) + suffix) for p in e.problems]
    problems = []
    h, w = image.shape[:2]
    for file, im in refs:
        if (im.get("width"), im.get("height")) != (w, h):
            problems.append(Problem(file, f"image {im.get('id')}", f"image file {file_name} is {w}x{h}, "
                                                                   f"the JSON says {im.get('width')}x{im.get('height')}"))
    return problems


def check_dataset(root: str | os.PathLike) -> list[Problem]:
    """Every problem of a data root: split files, JSON syntax and schema, and each image file."""
    root = Path(root)
    if not root.is_dir():
        return [Problem(str(root), None, "data root does not exist or is not a folder")]
    problems: list[Problem] = []
    loaded = _load_splits(root, problems)
    refs = _image_refs(loaded)
    # OpenCV releases the GIL while decoding, so threads check files in parallel
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
    lines.append(f"{root}: {len(problems)} problem(s) in {files} file(s), {fatal} of them stop the reader")
    return "\n".join(lines)
