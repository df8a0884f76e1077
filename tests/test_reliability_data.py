"""Hostile data: coordinates far out, images that do not decode, damaged RLEs, file names leaving the root.

Each case names its file and item in `data check` and in the reader, never a traceback. Whatever could
crash the interpreter (pycocotools on far-out coordinates) runs in a subprocess, so a segfault fails
one test instead of killing pytest.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import trashlib.data.segmentation as segmentation
from trashlib.data import DatasetError, TrashDataset, rasterize
from trashlib.data.check import check_dataset, format_problems


def _edit(root: Path, name: str, fn) -> None:
    data = json.loads((root / name).read_text())
    fn(data)
    (root / name).write_text(json.dumps(data))


def _set_segmentation(root: Path, seg, *, index: int = 0, name: str = "train.json") -> None:
    _edit(root, name, lambda d: d["annotations"][index].update(segmentation=seg))


def _damage_middle(path: Path) -> None:
    """Cut the middle third out of a JPEG's compressed data; header and end marker stay intact."""
    data = path.read_bytes()
    sos, eoi = data.index(b"\xff\xda"), data.rindex(b"\xff\xd9")
    third = (eoi - sos) // 3
    path.write_bytes(data[:sos + third] + data[eoi - third:])


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # the old code asked for tens of GB


def _run_isolated(script: str, *args, home: Path) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter with 3 GB of address space; its caches go under `home`."""
    env = {**os.environ, "TRASHLIB_HOME": str(home), "NO_ALBUMENTATIONS_UPDATE": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=env, text=True,
                          capture_output=True, timeout=120, preexec_fn=_limit_memory)


FAR_OUT = """
    import json, sys
    from trashlib.data import DatasetError, TrashDataset, rasterize
    from trashlib.data.check import check_dataset

    root, clean = sys.argv[1], sys.argv[2]
    print("CHECK", json.dumps([(p.file, p.item, p.message, p.fatal) for p in check_dataset(root)]))
    try:
        TrashDataset(root, "train")
    except DatasetError as e:
        print("READER", e)
    ann = json.load(open(root + "/train.json"))["annotations"][0]
    ds = TrashDataset(clean, "train")  # annotations edited in memory after loading: only load_mask sees them
    ds.annotations(0)[0]["segmentation"] = ann["segmentation"]
    try:
        ds.load_mask(0)
    except DatasetError as e:
        print("LOAD_MASK", e)
    try:
        rasterize([ann], height=64, width=64)
    except DatasetError as e:
        print("RASTERIZE", e)
    try:
        rasterize([ann], height=64, width=64, file="train.json")
    except DatasetError as e:
        print("RASTERIZE_FILE", e)
"""


@pytest.mark.parametrize("far", [1e9, 4e8, -4e8, 1e6])
@pytest.mark.integration
def test_far_out_coordinates_are_an_error_everywhere_never_a_crash(tiny_root, tiny_copy, tmp_path, far):
    """1e9 made pycocotools segfault, 4e8 made it allocate until killed; `data check` called both a warning."""
    _set_segmentation(tiny_copy, [[0, 0, far, 0, far, far]])
    result = _run_isolated(FAR_OUT, tiny_copy, tiny_root, home=tmp_path / "home")
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    words = "polygon 0 has coordinates far outside the 64x64 image"
    check = json.loads(out["CHECK"])
    assert [(f, item, fatal) for f, item, msg, fatal in check if words in msg] == [("train.json", "annotation 0", True)]
    assert out["READER"].startswith(f"{tiny_copy / 'train.json'}: annotation 0: {words}")
    assert out["READER"].endswith("[image 0]") or "[image 0] (and" in out["READER"]
    assert out["RASTERIZE"].startswith(f"annotations: annotation 0: {words}") and "[image 0]" in out["RASTERIZE"]
    assert out["RASTERIZE_FILE"].startswith(f"train.json: annotation 0: {words}")
    assert out["LOAD_MASK"].startswith(f"{tiny_root / 'train.json'}: annotation 0: {words}")
    assert "[image 0]" in out["LOAD_MASK"]


def test_coordinate_bound_is_a_few_image_sizes():
    """Within a pixel: fine; up to OUTSIDE_LIMIT image sizes out: a warning (clipped); beyond, or NaN: an error."""
    def faults(x):
        found = segmentation.segmentation_problems([[0, 0, x, 0, x, 10]], width=64, height=64)
        return [(msg.split(" (")[0], fatal) for msg, fatal in found]

    edge = (1 + segmentation.OUTSIDE_LIMIT) * 64
    assert faults(64.9) == []
    assert faults(edge) == [("polygon 0 lies outside the 64x64 image", False)]
    assert faults(edge + 0.5)[0][1] is True and "far outside" in faults(edge + 0.5)[0][0]
    assert faults(float("nan")) == [("polygon 0 has a NaN, infinite or huge coordinate", True)]
    assert faults(10**400) == [("polygon 0 has a NaN, infinite or huge coordinate", True)]  # was an OverflowError


def test_slightly_outside_polygon_is_clipped_as_before(tiny_copy):
    _set_segmentation(tiny_copy, [[-20, -20, 100, -20, 100, 100, -20, 100]])
    (p,) = check_dataset(tiny_copy)
    assert (p.item, p.fatal) == ("annotation 0", False) and "lies outside" in p.message
    with pytest.warns(UserWarning, match="lies outside"):
        ds = TrashDataset(tiny_copy, "train")
    ann = ds.annotations(0)[0]
    assert (rasterize([ann], height=64, width=64) == ann["category_id"]).all()


def test_outline_too_long_to_rasterise_is_an_error(tiny_copy):
    """Many long edges inside the bound would still cost pycocotools gigabytes: capped per annotation."""
    zigzag = [v for i in range(2000) for v in ((0, i % 64) if i % 2 else (190, i % 64))]
    _set_segmentation(tiny_copy, [zigzag])
    (p,) = [p for p in check_dataset(tiny_copy) if p.fatal]
    assert (p.file, p.item) == ("train.json", "annotation 0")
    assert f"more than {segmentation.MAX_OUTLINE} times the image's width + height" in p.message
    assert p.message.endswith("[image 0]")


# -- images that do not decode -----------------------------------------------------------------------
def test_empty_image_file_is_reported_and_the_report_survives(tiny_copy):
    (tiny_copy / "batch_01" / "0001.jpg").write_bytes(b"")
    _edit(tiny_copy, "val.json", lambda d: d["annotations"][0].update(category_id=42))
    problems = check_dataset(tiny_copy)  # was a cv2.error traceback: the whole report lost
    assert sorted((p.file, p.item) for p in problems) == [("train_all.json", "image 1"), ("val.json", "annotation 10")]
    (empty,) = [p for p in problems if p.item == "image 1"]
    assert empty.message.startswith("image file batch_01/0001.jpg is empty (0 bytes)")
    ds = TrashDataset(tiny_copy, "train")
    with pytest.raises(DatasetError, match=r"train\.json: image 1: image file .*0001\.jpg is empty \(0 bytes\)"):
        ds.load_image(1)


def test_jpeg_damaged_in_the_middle_is_an_error_in_check(tiny_copy, capfd):
    """libjpeg decodes it to smeared blocks and says so only on stderr; training would use it unnoticed."""
    _damage_middle(tiny_copy / "batch_01" / "0002.jpg")
    problems = check_dataset(tiny_copy)
    assert [(p.file, p.item, p.fatal) for p in problems] == [("train_all.json", "image 2", True)]
    assert problems[0].message.startswith("image file batch_01/0002.jpg is corrupt: libjpeg says 'Corrupt JPEG data")
    assert "also listed in train.json" in problems[0].message
    assert "Corrupt JPEG" not in capfd.readouterr().err  # captured into the report, not sprayed on the terminal
    assert TrashDataset(tiny_copy, "train").load_image(2).shape == (64, 64, 3)  # the fast reader still decodes it


RLE_GARBAGE = {
    "bad_characters": ({"size": [64, 64], "counts": "garbage!!"}, "RLE counts string has 'r' at character 2"),
    "beyond_alphabet": ({"size": [64, 64], "counts": "zzzz"}, "RLE counts string has 'z'"),
    "cut_off": ({"size": [64, 64], "counts": "0PP"}, "RLE counts string is cut off or garbled"),
    "short_string": ({"size": [64, 64], "counts": "05"}, "RLE run lengths add up to 5, not height*width = 4096"),
    "short_list": ({"size": [64, 64], "counts": [10]}, "RLE run lengths add up to 10, not height*width = 4096"),
    "negative_run": ({"size": [64, 64], "counts": [-5, 4101]}, "RLE run length -5 is not an integer"),
    "float_run": ({"size": [64, 64], "counts": [1.5, 4094.5]}, "RLE run length 1.5 is not an integer"),
    "float_size": ({"size": [64.0, 64.0], "counts": [4096]}, "RLE size must be [height, width] integers"),
}


@pytest.mark.parametrize("case", RLE_GARBAGE)
def test_damaged_rle_is_an_error_in_check_and_reader(tiny_copy, case):
    """Before: `data check` passed these; training failed on some and painted uninitialised memory for others."""
    seg, words = RLE_GARBAGE[case]
    _set_segmentation(tiny_copy, seg)
    problems = check_dataset(tiny_copy)
    assert [(p.file, p.item, p.fatal) for p in problems] == [("train.json", "annotation 0", True)], problems
    assert problems[0].message.startswith(words) and problems[0].message.endswith("[image 0]")
    with pytest.raises(DatasetError, match=r"train\.json: annotation 0: RLE"):
        TrashDataset(tiny_copy, "train")


def test_one_check_reports_every_problem_training_would_hit(tiny_copy, tmp_path):
    _set_segmentation(tiny_copy, {"size": [64, 64], "counts": "garbage!!"}, index=0)
    _set_segmentation(tiny_copy, [[0, 0, 1e9, 0, 1e9, 1e9]], index=1)
    (tiny_copy / "batch_01" / "0003.jpg").write_bytes(b"")
    _damage_middle(tiny_copy / "batch_01" / "0004.jpg")
    _edit(tiny_copy, "test.json", lambda d: d["images"][0].update(file_name="../elsewhere.jpg"))
    problems = check_dataset(tiny_copy)
    report = format_problems(problems, tiny_copy)
    expected = [("train.json", "annotation 0", "RLE counts string"), ("train.json", "annotation 1", "far outside"),
                ("train_all.json", "image 3", "is empty"), ("train_all.json", "image 4", "is corrupt"),
                ("test.json", "image 6", "leaves the data root")]
    for file, item, words in expected:
        assert any(p.file == file and p.item == item and words in p.message and p.fatal for p in problems), report
    assert report.splitlines()[-1].endswith(f"{len(problems)} error(s), 0 warning(s)")


# -- file names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["../outside.jpg", "batch_01/../../outside.jpg", "ABSOLUTE", "..\\outside.jpg"])
def test_file_name_leaving_the_root_is_an_error(tiny_copy, where):
    outside = tiny_copy.parent / "outside.jpg"
    shutil.copy(tiny_copy / "batch_01" / "0006.jpg", outside)  # the escape would succeed: a real image is there
    name = str(outside) if where == "ABSOLUTE" else where
    _edit(tiny_copy, "test.json", lambda d: d["images"][0].update(file_name=name))
    problems = check_dataset(tiny_copy)
    assert [(p.file, p.item, p.fatal) for p in problems] == [("test.json", "image 6", True)], problems
    assert "leaves the data root" in problems[0].message
    with pytest.raises(DatasetError, match=r"test\.json: image 6: file_name .* leaves the data root"):
        TrashDataset(tiny_copy, "test")


def test_two_image_ids_naming_one_file_are_a_warning(tiny_copy):
    _edit(tiny_copy, "train.json", lambda d: d["images"][1].update(file_name=d["images"][0]["file_name"]))
    problems = check_dataset(tiny_copy)
    assert [(p.file, p.item, p.fatal) for p in problems] == [("train.json", "image 1", False)]
    assert problems[0].message == "file_name 'batch_01/0000.jpg' is also image 0: one photo counted twice"
    with pytest.warns(UserWarning, match="is also image 0"):
        TrashDataset(tiny_copy, "train")
