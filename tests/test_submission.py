"""Submission CSV: encoding, downsampling, atomic streaming writes, the validator, scoring and the CLI."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from trashlib.cli import main
from trashlib.scoring.evaluation import score_submission
from trashlib.submission import (downsample_prediction, encode_prediction, read_submission, validate_submission,
                                 write_submission)

IDS = [f"batch_01_vt/{i:04d}.jpg" for i in range(4)]
ZEROS = encode_prediction(np.zeros((256, 256), np.uint8))


def random_pred(seed: int, size: int = 512) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 11, (size, size))


def write_test_json(path: Path, ids=IDS) -> Path:
    images = [{"id": i, "file_name": f, "width": 512, "height": 512} for i, f in enumerate(ids)]
    path.write_text(json.dumps({"images": images, "categories": []}))
    return path


# ---------------------------------------------------------------- encoding and downsampling

def test_downsample_matches_albumentations_resize_on_masks():
    import albumentations as A

    resize = A.Resize(256, 256)
    image = np.zeros((512, 512, 3), np.uint8)
    for seed in range(3):
        mask = random_pred(seed).astype(np.uint8)
        expected = resize(image=image, mask=mask)["mask"]
        np.testing.assert_array_equal(downsample_prediction(mask), expected)
        assert not np.array_equal(mask[1::2, 1::2], expected)  # odd rows would differ: the test can fail


def test_downsample_accepts_torch_and_passes_256_through():
    pred = random_pred(1)
    out = downsample_prediction(torch.from_numpy(pred))
    assert out.shape == (256, 256) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, pred[::2, ::2])
    small = random_pred(2, 256)
    np.testing.assert_array_equal(downsample_prediction(small), small)


@pytest.mark.parametrize("pred, match", [
    (np.zeros((300, 300), np.int64), r"\(300, 300\)"),
    (np.zeros((1, 512, 512), np.int64), r"\(1, 512, 512\)"),
    (np.zeros((512, 512), np.float32), "integer labels"),
    (np.full((512, 512), 11), "label 11"),
    (np.full((256, 256), -1), "label -1"),
])
def test_downsample_rejects_bad_predictions(pred, match):
    with pytest.raises(ValueError, match=match):
        downsample_prediction(pred)


def test_encode_matches_naive_join_and_writes_10():
    pred = random_pred(3, 256)
    pred[0, 0], pred[0, 1], pred[255, 255] = 10, 0, 10
    text = encode_prediction(pred)
    assert text == " ".join(str(x) for x in pred.ravel())
    assert text.startswith("10 0 ") and text.endswith(" 10")
    assert len(text.split(" ")) == 65536


# ---------------------------------------------------------------- writing and reading

def test_round_trip_and_header(tmp_path):
    preds = [random_pred(0), random_pred(1, 256).astype(np.uint8), torch.from_numpy(random_pred(2))]
    path = write_submission(tmp_path / "sub.csv", zip(IDS, preds))
    assert path == tmp_path / "sub.csv"
    with open(path) as f:
        assert f.readline() == "image_id,PredictionString\n"
        assert f.readline().startswith(IDS[0] + ",")
    rows = list(read_submission(path))
    assert [r[0] for r in rows] == IDS[:3]
    for (_, got), pred in zip(rows, preds):
        np.testing.assert_array_equal(got, np.asarray(pred)[:: len(pred) // 256, :: len(pred) // 256])
        assert got.dtype == np.uint8


def test_rows_stream_from_a_generator_without_materialising(tmp_path):
    n = 40

    def rows():
        for i in range(n):  # a fresh 256 kB array per row: a list of them would peak above 10 MB
            yield f"x/{i}.jpg", np.full((512, 512), i % 11, np.uint8)

    tracemalloc.start()
    try:
        write_submission(tmp_path / "sub.csv", rows())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert sum(1 for _ in read_submission(tmp_path / "sub.csv")) == n


@pytest.mark.parametrize("failure", ["exception", "bad prediction"])
def test_a_crash_mid_way_leaves_the_old_file_and_no_temporary(tmp_path, failure):
    path = tmp_path / "sub.csv"
    path.write_text("previous submission\n")

    def rows():
        yield IDS[0], random_pred(0)
        yield IDS[1], random_pred(1)
        if failure == "exception":
            raise RuntimeError("model crashed")
        yield IDS[2], np.full((512, 512), 12)

    with pytest.raises((RuntimeError, ValueError), match="model crashed" if failure == "exception" else IDS[2]):
        write_submission(path, rows())
    assert path.read_text() == "previous submission\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]


def test_a_crash_leaves_no_file_at_a_new_path(tmp_path):
    def rows():
        yield IDS[0], random_pred(0)
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        write_submission(tmp_path / "new.csv", rows())
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_duplicate_ids(tmp_path):
    with pytest.raises(ValueError, match=f"row 2: duplicate image_id '{IDS[0]}'"):
        write_submission(tmp_path / "sub.csv", [(IDS[0], random_pred(0)), (IDS[0], random_pred(1))])


def test_read_submission_names_the_bad_line(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text(f"image_id,PredictionString\n{IDS[0]},{ZEROS}\n{IDS[1]},{ZEROS} 3\n")
    with pytest.raises(ValueError, match=f"line 3 \\({IDS[1]}\\): found 65537 labels"):
        list(read_submission(path))


# ---------------------------------------------------------------- validation, one test per fault

@pytest.fixture
def test_json(tmp_path) -> Path:
    return write_test_json(tmp_path / "test.json")


def csv_with(tmp_path, lines: list[str]) -> Path:
    path = tmp_path / "sub.csv"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def good_lines() -> list[str]:
    return ["image_id,PredictionString"] + [f"{i},{ZEROS}" for i in IDS]


def test_valid_submission_has_no_problems(tmp_path, test_json):
    path = write_submission(tmp_path / "sub.csv", ((i, random_pred(k)) for k, i in enumerate(IDS)))
    assert validate_submission(path, test_json) == []


def mutate(lines, fault):
    if fault == "header":
        lines[0] = "id,prediction"
    elif fault == "no header":
        del lines[0]
    elif fault == "missing row":
        del lines[3]
    elif fault == "unknown id":
        lines.append(f"batch_01_vt/9999.jpg,{ZEROS}")
    elif fault == "duplicate":
        lines.append(lines[2])
    elif fault == "order":
        lines[2], lines[3] = lines[3], lines[2]
    elif fault == "count":
        lines[2] = lines[2][:-2]
    elif fault == "non-integer":
        lines[4] = lines[4].replace("0 0 0", "0 1.5 0", 1)
    elif fault == "label 11":
        lines[4] = lines[4][:-1] + "11"
    elif fault == "fields":
        lines[2] = lines[2].replace(",", " ", 1)
    return lines


@pytest.mark.parametrize("fault, expected", [
    ("header", ["line 1: header is 'id,prediction', expected 'image_id,PredictionString'"]),
    ("no header", [f"line 1: header is '{IDS[0]},0 0 0"]),  # its labels still count as row 1
    ("missing row", [f"1 of 4 test images have no row: {IDS[2]}"]),
    ("unknown id", ["line 6: unknown image_id 'batch_01_vt/9999.jpg' (not in test.json)"]),
    ("duplicate", [f"line 6: duplicate image_id '{IDS[1]}' (first at line 3)"]),
    ("order", [f"line 3: rows are not in test.json order: found '{IDS[2]}' where '{IDS[1]}' belongs (2 rows"]),
    ("count", [f"line 3 ({IDS[1]}): found 65535 labels, expected 65536"]),
    ("non-integer", [f"line 5 ({IDS[3]}): label 2 is '1.5': not an integer in 0..10"]),
    ("label 11", [f"line 5 ({IDS[3]}): label 65536 is '11': outside 0..10"]),
    ("fields", ["line 3: 1 fields, expected 2", f"1 of 4 test images have no row: {IDS[1]}"]),
])
def test_each_fault_is_reported_with_its_line(tmp_path, test_json, fault, expected):
    path = csv_with(tmp_path, mutate(good_lines(), fault))
    problems = validate_submission(path, test_json)
    assert len(problems) == len(expected), problems
    for problem, text in zip(problems, expected):
        assert problem.startswith(f"{path}: ") and text in problem, problem


def test_empty_and_unreadable_files(tmp_path, test_json):
    empty = csv_with(tmp_path, [])
    assert validate_submission(empty, test_json) == [
        f"{empty}: empty file; expected the header 'image_id,PredictionString' and 4 rows"]
    [problem] = validate_submission(tmp_path / "absent.csv", test_json)
    assert "absent.csv: cannot read the file" in problem
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"image_id,PredictionString\n\xff\xfe\x00garbage\n")
    assert any("not UTF-8" in p for p in validate_submission(binary, test_json))


def test_unreadable_rows_are_named_and_the_rest_still_checked(tmp_path, test_json):
    from trashlib.submission import ROW_LIMIT

    lines = [line.encode() for line in good_lines()]
    lines[2] = lines[2].replace(b"0 0", b"0 \xe9", 1)  # a Latin-1 byte in row 2
    lines.insert(3, b"x" * (ROW_LIMIT + 10))  # a record too long to hold
    path = tmp_path / "sub.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert validate_submission(path, test_json) == [
        f"{path}: line 3: not UTF-8 text (byte 0xe9 at character {len(IDS[1]) + 4}); save the file as UTF-8",
        f"{path}: line 4: row longer than 1,048,576 characters (a valid row is about 131 kB)",
        f"{path}: 1 of 4 test images have no row: {IDS[1]}"]
    with pytest.raises(ValueError, match="line 3: not UTF-8 text"):
        list(read_submission(path))


def test_problems_are_capped_and_long_ids_shortened(tmp_path, test_json):
    from trashlib.submission import MAX_PROBLEMS

    path = csv_with(tmp_path, good_lines() + [f"{'y' * 5000},{ZEROS}"] * (MAX_PROBLEMS + 50))
    problems = validate_submission(path, test_json)
    assert len(problems) == MAX_PROBLEMS + 1 and problems[-1] == f"{path}: ... and 50 more problem(s) not listed"
    assert problems[0] == f"{path}: line 6: unknown image_id {'y' * 60!r}... (5,000 characters) (not in test.json)"


def test_many_missing_ids_are_listed_and_counted(tmp_path):
    ids = [f"b/{i}.jpg" for i in range(30)]
    problems = validate_submission(csv_with(tmp_path, ["image_id,PredictionString"]), write_test_json(tmp_path / "t.json", ids))
    assert problems == [f"{tmp_path / 'sub.csv'}: 30 of 30 test images have no row: "
                        + ", ".join(ids[:20]) + ", ... and 10 more"]


# ---------------------------------------------------------------- scoring against ground truth

def rect(x0, y0, size=128):
    return [float(v) for v in (x0, y0, x0 + size, y0, x0 + size, y0 + size, x0, y0 + size)]


@pytest.fixture
def labelled(tmp_path) -> Path:
    """Three 512x512 images: a Paper square, a Glass square (each 64x64 = 4096 pixels at 256), nothing."""
    from PIL import Image

    root = tmp_path / "data"
    (root / "batch_01_vt").mkdir(parents=True)
    images, anns = [], []
    for i, (cat, corner) in enumerate([(2, (100, 100)), (5, (200, 40)), (None, None)]):
        name = f"batch_01_vt/{i:04d}.jpg"
        Image.new("RGB", (512, 512)).save(root / name)
        images.append({"id": i, "file_name": name, "width": 512, "height": 512})
        if cat:
            anns.append({"id": i, "image_id": i, "category_id": cat, "iscrowd": 0, "area": 16384.0,
                         "bbox": [*map(float, corner), 128.0, 128.0], "segmentation": [rect(*corner)]})
    categories = [{"id": c, "name": n, "supercategory": n} for c, n in [(2, "Paper"), (5, "Glass")]]
    coco = {"images": images, "annotations": anns, "categories": categories}
    (root / "test_labels.json").write_text(json.dumps(coco))
    del coco["annotations"]
    (root / "test.json").write_text(json.dumps(coco))
    return root


def ground_truth(root: Path) -> list[tuple[str, np.ndarray]]:
    from trashlib.data import TrashDataset

    ds = TrashDataset(root, "test_labels")
    return [(name, np.asarray(ds.load_mask(i))) for i, name in enumerate(ds.file_names)]


def test_perfect_submission_scores_one(labelled, tmp_path):
    gt = ground_truth(labelled)
    assert [int((m == c).sum()) for (_, m), c in zip(gt, [2, 5])] == [128 * 128] * 2
    noisy = []
    for name, mask in gt:  # odd rows and columns are dropped by the downsampling: noise there is harmless
        pred = mask.astype(np.int64)
        pred[1::2, :] = 9
        pred[:, 1::2] = 9
        noisy.append((name, pred))
    path = write_submission(tmp_path / "sub.csv", noisy)
    s = score_submission(path, labelled / "test_labels.json")
    assert s.miou == 1.0 and s.pixel_accuracy == 1.0 and s.fwiou == 1.0
    assert np.isnan(s.per_class_iou[[1, 3, 4, 6, 7, 8, 9, 10]]).all()


def test_corrupted_submission_scores_the_hand_computed_value(labelled, tmp_path):
    rows = []
    for name, mask in ground_truth(labelled):
        rows.append((name, np.where(mask == 5, 2, mask)))  # the Glass square called Paper
    s = score_submission(write_submission(tmp_path / "sub.csv", rows), labelled / "test_labels.json")
    # n = 4096 pixels per square, 3 * 65536 pixels: IoU background 1, Paper n / 2n, Glass 0
    assert s.per_class_iou[[0, 2, 5]].tolist() == [1.0, 0.5, 0.0]
    assert s.miou == pytest.approx(0.5)
    assert s.pixel_accuracy == pytest.approx(1 - 4096 / 196608)
    assert s.mean_class_accuracy == pytest.approx(2 / 3)
    assert s.fwiou == pytest.approx((196608 - 8192) / 196608 + 4096 / 196608 * 0.5)


def test_score_refuses_invalid_csv_and_unlabelled_json(labelled, tmp_path):
    path = csv_with(tmp_path, good_lines())
    with pytest.raises(ValueError, match="not a valid submission") as e:
        score_submission(path, labelled / "test_labels.json")
    assert "unknown image_id" in str(e.value)
    with pytest.raises(ValueError, match="no 'annotations'"):
        score_submission(path, labelled / "test.json")


# ---------------------------------------------------------------- command line

def test_cli_validate_and_score(labelled, tmp_path, capsys):
    path = write_submission(tmp_path / "sub.csv", ground_truth(labelled))
    assert main(["submission", "validate", str(path), "--test", str(labelled / "test.json")]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: OK"
    assert main(["submission", "score", str(path), "--labels", str(labelled / "test_labels.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mIoU"] == 1.0

    lines = path.read_text().splitlines()
    bad = csv_with(tmp_path, lines[:2] + lines[3:])
    assert main(["submission", "validate", str(bad), "--test", str(labelled / "test.json")]) == 1
    out = capsys.readouterr().out
    assert "1 of 3 test images have no row: batch_01_vt/0001.jpg" in out and out.endswith("1 problem(s)\n")
    assert main(["submission", "score", str(bad), "--labels", str(labelled / "test_labels.json")]) == 2
    assert "not a valid submission" in capsys.readouterr().err
