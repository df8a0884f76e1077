"""The dataset validator: one fault at a time, each reported with its file and id; CLI exit codes; reader errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from trashlib.cli import main
from trashlib.data import DatasetError, TrashDataset
from trashlib.data.check import check_dataset, format_problems


def _edit(root: Path, name: str, fn) -> None:
    data = json.loads((root / name).read_text())
    fn(data)
    (root / name).write_text(json.dumps(data))


def _first_ann(data: dict) -> dict:
    return data["annotations"][0]


def _invalid_json(root):
    text = (root / "val.json").read_text()
    (root / "val.json").write_text(text[:-5])


def _missing_top_key(root):
    _edit(root, "val.json", lambda d: d.pop("categories"))


def _missing_item_key(root):
    _edit(root, "train.json", lambda d: d["images"][1].pop("file_name"))


def _duplicate_image_id(root):
    _edit(root, "test.json", lambda d: d["images"][1].update(id=d["images"][0]["id"]))


def _duplicate_annotation_id(root):
    _edit(root, "train.json", lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"]))


def _unknown_category(root):
    _edit(root, "train.json", lambda d: _first_ann(d).update(category_id=42))


def _two_point_polygon(root):
    _edit(root, "train.json", lambda d: _first_ann(d).update(segmentation=[[1.0, 1.0, 30.0, 30.0]]))


def _odd_coordinates(root):
    _edit(root, "train.json", lambda d: _first_ann(d).update(segmentation=[[1.0, 1.0, 30.0, 30.0, 5.0, 20.0, 9.0]]))


def _outside_polygon(root):
    _edit(root, "train.json", lambda d: _first_ann(d).update(segmentation=[[200, 200, 240, 200, 240, 240]]))


def _missing_image_ref(root):
    _edit(root, "train.json", lambda d: _first_ann(d).update(image_id=999))


def _image_file_missing(root):
    (root / "batch_01" / "0001.jpg").unlink()


def _corrupt_image(root):
    path = root / "batch_01" / "0001.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _wrong_size(root):
    _edit(root, "val.json", lambda d: d["images"][0].update(width=128))


def _missing_split(root):
    (root / "val.json").unlink()


# fault, file, item, words in the message; annotation 0 belongs to image 0 and image 1 is in train
FAULTS = {
    "invalid_json": (_invalid_json, "val.json", None, "invalid JSON at line 1 column"),
    "missing_top_key": (_missing_top_key, "val.json", None, "missing top-level key 'categories'"),
    "missing_item_key": (_missing_item_key, "train.json", "image 1", "missing key(s) 'file_name'"),
    "duplicate_image_id": (_duplicate_image_id, "test.json", "image 6", "duplicate image id"),
    "duplicate_annotation_id": (_duplicate_annotation_id, "train.json", "annotation 0", "duplicate annotation id"),
    "unknown_category": (_unknown_category, "train.json", "annotation 0", "unknown category_id 42"),
    "two_point_polygon": (_two_point_polygon, "train.json", "annotation 0", "polygon 0 has 2 point(s)"),
    "odd_coordinates": (_odd_coordinates, "train.json", "annotation 0", "odd number of coordinates (7)"),
    "outside_polygon": (_outside_polygon, "train.json", "annotation 0", "outside the 64x64 image"),
    "missing_image_ref": (_missing_image_ref, "train.json", "annotation 0", "points at missing image 999"),
    "image_file_missing": (_image_file_missing, "train_all.json", "image 1", "batch_01/0001.jpg is missing"),
    "corrupt_image": (_corrupt_image, "train_all.json", "image 1", "batch_01/0001.jpg is truncated"),
    "wrong_size": (_wrong_size, "val.json", "image 4", "is 64x64, the JSON says 128x64"),
    "missing_split": (_missing_split, "val.json", None, "missing split file"),
}


def test_valid_dataset_has_no_problems(tiny_root):
    assert check_dataset(tiny_root) == []
    assert format_problems([], tiny_root) == f"{tiny_root}: OK (no problems found)"


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_reported_with_file_and_id(tiny_copy, fault):
    corrupt, file, item, words = FAULTS[fault]
    corrupt(tiny_copy)
    problems = check_dataset(tiny_copy)
    assert len(problems) == 1, problems  # one fault, one line: no cascade of follow-up errors
    p = problems[0]
    assert (p.file, p.item) == (file, item) and words in p.message
    assert str(p).startswith(f"{file}: {item}: " if item else f"{file}: ")


def test_problems_in_shared_images_name_every_json(tiny_copy):
    _corrupt_image(tiny_copy)
    (p,) = check_dataset(tiny_copy)
    assert "also listed in train.json" in p.message


def test_two_faults_are_both_reported(tiny_copy):
    _unknown_category(tiny_copy)
    _image_file_missing(tiny_copy)
    problems = check_dataset(tiny_copy)
    assert {(p.file, p.item) for p in problems} == {("train.json", "annotation 0"), ("train_all.json", "image 1")}
    report = format_problems(problems, tiny_copy)
    assert "unknown category_id 42" in report and "0001.jpg is missing" in report
    assert report.splitlines()[-1] == f"{tiny_copy}: 2 problem(s) in 2 file(s): 2 error(s), 0 warning(s)"


def test_cli_exit_codes(tiny_root, tiny_copy, capsys):
    assert main(["data", "check", str(tiny_root)]) == 0
    assert "OK" in capsys.readouterr().out
    _two_point_polygon(tiny_copy)
    assert main(["data", "check", str(tiny_copy)]) == 1
    out = capsys.readouterr().out
    assert "train.json: annotation 0: polygon 0 has 2 point(s)" in out and "1 problem(s)" in out


def test_missing_root_is_a_problem(tmp_path):
    (p,) = check_dataset(tmp_path / "nowhere")
    assert "does not exist" in p.message


def test_reader_raises_the_same_error(tiny_copy):
    _unknown_category(tiny_copy)
    with pytest.raises(DatasetError, match=r"train\.json: annotation 0: unknown category_id 42") as info:
        TrashDataset(tiny_copy, "train")
    reader = [(p.item, p.message) for p in info.value.problems]
    assert reader == [(p.item, p.message) for p in check_dataset(tiny_copy)]
    assert info.value.problems[0].file == str(tiny_copy / "train.json")


def test_reader_raises_on_invalid_json(tiny_copy):
    _invalid_json(tiny_copy)
    with pytest.raises(DatasetError, match=r"val\.json: invalid JSON at line 1 column \d+"):
        TrashDataset(tiny_copy, "val")


@pytest.mark.parametrize("fault, words", [(_corrupt_image, "is truncated"), (_image_file_missing, "is missing")])
def test_reader_names_the_image_of_a_bad_file(tiny_copy, fault, words):
    fault(tiny_copy)
    ds = TrashDataset(tiny_copy, "train")
    ds.load_image(0)
    with pytest.raises(DatasetError, match=rf"train\.json: image 1: image file .*0001\.jpg {words}"):
        ds[1]


def test_reader_rejects_an_image_of_another_size(tiny_copy):
    _wrong_size(tiny_copy)
    with pytest.raises(DatasetError, match=r"val\.json: image 4: .* is 64x64, the JSON says 128x64"):
        TrashDataset(tiny_copy, "val")[0]


def test_reader_warns_but_reads_past_a_non_fatal_problem(tiny_copy):
    _duplicate_annotation_id(tiny_copy)
    with pytest.warns(UserWarning, match="duplicate annotation id"):
        ds = TrashDataset(tiny_copy, "train")
    assert ds[0][1] is not None


@pytest.mark.realdata
def test_real_data_passes(taco_root):
    problems = check_dataset(taco_root)
    assert problems == [], format_problems(problems, taco_root)


def test_validator_survives_hostile_values(tiny_root):
    """Wrong types anywhere give problems, never a crash inside the validator."""
    from trashlib.data.coco import validate_coco

    base = json.loads((tiny_root / "train.json").read_text())
    hostile = [None, [1], {"a": 1}, "x", -1, 1.5, True, [], float("nan"), {"counts": [1], "size": None}]
    for section in ("images", "annotations", "categories"):
        for key in [*base[section][0], None]:
            for value in hostile:
                data = json.loads(json.dumps(base))
                if key is None:
                    data[section][0] = value
                else:
                    data[section][0][key] = value
                problems = validate_coco(data, file="train.json")
                assert all(p.file == "train.json" for p in problems)
        assert validate_coco({**base, section: "nope"}, file="train.json")[0].message == f"{section!r} must be a list, not str"
    assert validate_coco([], file="x.json")[0].message.startswith("top level must be a JSON object")
