"""The generated dataset: layout, schema, determinism, label noise, and labels that agree with pixels."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from trashlib.classes import COMPETITION_COUNTS, NUM_CLASSES, class_id, coco_categories
from trashlib.synth import generate_dataset, render_scene
from trashlib.synth.generate import DatasetExistsError
from trashlib.synth.objects import class_probabilities, sample_classes
from trashlib.synth.scene import compose_scene
from trashlib.synth.shapes import clip_polygon

SPLITS = ("train_all", "train", "val", "test", "test_labels")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "data", seed=3, n_train=5, n_val=2, n_test=2,
                            mislabel_rate=0.1, workers=1)


def _load(root: Path, name: str) -> dict:
    return json.loads((root / f"{name}.json").read_text())


def _label_map(anns: list[dict], size: int) -> np.ndarray:
    """The competition's painting: annotations sorted by area, largest first, smaller on top."""
    mask = np.zeros((size, size), np.uint8)
    for a in sorted(anns, key=lambda a: -a["area"]):
        rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], size, size))
        mask[mask_utils.decode(rle) > 0] = a["category_id"]
    return mask


def test_layout_and_schema(root):
    names = {p.name for p in root.iterdir()}
    assert {f"{s}.json" for s in SPLITS} | {"sample_submission.csv", "synth_meta.json", "README.md"} <= names
    assert not [n for n in root.parent.iterdir() if n.name.startswith(".")], "temporary folder left behind"
    for split in SPLITS:
        coco = _load(root, split)
        assert {"info", "licenses", "images", "categories"} <= coco.keys()
        assert coco["categories"] == coco_categories()
        for im in coco["images"]:
            assert {"id", "file_name", "width", "height"} <= im.keys()
            assert im["file_name"].startswith("batch_") and im["file_name"].endswith(".jpg")
            image = cv2.imread(str(root / im["file_name"]))
            assert image.shape == (im["height"], im["width"], 3) == (512, 512, 3)
        for a in coco.get("annotations", []):
            assert set(a) == {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"}
            assert 1 <= a["category_id"] < NUM_CLASSES and a["iscrowd"] == 0
    assert "--seed 3" in (root / "README.md").read_text()


def test_splits_and_ids(root):
    tr, va, tv, te, tl = (_load(root, s) for s in ("train", "val", "train_all", "test", "test_labels"))
    assert "annotations" not in te and tl["annotations"]
    assert [i["file_name"] for i in te["images"]] == [i["file_name"] for i in tl["images"]]
    assert (len(tr["images"]), len(va["images"]), len(te["images"])) == (5, 2, 2)
    assert sorted(i["id"] for i in tr["images"] + va["images"]) == sorted(i["id"] for i in tv["images"])
    assert sorted(a["id"] for a in tr["annotations"] + va["annotations"]) == sorted(a["id"] for a in tv["annotations"])
    for coco in (tv, tl):
        assert len({i["id"] for i in coco["images"]}) == len(coco["images"])
        assert {a["image_id"] for a in coco["annotations"]} <= {i["id"] for i in coco["images"]}
    ann_ids = [a["id"] for a in tv["annotations"] + tl["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids), "annotation ids must be unique across the dataset"
    files = [i["file_name"] for i in tv["images"] + te["images"]]
    assert len(set(files)) == len(files) == 9


def test_polygons_valid_and_areas_match_pycocotools(root):
    for split in ("train_all", "test_labels"):
        for a in _load(root, split)["annotations"]:
            assert len(a["segmentation"]) == 1
            poly = a["segmentation"][0]
            assert len(poly) >= 6 and len(poly) % 2 == 0
            assert 0 <= min(poly) and max(poly) <= 511
            area = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], 512, 512))))
            assert a["area"] == area and area > 30
            xs, ys = poly[0::2], poly[1::2]
            assert a["bbox"] == pytest.approx([min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], abs=0.051)


def test_sample_submission_is_valid(root):
    from trashlib.submission import validate_submission

    assert validate_submission(root / "sample_submission.csv", root / "test.json") == []


def test_mislabels_recorded_and_wrong(root):
    meta = _load(root, "synth_meta")
    assert meta["seed"] == 3 and meta["parameters"]["mislabel_rate"] == 0.1
    anns = {a["id"]: a for a in _load(root, "train_all")["annotations"]}
    assert len(meta["mislabels"]) == round(0.1 * len(anns)) > 0
    val = {a["id"]: a for split in ("train", "val") for a in _load(root, split)["annotations"]}
    for m in meta["mislabels"]:
        a = anns[m["annotation_id"]]
        assert a["category_id"] == m["label_category_id"] != m["true_category_id"]
        assert val[m["annotation_id"]]["category_id"] == m["label_category_id"]
        assert a["image_id"] == m["image_id"]
    test_ids = {a["id"] for a in _load(root, "test_labels")["annotations"]}
    assert not test_ids & {m["annotation_id"] for m in meta["mislabels"]}, "test labels stay clean"


@pytest.mark.integration
def test_deterministic_and_independent_of_workers(tmp_path):
    kw = dict(seed=11, n_train=3, n_val=1, n_test=2, image_size=256)
    a = generate_dataset(tmp_path / "a", workers=1, **kw)
    b = generate_dataset(tmp_path / "b", workers=2, **kw)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    c = generate_dataset(tmp_path / "c", workers=1, **(kw | {"seed": 12}))
    assert (a / "train_all.json").read_bytes() != (c / "train_all.json").read_bytes()


def test_refuses_to_overwrite(tmp_path):
    kw = dict(n_train=1, n_val=1, n_test=1, image_size=128, workers=1)
    out = generate_dataset(tmp_path / "d", seed=1, **kw)
    before = (out / "train_all.json").read_bytes()
    with pytest.raises(DatasetExistsError, match="already holds a dataset made by trashlib.*--overwrite"):
        generate_dataset(out, seed=2, **kw)
    assert (out / "train_all.json").read_bytes() == before
    generate_dataset(out, seed=2, overwrite=True, **kw)
    assert (out / "train_all.json").read_bytes() != before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already holds files not made by trashlib") as info:
        generate_dataset(tmp_path / "other", **kw)
    assert "overwrite=True" not in str(info.value)  # it must not suggest the flag that would delete them
    with pytest.raises(ValueError, match="mislabel_rate"):
        generate_dataset(tmp_path / "e", mislabel_rate=1.5, **kw)


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("how", ["api", "cli"])
def test_overwrite_leaves_a_folder_not_made_by_trashlib_alone(tmp_path, capsys, how):
    """`data synth --out DIR --overwrite` used to delete DIR whatever it held."""
    from trashlib.cli import main

    theirs = tmp_path / "theirs"
    (theirs / "batch_01_vt").mkdir(parents=True)  # even a folder that looks like a dataset, without the marker
    (theirs / "notes.txt").write_text("my thesis")
    (theirs / "train_all.json").write_text("{}")
    (theirs / "batch_01_vt" / "0000.jpg").write_bytes(b"my photo")
    before = _tree(theirs)
    if how == "api":
        with pytest.raises(DatasetExistsError, match="not made by trashlib, so it is left alone") as info:
            generate_dataset(theirs, n_train=1, n_val=1, n_test=1, image_size=128, workers=1, overwrite=True)
        message = str(info.value)
    else:
        assert main(["data", "synth", "--out", str(theirs), "--overwrite", "--n-train", "1", "--n-val", "1",
                     "--n-test", "1", "--workers", "1"]) == 2
        message = capsys.readouterr().err
        assert "not made by trashlib, so it is left alone" in message
    assert "--overwrite" not in message and "overwrite=True" not in message
    assert _tree(theirs) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs"]  # no temporary folder left behind


def test_overwrite_keeps_files_added_to_a_dataset(tmp_path):
    kw = dict(n_train=1, n_val=1, n_test=1, image_size=128, workers=1)
    out = generate_dataset(tmp_path / "d", **kw)
    assert (out / ".trashlib-synth").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "batch_03" / "extra.png").write_bytes(b"mine too")
    foreign = r"also files trashlib did not write \(batch_03/extra\.png, notes\.txt\)"
    with pytest.raises(DatasetExistsError, match=foreign):
        generate_dataset(out, overwrite=True, **kw)
    assert (out / "notes.txt").read_text() == "mine" and (out / "batch_03" / "extra.png").exists()
    (out / "notes.txt").unlink()
    (out / "batch_03" / "extra.png").unlink()
    (out / ".trashlib-synth").unlink()  # a dataset made before the marker: recognised by synth_meta.json
    (out / ".generated").touch()  # the Makefile's stamp
    generate_dataset(out, seed=5, overwrite=True, **kw)
    assert json.loads((out / "synth_meta.json").read_text())["seed"] == 5 and (out / ".trashlib-synth").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_failed_generation_leaves_the_old_dataset_whole(tmp_path, monkeypatch):
    import trashlib.synth.generate as generate

    kw = dict(n_train=1, n_val=1, n_test=1, image_size=128, workers=1)
    out = generate_dataset(tmp_path / "d", **kw)
    before = _tree(out)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(generate, "_write_annotations", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_dataset(out, seed=9, overwrite=True, **kw)
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_class_proportions_follow_the_competition():
    probs = class_probabilities()
    total = sum(COMPETITION_COUNTS.values())
    assert probs[0] == 0 and probs[class_id("Paper")] == pytest.approx(9311 / total)
    n = 800
    counts = np.bincount(sample_classes(np.random.default_rng(0), n), minlength=NUM_CLASSES)
    assert counts[0] == 0
    for c in range(1, NUM_CLASSES):  # within 4 standard errors of the competition's share
        assert abs(counts[c] / n - probs[c]) < 4 * np.sqrt(probs[c] * (1 - probs[c]) / n) + 1e-9, c
    assert counts[class_id("Battery")] < counts[class_id("Clothing")] + 8 < counts[class_id("Paper")]


def test_clip_polygon_by_hand():
    square = np.array([[-10, -10], [10, -10], [10, 10], [-10, 10]], float)
    clipped = clip_polygon(square, 0, 5)
    assert sorted(map(tuple, clipped)) == [(0, 0), (0, 5), (5, 0), (5, 5)]
    assert len(clip_polygon(square + 100, 0, 5)) == 0


def test_render_scene_is_deterministic():
    a, anns_a = render_scene(5, image_size=256)
    b, anns_b = render_scene(np.random.default_rng(5), image_size=256)
    assert a.shape == (256, 256, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and anns_a == anns_b


def test_label_map_painted_largest_first_matches_what_is_drawn():
    """Painting the polygons largest-first reproduces the drawing order (bag contents on top included)."""
    agreement = []
    for seed in range(8):
        scene = compose_scene((7, seed))
        agreement.append((_label_map(scene.annotations, 512) == scene.drawn).mean())
    assert min(agreement) > 0.97 and np.mean(agreement) > 0.985, agreement


def test_labels_match_pixel_colours():
    """Loose: each class looks unlike the floor, white styrofoam is bright, label edges are image edges."""
    sums = np.zeros((NUM_CLASSES, 3))
    counts = np.zeros(NUM_CLASSES)
    edge_ratio = []
    for seed in range(10):
        image, anns = render_scene((9, seed))
        mask = _label_map(anns, 512)
        for c in np.unique(mask):
            sums[c] += image[mask == c].sum(0)
            counts[c] += (mask == c).sum()
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
        boundary = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        edge_ratio.append(grad[boundary].mean() / grad.mean())
    means = sums / np.maximum(counts, 1)[:, None]
    seen = [c for c in range(1, NUM_CLASSES) if counts[c] > 2000]
    assert len(seen) >= 6
    for c in seen:
        assert np.abs(means[c] - means[0]).max() > 8, (c, means[c], means[0])
    styrofoam = class_id("Styrofoam")
    if counts[styrofoam] > 2000:
        assert means[styrofoam].mean() > means[0].mean() + 30
    assert np.median(edge_ratio) > 2.0, edge_ratio


def test_render_scene_reproduces_a_dataset_image(root):
    for split in ("train_all", "test_labels"):
        coco = _load(root, split)
        first = [im for im in coco["images"] if im["file_name"] == "batch_01_vt/0000.jpg"]
        if first:
            break
    image, anns = render_scene((3, 0))  # image 0 in file order of the seed-3 dataset
    stored = cv2.cvtColor(cv2.imread(str(root / "batch_01_vt/0000.jpg")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(image, stored)
    stored_anns = [a for a in coco["annotations"] if a["image_id"] == first[0]["id"]]
    assert [a["segmentation"] for a in stored_anns] == [a["segmentation"] for a in anns]


def test_dataset_files_are_world_readable(tmp_path):
    """Atomic writes start from mkstemp's private 0600; a dataset is written for others to read."""
    import stat

    from trashlib.synth import generate_dataset

    root = generate_dataset(tmp_path / "d", n_train=2, n_val=1, n_test=1, workers=1)
    for name in ("train.json", "test.json", "synth_meta.json", "sample_submission.csv"):
        assert (root / name).stat().st_mode & stat.S_IROTH, name
