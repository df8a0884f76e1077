"""`data taco`: the class table, EXIF grids, the split, the conversion of real and made-up TACO checkouts, bad input.

The download path (a local HTTP server that fails on purpose, resume after a kill) is in test_taco_download.py.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

from trashlib.classes import CLASS_NAMES, class_id
from trashlib.cli import main
from trashlib.data.check import check_dataset
from trashlib.data.images import read_image
from trashlib.data.orientation import TRANSPOSE, annotation_grid, to_upright
from trashlib.data.stratify import stratified_split
from trashlib.data.taco.build import MARKER_FILE, build_taco
from trashlib.data.taco.classes import TACO_CATEGORIES, taco_class

README = Path(__file__).resolve().parents[1] / "README.md"
GREY, RED = (120, 120, 120), (220, 20, 20)


# -- made-up TACO checkouts -------------------------------------------------------------------------
def photo(path: Path, size=(60, 40), *, rect=(5, 5, 25, 15), orientation: int | None = None) -> None:
    """A grey JPEG with a red rectangle (x0, y0, x1, y1) in its stored pixels, optionally with EXIF orientation."""
    pixels = np.full((size[1], size[0], 3), GREY, np.uint8)
    x0, y0, x1, y1 = rect
    pixels[y0:y1, x0:x1] = RED
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())


def box(x0, y0, x1, y1) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def taco_file(photos: list[dict], *, categories=("Drink can", "Glass bottle", "Battery", "Food waste")) -> dict:
    """A TACO annotations.json: photos as {id, file_name, width, height, anns: [(category name, polygon)]}."""
    cats = [{"id": k, "name": n, "supercategory": n} for k, n in enumerate(categories)]
    ids = {n: k for k, n in enumerate(categories)}
    images = [{"id": p["id"], "file_name": p["file_name"], "width": p["width"], "height": p["height"],
               "license": p.get("license", "CC"), "flickr_url": p.get("url", f"https://example.org/{p['id']}.jpg")}
              for p in photos]
    anns = [{"id": 100 * p["id"] + k, "image_id": p["id"], "category_id": ids[name], "segmentation": [poly],
             "area": 1.0, "bbox": [0, 0, 1, 1], "iscrowd": 0} for p in photos for k, (name, poly) in enumerate(p["anns"])]
    return {"info": {}, "images": images, "annotations": anns, "categories": cats}


def checkout(root: Path, data: dict, unofficial: dict | None = None) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "annotations.json").write_text(json.dumps(data))
    if unofficial is not None:
        (root / "data" / "annotations_unofficial.json").write_text(json.dumps(unofficial))
    return root


def exif_checkout(root: Path) -> Path:
    """Three EXIF cases (displayed grid, stored grid, none) and fillers so every split gets photos."""
    # stored 120x80; orientation 6 turns it clockwise to 80x120, the rectangle moving to x 50..70, y 10..50
    for name, orientation in (("displayed", 6), ("stored", 6), ("plain", None)):
        photo(root / f"data/batch_1/{name}.jpg", (120, 80), rect=(10, 10, 50, 30), orientation=orientation)
    photos = [dict(id=0, file_name="batch_1/displayed.jpg", width=80, height=120, anns=[("Drink can", box(50, 10, 70, 50))]),
              dict(id=1, file_name="batch_1/stored.jpg", width=120, height=80, anns=[("Drink can", box(10, 10, 50, 30))]),
              dict(id=2, file_name="batch_1/plain.jpg", width=120, height=80, anns=[("Drink can", box(10, 10, 50, 30))])]
    for i in range(3, 9):
        photo(root / f"data/batch_2/{i}.jpg", rect=(30, 10, 50, 30))
        cat = "Glass bottle" if i % 2 else "Battery"
        photos.append(dict(id=i, file_name=f"batch_2/{i}.jpg", width=60, height=40,
                           anns=[(cat, box(30, 10, 50, 30)), ("Food waste", box(0, 0, 4, 4))]))
    return checkout(root, taco_file(photos))


def coco_masks(root: Path, file_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, label map) of one output photo, from whichever split file lists it."""
    for name in ("train_all", "test_labels"):
        data = json.loads((root / f"{name}.json").read_text())
        found = [im for im in data["images"] if im["file_name"] == file_name]
        if found:
            im = found[0]
            mask = np.zeros((im["height"], im["width"]), np.uint8)
            for a in data["annotations"]:
                if a["image_id"] == im["id"]:
                    rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], im["height"], im["width"]))
                    mask[mask_utils.decode(rle) > 0] = a["category_id"]
            return read_image(root / file_name), mask
    raise AssertionError(f"{file_name} is in no split file")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# -- the class table ---------------------------------------------------------------------------------
def test_every_taco_category_gets_a_class_or_is_dropped_once():
    names = [c.name for c in TACO_CATEGORIES]
    assert len(names) == 60 and len(set(names)) == 60
    assert all(c.target is None or c.target in CLASS_NAMES[1:] for c in TACO_CATEGORIES)
    assert all(c.reason for c in TACO_CATEGORIES)
    # every competition class is reachable, so none is empty by construction
    assert {c.target for c in TACO_CATEGORIES} - {None} == set(CLASS_NAMES[1:])
    assert taco_class("Drink carton") == class_id("Paper pack") and taco_class("Food waste") is None
    with pytest.raises(KeyError, match="'Bottle' is not in trashlib's table"):
        taco_class("Bottle")


def test_the_table_covers_taco_s_own_categories(taco_raw_root):
    official = json.loads((taco_raw_root / "data/annotations.json").read_text())
    assert sorted(c["name"] for c in official["categories"]) == sorted(c.name for c in TACO_CATEGORIES)


def test_readme_states_the_table_of_the_package():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Real photos: TACO", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \| ([^|]+?) \|$", section, re.M)
    stated = {name: (None if target == "dropped" else target) for name, target, _ in rows if name != "TACO category"
              and not name.startswith("-")}
    assert stated == {c.name: c.target for c in TACO_CATEGORIES}


# -- EXIF orientation --------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", range(1, 9))
def test_polygons_turn_as_pil_turns_the_pixels(orientation):
    w, h = 40, 24
    poly = [3.0, 2.0, 30.0, 5.0, 12.0, 20.0]
    stored = mask_utils.decode(mask_utils.frPyObjects([poly], h, w))[..., 0]
    turned = np.asarray(Image.fromarray(stored * 255).transpose(TRANSPOSE[orientation])) if orientation > 1 else stored * 255
    uh, uw = turned.shape
    moved = to_upright(poly, width=w, height=h, orientation=orientation)
    assert (uw, uh) == ((h, w) if orientation >= 5 else (w, h))
    drawn = mask_utils.decode(mask_utils.frPyObjects([moved], uh, uw))[..., 0] > 0
    # pycocotools rounds edges one way, so a mirrored edge may gain or lose a pixel; a wrong turn loses most
    assert (drawn != (turned > 0)).sum() <= 0.04 * stored.sum()


def test_rotation_6_by_hand():
    # a 60x40 photo shown turned clockwise: the stored top-left corner becomes the displayed top-right one
    assert to_upright([0, 0, 60, 0, 60, 40], width=60, height=40, orientation=6) == [40, 0, 40, 60, 0, 60]


@pytest.mark.parametrize("stored, orientation, annotated, grid", [
    ((60, 40), 6, (40, 60), "displayed"), ((60, 40), 6, (60, 40), "stored"), ((60, 40), 1, (60, 40), "displayed"),
    ((50, 50), 6, (50, 50), "displayed"), ((60, 40), 6, (30, 20), None), ((60, 40), 1, (40, 60), None)])
def test_the_annotation_s_size_says_which_grid(stored, orientation, annotated, grid):
    assert annotation_grid(stored, orientation, annotated) == grid


def test_made_up_exif_cases_put_every_label_on_its_object(tmp_path):
    src = exif_checkout(tmp_path / "taco")
    build = build_taco(tmp_path / "out", source=str(src), size=64, progress=False)
    assert not build.failed and len(build.used) == 9
    grids = {o.file_name: (o.grid.orientation, o.grid.grid) for o in build.used}
    assert grids["batch_1/displayed.jpg"] == (6, "displayed") and grids["batch_1/stored.jpg"] == (6, "stored")
    assert grids["batch_1/plain.jpg"] == (1, "displayed")
    for name in ("batch_1/displayed.jpg", "batch_1/stored.jpg", "batch_1/plain.jpg"):
        image, mask = coco_masks(build.out, name)
        red = (image[..., 0] > 170) & (image[..., 1] < 90)
        assert iou(mask == class_id("Metal"), red) > 0.8, name
        with Image.open(build.out / name) as im:
            assert not im.getexif() and im.size == (64, 64)
    # upright: the rectangle of the rotated photos sits right of the middle, at the top (x 50..70 of 80, y 10..50 of 120)
    for name in ("batch_1/displayed.jpg", "batch_1/stored.jpg"):
        ys, xs = np.nonzero(coco_masks(build.out, name)[1])
        assert 38 <= xs.mean() <= 54 and 5 <= ys.mean() <= 22, name
    assert check_dataset(build.out) == []


# -- the split ---------------------------------------------------------------------------------------
def test_split_is_deterministic_and_puts_rare_classes_everywhere():
    classes = {f"p{i}": {6} for i in range(40)} | {f"r{i}": {9, 6} for i in range(3)} | {"b0": set()}
    split = stratified_split(classes, seed=3)
    assert split == stratified_split(dict(reversed(list(classes.items()))), seed=3)
    assert {split[f"r{i}"] for i in range(3)} == {"train", "val", "test"}
    n = {s: sum(v == s for v in split.values()) for s in ("train", "val", "test")}
    assert n["train"] > 25 and 4 <= n["val"] <= 9 and 4 <= n["test"] <= 9
    two = stratified_split({"a": {9}, "b": {9}, **{f"p{i}": {6} for i in range(10)}})
    assert {two["a"], two["b"]} == {"train", "val"}  # two photos of a class: train first, then val
    with pytest.raises(ValueError, match="shares must be positive"):
        stratified_split(classes, shares={"train": 1.0, "val": 0.0})


# -- the real TACO files -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(taco_raw_root, tmp_path_factory):
    """The issue's command, in process: the 7 real unofficial photos (the official ones are not there)."""
    return build_taco(tmp_path_factory.mktemp("taco") / "sample", source=str(taco_raw_root), unofficial=True,
                      progress=False)


def _reference(taco_raw_root: Path, name: str, size: int = 512):
    """What the converter should make of a real photo, by independent means: PIL's own EXIF turn, and the TACO
    polygons rasterised on their annotated grid, turned like the pixels when that grid is the stored one."""
    unofficial = json.loads((taco_raw_root / "data/annotations_unofficial.json").read_text())
    entry = next(im for im in unofficial["images"] if im["file_name"] == name)
    with Image.open(taco_raw_root / "data" / name) as im:
        stored, orientation = im.size, im.getexif().get(0x0112, 1)
        upright = ImageOps.exif_transpose(im.reduce(4)).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    h, w = entry["height"], entry["width"]
    mask = np.zeros((h, w), np.uint8)
    for a in unofficial["annotations"]:
        if a["image_id"] == entry["id"]:
            mask |= mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w)))
    turn = (w, h) == stored and orientation != 1
    shown = Image.fromarray(mask * 255)
    if turn:
        shown = shown.transpose(TRANSPOSE[orientation])
    return np.asarray(upright), np.asarray(shown.resize((size, size), Image.Resampling.NEAREST)) > 0, orientation, turn


@pytest.mark.parametrize("name, orientation, grid", [("unofficial/000015.jpg", 6, "displayed"),
                                                     ("unofficial/000021.jpg", 6, "stored"),
                                                     ("unofficial/000014.jpg", 1, "displayed")])
@pytest.mark.integration
def test_real_photos_in_each_exif_case(sample, taco_raw_root, name, orientation, grid):
    (used,) = [o for o in sample.used if o.file_name == name]
    assert (used.grid.orientation, used.grid.grid) == (orientation, grid)
    pixels, labels, exif, turned = _reference(taco_raw_root, name)
    assert exif == orientation and turned == (grid == "stored" and orientation != 1)
    image, mask = coco_masks(sample.out, name)
    assert np.abs(image.astype(int) - pixels).mean() < 12  # the same upright photo (JPEG and resampling differ)
    assert iou(mask > 0, labels) > 0.85
    with Image.open(sample.out / name) as im:
        assert not im.getexif() and im.size == (512, 512)


def test_real_sample_is_a_dataset(sample, taco_raw_root):
    assert sorted(o.file_name for o in sample.used) == [f"unofficial/{n:06d}.jpg" for n in (1, 3, 14, 15, 21, 25)]
    (bad,) = [o for o in sample.failed if o.photo.taco_set == "unofficial"]
    assert bad.file_name == "unofficial/000010.jpg" and "file is 2048x1536" in bad.reason and "1824x4000" in bad.reason
    official = [o for o in sample.failed if o.photo.taco_set == "official"]
    assert len(official) == 1500 and all("not in the local checkout" in o.reason for o in official)
    assert check_dataset(sample.out) == []
    test = json.loads((sample.out / "test.json").read_text())
    labels = json.loads((sample.out / "test_labels.json").read_text())
    train_all = json.loads((sample.out / "train_all.json").read_text())
    assert "annotations" not in test and test["images"] == labels["images"]
    assert len(train_all["annotations"]) + len(labels["annotations"]) == 12  # 19 polygons, 7 on the bad photo
    with open(sample.out / "ATTRIBUTION.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(r["license"] and r["url"].startswith("https://") for r in rows)
    with open(sample.out / "failed.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 1501
    assert "MIT licence" in (sample.out / "README.md").read_text()


def test_real_sample_resumes_without_rewriting(sample, taco_raw_root):
    files = sorted(p for p in sample.out.rglob("*.jpg"))
    before = {p: p.stat().st_mtime_ns for p in files}
    split_files = {n: (sample.out / f"{n}.json").read_bytes() for n in ("train_all", "train", "val", "test", "test_labels")}
    again = build_taco(sample.out, source=str(taco_raw_root), unofficial=True, progress=False)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert {n: (sample.out / f"{n}.json").read_bytes() for n in split_files} == split_files
    assert again.split == sample.split


@pytest.mark.integration
def test_one_training_step_and_a_submission_on_the_sample(sample, tmp_path):
    from test_training import TinySeg, small_cfg

    from trashlib.scoring.evaluation import score_submission
    from trashlib.predict.inference import TTA, predict
    from trashlib.submission import index_to_submission, validate_submission
    from trashlib.training import train

    run = train(small_cfg(sample.out, steps=1, warmup_steps=0, eval_every=None, batch_size=2), model=TinySeg(), progress=False)
    assert run.finished
    index = predict(TinySeg(), sample.out, "test", tta=TTA(), out_dir=tmp_path / "probs", progress=False)
    csv_path = index_to_submission(index, tmp_path / "submission.csv")
    assert validate_submission(csv_path, sample.out / "test.json") == []
    assert 0.0 <= score_submission(csv_path, sample.out / "test_labels.json").as_dict()["mIoU"] <= 1.0


# -- arguments and bad input -------------------------------------------------------------------------
def test_cli_builds_and_summarises(tmp_path, capsys):
    src = exif_checkout(tmp_path / "taco")
    assert main(["data", "taco", "--source", str(src), "--out", str(tmp_path / "out"), "--size", "64",
                 "--workers", "2"]) == 0
    out = capsys.readouterr()
    assert "9 photos" in out.out and "TACO photos" in out.err  # the summary, and the progress bar
    assert main(["data", "check", str(tmp_path / "out")]) == 0


def test_dropped_categories_are_left_out_and_counted(tmp_path):
    build = build_taco(tmp_path / "out", source=str(exif_checkout(tmp_path / "taco")), size=64, progress=False)
    assert sum(o.photo.dropped for o in build.used) == 6
    data = json.loads((build.out / "train_all.json").read_text())
    assert {a["category_id"] for a in data["annotations"]} <= {class_id("Metal"), class_id("Glass"), class_id("Battery")}
    assert "6 annotations of dropped categories" in (build.out / "README.md").read_text()


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["annotations"][0].update(category_id=99), "annotation 0: unknown category_id 99 [image 0]"),
    (lambda d: d["categories"][0].update(name="Bottle"), "category 0: TACO category 'Bottle' is not in"),
    (lambda d: d["annotations"][0]["segmentation"][0].__setitem__(2, float("nan")), "annotation 0: polygon 0 has a NaN"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]), "annotation 0: polygon 0 has 2 point(s)"),
    (lambda d: d["images"][0].update(file_name="../x.jpg"), "image 0: file_name '../x.jpg' leaves the data root"),
    (lambda d: d["images"][1].update(width=-4), "image 1: width/height must be positive integers"),
    (lambda d: d["annotations"][1].update(image_id=77), "annotation 100: points at missing image 77"),
    (lambda d: d.pop("categories"), "not a TACO annotation file (no list 'categories')"),
])
def test_a_broken_annotation_file_is_one_clear_line(tmp_path, capsys, edit, words):
    src = exif_checkout(tmp_path / "taco")
    path = src / "data/annotations.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    assert main(["data", "taco", "--source", str(src), "--out", str(tmp_path / "out"), "--size", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and words in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before --out is made


def test_unparseable_and_missing_files(tmp_path, capsys):
    src = exif_checkout(tmp_path / "taco")
    (src / "data/annotations.json").write_text('{"images": [')
    assert main(["data", "taco", "--source", str(src), "--out", str(tmp_path / "a"), "--size", "64"]) == 2
    assert "annotations.json: invalid JSON at line 1" in capsys.readouterr().err
    assert main(["data", "taco", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    assert "no TACO checkout there" in capsys.readouterr().err
    exif_checkout(tmp_path / "taco2")
    assert main(["data", "taco", "--source", str(tmp_path / "taco2"), "--unofficial", "--out", str(tmp_path / "c")]) == 2
    assert "annotations_unofficial.json does not exist" in capsys.readouterr().err


def test_out_is_never_a_folder_it_did_not_make(tmp_path, capsys):
    src = exif_checkout(tmp_path / "taco")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    (theirs / ".part").write_text("also mine")
    assert main(["data", "taco", "--source", str(src), "--out", str(theirs), "--size", "64"]) == 2
    assert "already holds files trashlib did not write" in capsys.readouterr().err
    assert sorted(p.name for p in theirs.iterdir()) == [".part", "notes.txt"]
    (tmp_path / "file").write_text("x")
    assert main(["data", "taco", "--source", str(src), "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["data", "taco", "--source", str(src), "--out", str(src / "data" / "out")]) == 2
    assert "overlaps the TACO checkout" in capsys.readouterr().err
    built = build_taco(tmp_path / "built", source=str(src), size=64, progress=False).out
    assert (built / MARKER_FILE).is_file()
    assert main(["data", "taco", "--source", str(src), "--out", str(built), "--size", "128"]) == 2
    assert "at --size 64, not 128" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [(["--size", "10"], "--size must be an integer in 64..4096"),
                                         (["--workers", "0"], "--workers must be a positive integer"),
                                         (["--timeout", "nan"], "timeout must be positive")])
def test_bad_arguments(tmp_path, capsys, argv, words):
    src = exif_checkout(tmp_path / "taco")
    assert main(["data", "taco", "--source", str(src), "--out", str(tmp_path / "out"), *argv]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_too_few_photos_is_refused_before_any_split_file(tmp_path, capsys):
    src = tmp_path / "taco"
    photo(src / "data/batch_1/a.jpg")
    checkout(src, taco_file([dict(id=0, file_name="batch_1/a.jpg", width=60, height=40, anns=[("Drink can", box(5, 5, 25, 15))]),
                             dict(id=1, file_name="batch_1/gone.jpg", width=60, height=40, anns=[])]))
    assert main(["data", "taco", "--source", str(src), "--out", str(tmp_path / "out"), "--size", "64"]) == 2
    err = capsys.readouterr().err
    assert "only 1 photos could be used (1 left out" in err and "failed.csv" in err
    assert not (tmp_path / "out" / "train.json").exists() and (tmp_path / "out" / "failed.csv").is_file()
