"""The files of a TACO build: the split JSONs, test_labels.json, a sample submission, ATTRIBUTION.csv,
failed.csv and a README with the licences, the provenance and the counts of this build."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from trashlib.classes import CLASSES, coco_categories
from trashlib.io import atomic_open, write_json
from trashlib.submission import write_submission

SPLITS = ("train", "val", "test")
NO_LICENCE = "not stated by TACO"


def _write_csv(path: Path, header: tuple[str, ...], rows) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())


def write_failed(path: Path, failed) -> None:
    """failed.csv: one line per photo left out, with its URL and the reason."""
    _write_csv(path, ("taco_set", "taco_id", "file_name", "url", "reason"),
               ((o.photo.taco_set, o.photo.taco_id, o.photo.file_name, o.photo.url or "", o.reason) for o in failed))


def _coco(images: list[dict], annotations: list[dict] | None, licences: dict[str, int]) -> dict:
    data = {"info": {"description": "TACO (Proença & Simões 2020, tacodataset.org) in the competition layout, "
                                    "made by trashlib.data.taco", "url": "https://github.com/pedropro/TACO"},
            "licenses": [{"id": i, "name": name, "url": ""} for name, i in licences.items()],
            "images": images, "categories": coco_categories()}
    if annotations is not None:
        data["annotations"] = annotations
    return data


def _check_enough(split: dict[str, str], used, failed) -> None:
    """Refuse a build whose splits would not form a dataset (before any split file is written)."""
    anns = {s: sum(len(o.annotations) for o in used if split[o.file_name] == s) for s in SPLITS}
    images = {s: sum(v == s for v in split.values()) for s in SPLITS}
    if min(images.values()) == 0 or anns["train"] == 0 or anns["val"] == 0:
        raise ValueError(f"only {len(used)} photos could be used ({len(failed)} left out, each with its reason in "
                         f"failed.csv): too few for train, val and test splits with annotations in train and val "
                         f"(images {images}, annotations {anns})")


def write_layout(out: Path, used, split: dict[str, str], *, files, failed, size: int, source: str,
                 downloaded: bool = False) -> dict:
    """Write the split files and their companions; returns split -> class id -> [images, annotations]."""
    _check_enough(split, used, failed)
    licences = {name: i for i, name in enumerate(sorted({o.photo.license or NO_LICENCE for o in used}))}
    groups = {"train_all": [o for o in used if split[o.file_name] != "test"],
              "test": [o for o in used if split[o.file_name] == "test"]}
    images, annotations, next_ann = {}, {}, 0
    for group in groups.values():  # train_all and test number their images separately, as the competition
        for i, o in enumerate(group):
            p = o.photo
            images[o.file_name] = {"id": i, "file_name": o.file_name, "width": size, "height": size,
                                   "license": licences[p.license or NO_LICENCE], "flickr_url": p.url,
                                   "taco_set": p.taco_set, "taco_id": p.taco_id, "taco_file_name": p.file_name,
                                   "exif_orientation": o.grid.orientation, "annotated_grid": o.grid.grid}
            annotations[o.file_name] = [{"id": next_ann + k, "image_id": i, **a} for k, a in enumerate(o.annotations)]
            next_ann += len(o.annotations)

    def coco(members, with_annotations=True):
        return _coco([images[o.file_name] for o in members],
                     [a for o in members for a in annotations[o.file_name]] if with_annotations else None, licences)

    test = groups["test"]
    write_json(out / "test_labels.json", coco(test), indent=None)
    write_json(out / "test.json", coco(test, with_annotations=False), indent=None)
    for name in ("val", "train"):
        write_json(out / f"{name}.json", coco([o for o in used if split[o.file_name] == name]), indent=None)
    write_json(out / "train_all.json", coco(groups["train_all"]), indent=None)  # last: a whole dataset from here on
    zeros = np.zeros((256, 256), np.uint8)
    write_submission(out / "sample_submission.csv", ((o.file_name, zeros) for o in test))
    _write_csv(out / "ATTRIBUTION.csv", ("file_name", "split", "taco_set", "taco_id", "taco_file_name", "license", "url"),
               ((o.file_name, split[o.file_name], o.photo.taco_set, o.photo.taco_id, o.photo.file_name,
                 o.photo.license or NO_LICENCE, o.photo.url or "") for o in used))
    counts = {s: {c.id: [0, 0] for c in CLASSES[1:]} for s in SPLITS}
    for o in used:
        for c in {a["category_id"] for a in o.annotations}:
            counts[split[o.file_name]][c][0] += 1
        for a in o.annotations:
            counts[split[o.file_name]][a["category_id"]][1] += 1
    with atomic_open(out / "README.md", "w", encoding="utf-8") as f:
        f.write(_readme(used, split, failed, files=files, size=size, source=source, counts=counts, downloaded=downloaded))
    return counts


def _readme(used, split, failed, *, files, size: int, source: str, counts: dict, downloaded: bool) -> str:
    n = {s: sum(v == s for v in split.values()) for s in SPLITS}
    licences: dict[str, int] = {}
    for o in used:
        licences[o.photo.license or NO_LICENCE] = licences.get(o.photo.license or NO_LICENCE, 0) + 1
    grids: dict[str, int] = {}
    for o in used:
        key = "no rotation" if o.grid.orientation == 1 else f"EXIF {o.grid.orientation}, polygons on the {o.grid.grid} grid"
        grids[key] = grids.get(key, 0) + 1
    lost = sum(o.lost for o in used)
    dropped = sum(o.photo.dropped for o in used)
    rows = "\n".join(f"| {c.id} | {c.name} | " + " | ".join(f"{counts[s][c.id][0]} / {counts[s][c.id][1]}" for s in SPLITS)
                     + " |" for c in CLASSES[1:])
    sources = "\n".join(f"- {f.taco_set}: `{f.name}` (sha256 `{f.sha256}`, {len(f.photos)} photos)" for f in files)
    return f"""# TACO in the competition layout

Photos and polygons from **TACO: Trash Annotations in Context** (Pedro F. Proença and Pedro Simões,
arXiv:2003.06975, 2020; http://tacodataset.org; https://github.com/pedropro/TACO), converted by
`python -m trashlib data taco` on {datetime.now(timezone.utc):%Y-%m-%d} from `{source}`.

## Licences
- TACO's repository, its annotation files included, is under the MIT licence; the polygons here are
  TACO's, turned upright, rescaled and with their categories mapped onto the competition's classes.
- Each photo stays under its own licence as TACO lists it; `ATTRIBUTION.csv` gives, per photo, the licence
  and the URL it came from. Licences of the photos here: {", ".join(f"{k}: {v}" for k, v in sorted(licences.items()))}.
- Photos of TACO's unofficial set (`unofficial/...`) carry crowd annotations its authors did not review.

## Provenance
{sources}

{len(used)} photos used, {len(failed)} left out (`failed.csv` gives each one's URL and reason).
Upright {size}x{size} JPEGs without EXIF, plain resize (aspect ratio not kept), polygons moved onto them;
orientation: {", ".join(f"{k}: {v}" for k, v in sorted(grids.items()))}.
{dropped} annotations of dropped categories left out, {lost} lost at this size (no pixel left).
Class map and reasons: trashlib's README, section "Real photos: TACO" (trashlib/data/taco/classes.py).
{"`originals/` holds the downloaded photos, so a later run needs no network; it may be deleted." if downloaded else ""}

## Splits
Stratified (trashlib.data.stratify): train {n["train"]}, val {n["val"]}, test {n["test"]} photos;
`train_all.json` = train + val, `test.json` lists the test photos only, their labels are in `test_labels.json`.
Note: TACO's own annotations are public, so the test labels are hidden by convention only.

Images / annotations per class:

| id | class | train | val | test |
|---|---|---|---|---|
{rows}
"""
