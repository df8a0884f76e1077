"""A stored probability map proves itself, and an index covers its split (issue 25, cases s3-s11 and fuzz).

Every map is written by the store's own writer, then damaged on disk or in index.json the way a crash,
a bad copy or a hostile user would; the outcome must be a clear error naming the file (with the command
that rebuilds it) or the right score, never a traceback of another type and never a wrong number.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import confident, make_tiny_dataset, write_index

from trashlib import paths
from trashlib.cli import main
from trashlib.config import TrainConfig
from trashlib.data import TrashDataset
from trashlib.metrics import confusion_matrix
from trashlib.predict.probs import INDEX_FILE, ProbIndex, ProbWriter
from trashlib.runs import Run
from trashlib.scoring.evaluation import evaluate_index
from trashlib.submission import index_to_submission, validate_submission


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """3 val and 3 test images of 32x32 (a split of 3, so that 2 of them are a part)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("store") / "data", n_train=1, n_val=3, n_test=3, size=32)


@pytest.fixture(scope="module")
def root256(tmp_path_factory) -> Path:
    """256x256 test images: a size the submission format accepts."""
    return make_tiny_dataset(tmp_path_factory.mktemp("store256") / "data", n_train=1, n_val=1, n_test=2, size=256)


@pytest.fixture(autouse=True)
def _stores(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "PROBS_DIR", tmp_path / "probs")
    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "runs")


def noisy_maps(root: Path, split: str, *, seed: int = 0, names=None) -> dict:
    """Maps that are right on about 70% of the pixels: a score that a swap or a wrong map changes."""
    ds = TrashDataset(root, "test_labels" if split == "test" else split)
    rng = np.random.default_rng(seed)
    maps = {}
    for i, name in enumerate(ds.file_names):
        if names is None or name in names:
            mask = ds.load_mask(i)
            noisy = np.where(rng.random(mask.shape) < 0.3, rng.integers(0, 11, mask.shape), mask)
            maps[name] = confident(noisy, p=0.6)
    return maps


def an_index(root: Path, split: str, name: str = "ix", **kwargs) -> ProbIndex:
    return write_index(paths.PROBS_DIR / name / f"data_{split}", noisy_maps(root, split, **kwargs), split=split,
                       data_root=str(root))


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, err: str) -> str:
    """The CLI's one `error: ...` line, the last on stderr (progress bars may come before it)."""
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert code == 2 and last.startswith("error: ") and "Traceback" not in err, err
    return last


def swap(a: Path, b: Path) -> None:
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)


# ---------------------------------------------------------------- s3: an index covers its split

def test_case_s3_a_partial_index_is_refused_unless_a_subset_is_asked(root):
    names = TrashDataset(root, "val").file_names
    part = an_index(root, "val", names=names[:2])
    with pytest.raises(ValueError) as e:
        evaluate_index(part, root, "val")
    assert f"covers 2 of the split's 3 images; e.g. {names[2]!r} is missing" in str(e.value)
    assert str(part.path) in str(e.value)
    ev = evaluate_index(part, root, "val", subset=True)
    assert (ev.images, ev.split_images, ev.coverage) == (2, 3, "2 of 3 images") and not ev.complete
    whole = evaluate_index(an_index(root, "val", "whole"), root, "val")
    assert whole.complete and whole.coverage == "all 3 images" and whole.describe().endswith("on all 3 images")


def test_case_s3_the_cli_says_how_many_of_the_split_it_scored(root, capsys):
    names = TrashDataset(root, "val").file_names
    part = an_index(root, "val", names=names[:2])
    code, out, err = cli(capsys, "ensemble", part.path, "--data", root, "--split", "val")
    assert code == 0, err
    assert "on 2 of 3 images  input 1" in out, out


def test_case_s3_stages_and_sweeps_score_the_first_images_only_on_request(root, monkeypatch):
    """What notebooks 02 and 05 do: max_images asks for the split's first images, and the output says so."""
    from trashlib.postprocess.ensemble import fit_weights
    from trashlib.postprocess.consensus import sweep_overwrite
    from trashlib.postprocess.recipe import StageRecipe
    from trashlib.postprocess.stages import evaluate_stage

    names = TrashDataset(root, "val").file_names
    parts = [an_index(root, "val", f"run{m}", seed=m, names=names[:2]) for m in range(2)]
    monkeypatch.setattr("trashlib.postprocess.recipe.resolve_run", lambda name: name)
    monkeypatch.setattr("trashlib.postprocess.recipe.predict", lambda name, *a, **k: parts[int(name[-1])])
    with pytest.raises(ValueError, match="covers 2 of the split's 3 images"):
        evaluate_stage(StageRecipe(("run0",)), root, "val")
    stage = evaluate_stage(StageRecipe(("run0", "run1"), vote="soft"), root, "val", max_images=2)
    assert stage.evaluation.coverage == "2 of 3 images"
    for score in (lambda **k: fit_weights(parts, root, "val", rounds=1, progress=False, **k),
                  lambda **k: sweep_overwrite(parts[0], parts[1:], root, "val", progress=False, **k)):
        with pytest.raises(ValueError, match="covers 2 of the split's 3 images"):
            score()
        score(subset=True)


# ---------------------------------------------------------------- s4, s5: a map records its image and shape

def test_case_s4_a_map_of_another_shape_than_recorded_is_named_with_both_shapes(root):
    ix = an_index(root, "val")
    target = ix.path / ix.items[1]["path"]
    five = np.zeros((5, 32, 32), np.uint8)
    five[0] = 255
    np.savez_compressed(target, probs=five, file_name=np.array(ix.file_names[1]))
    with pytest.raises(ValueError) as e:
        evaluate_index(ix, root, "val")
    message = str(e.value)
    for part in (str(target), repr(ix.file_names[1]), "(5, 32, 32)", "(11, 32, 32)"):
        assert part in message, message


def test_case_s5_swapped_maps_are_named_not_scored(root):
    ix = an_index(root, "val")
    swap(ix.path / ix.items[0]["path"], ix.path / ix.items[2]["path"])
    with pytest.raises(ValueError) as e:
        evaluate_index(ix, root, "val")
    message = str(e.value)
    assert str(ix.path / ix.items[0]["path"]) in message
    assert f"holds the map of image {ix.file_names[2]!r}, not of {ix.file_names[0]!r}" in message
    assert "rerun the command that made it" in message


def test_case_s5_a_map_records_its_name_without_pickle_and_the_index_its_sha1(root):
    ix = an_index(root, "val")
    meta = json.loads((ix.path / INDEX_FILE).read_text())
    assert meta["version"] == 3
    for item in meta["items"]:
        with np.load(ix.path / item["path"], allow_pickle=False) as z:
            assert str(z["file_name"]) == item["file_name"] and z["probs"].shape == tuple(item["shape"])
        assert len(item["sha1"]) == 40 and int(item["sha1"], 16) >= 0


def test_case_s5_an_index_of_the_older_version_is_not_trusted(root, tmp_path):
    ix = an_index(root, "val")
    meta = json.loads((ix.path / INDEX_FILE).read_text())
    meta["version"] = 2
    (ix.path / INDEX_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="version 2, not 3 .from before the store checked its maps") as e:
        ProbIndex(ix.path)
    assert f"delete {ix.path} and rerun" in str(e.value)
    items = [{k: it[k] for k in ("image_id", "file_name", "shape")} for it in meta["items"]]
    writer = ProbWriter(ix.path, items, ix.settings)  # the writer clears the old folder: it wrote settings.json
    assert writer.todo == [0, 1, 2] and not (ix.path / INDEX_FILE).exists()


# ---------------------------------------------------------------- s6, s9: predict and resume read what they keep

@pytest.fixture
def fake_run(monkeypatch) -> Path:
    """A run folder whose model is test_inference's Pointwise (no training)."""
    from test_inference import Pointwise as Model

    run = paths.RUNS_DIR / "fake-run"
    (run / "checkpoints").mkdir(parents=True)
    TrainConfig(model="segformer", steps=1, batch_size=1, image_size=32).to_yaml(run / "config.yaml")
    (run / "checkpoints" / "best.safetensors").write_bytes(b"")
    (run / "checkpoints" / "last-1").mkdir()  # the last weights, which predict uses
    (run / "checkpoints" / "last-1" / "last.safetensors").write_bytes(b"")
    (run / "checkpoints" / "last-1" / "last_state.json").write_text("{}")
    monkeypatch.setattr(Run, "load_model", lambda self, which="last", device="cpu": Model())
    return run


def predicted(folder: Path) -> list[np.ndarray]:
    index = ProbIndex(folder)
    return [index.load(i) for i in range(len(index))]


def test_case_s6_a_complete_store_with_a_truncated_map_is_read_and_mended(root, fake_run, capsys):
    assert cli(capsys, "predict", fake_run, "--data", root, "--split", "test")[0] == 0
    folder = next(paths.PROBS_DIR.glob("fake-run/*"))
    good = predicted(folder)
    damaged = folder / "00001.npz"
    damaged.write_bytes(damaged.read_bytes()[:500])
    with pytest.warns(UserWarning, match=f"made again, e.g. {damaged}"):
        code, out, err = cli(capsys, "predict", fake_run, "--data", root, "--split", "test")
    assert code == 0 and "wrote 3 probability maps" in out, err
    for a, b in zip(predicted(folder), good):
        np.testing.assert_array_equal(a, b)


def test_case_s6_a_resume_without_index_reads_every_map_it_keeps(root, fake_run, capsys):
    assert cli(capsys, "predict", fake_run, "--data", root, "--split", "test")[0] == 0
    folder = next(paths.PROBS_DIR.glob("fake-run/*"))
    good = predicted(folder)
    damaged = folder / "00002.npz"
    damaged.write_bytes(damaged.read_bytes()[:500])
    (folder / INDEX_FILE).unlink()
    with pytest.warns(UserWarning, match=f"made again, e.g. {damaged}"):
        assert cli(capsys, "predict", fake_run, "--data", root, "--split", "test")[0] == 0
    for a, b in zip(predicted(folder), good):
        np.testing.assert_array_equal(a, b)


@pytest.mark.integration
def test_case_s9_predict_submission_mends_a_damaged_map(root256, fake_run, capsys, tmp_path):
    csv = tmp_path / "sub.csv"
    assert cli(capsys, "predict", fake_run, "--data", root256, "--split", "test")[0] == 0
    damaged = next(paths.PROBS_DIR.glob("fake-run/*")) / "00000.npz"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=str(damaged)):
        code, out, err = cli(capsys, "predict", fake_run, "--data", root256, "--split", "test", "--submission", csv)
    assert code == 0 and out.strip().endswith(f"{csv}: OK"), err
    assert validate_submission(csv, root256 / "test.json") == []


@pytest.mark.parametrize("form", ["score one input", "soft vote", "hard vote", "crf", "submission of one input",
                                  "submission of a vote"])
def test_case_s9_a_damaged_map_is_one_line_naming_it_and_the_rebuild(root, root256, capsys, tmp_path, form):
    split = "test" if "submission" in form else "val"
    data = root256 if "submission" in form else root
    a = an_index(data, split, "a")
    b = an_index(data, split, "b", seed=1)
    damaged = a.path / a.items[0]["path"]
    damaged.write_bytes(damaged.read_bytes()[:-40])  # the end of a zip: its directory
    extra = {"score one input": [], "soft vote": [b.path], "hard vote": [b.path, "--vote", "hard"],
             "crf": ["--crf", "peers-c", "--workers", "1"],
             "submission of one input": ["--submission", tmp_path / "s.csv"],
             "submission of a vote": [b.path, "--submission", tmp_path / "s.csv"]}[form]
    if form == "crf":
        pytest.importorskip("pydensecrf.densecrf")
    err = one_line_error(*cli(capsys, "ensemble", a.path, *extra, "--data", data, "--split", split)[::2])
    assert str(damaged) in err and repr(a.file_names[0]) in err and "not a readable probability map" in err, err
    assert f"delete {a.path} and rerun the command that made it" in err


def test_case_s9_the_rebuild_command_of_a_runs_predictions_is_composed_from_its_settings(root, fake_run, capsys):
    assert cli(capsys, "predict", fake_run, "--data", root, "--split", "val", "--tta", "none", "--scales", "1",
               "1.5")[0] == 0
    folder = next(paths.PROBS_DIR.glob("fake-run/*"))
    (folder / "00000.npz").write_bytes(b"")
    err = one_line_error(*cli(capsys, "ensemble", folder, "--data", root, "--split", "val")[::2])
    assert (f"rebuild it with `python -m trashlib predict {fake_run} --data {root} --split val --tta none "
            "--scales 1 1.5 --force`") in err, err


# ---------------------------------------------------------------- s10, s11: text, objects, the wrong size

@pytest.mark.parametrize("content", ["text", "object array", "object name"])
def test_case_s10_a_map_holding_text_or_objects_is_named_and_never_asks_for_pickle(root, capsys, content):
    ix = an_index(root, "val")
    target = ix.path / ix.items[1]["path"]
    if content == "text":
        target.write_text("these are not probabilities\n")
    elif content == "object array":
        np.savez_compressed(target, probs=np.array([{"a": 1}, None], dtype=object),
                            file_name=np.array(ix.file_names[1]))
    else:
        np.savez_compressed(target, probs=np.zeros((11, 32, 32), np.uint8),
                            file_name=np.array([ix.file_names[1], None], dtype=object))
    err = one_line_error(*cli(capsys, "ensemble", ix.path, "--data", root, "--split", "val")[::2])
    assert str(target) in err and "pickle" not in err, err


@pytest.mark.parametrize("form", ["score", "soft vote", "crf"])
def test_case_s11_maps_of_another_size_than_the_images_name_the_map(root, capsys, form):
    small = {n: confident(np.zeros((8, 8), np.uint8), p=0.9) for n in TrashDataset(root, "val").file_names}
    a = write_index(paths.PROBS_DIR / "small" / "data_val", small, split="val", data_root=str(root))
    b = write_index(paths.PROBS_DIR / "small2" / "data_val", small, split="val", data_root=str(root))
    if form == "crf":
        pytest.importorskip("pydensecrf.densecrf")
    extra = {"score": [], "soft vote": [b.path], "crf": ["--crf", "peers-c", "--workers", "1"]}[form]
    err = one_line_error(*cli(capsys, "ensemble", a.path, *extra, "--data", root, "--split", "val")[::2])
    assert "(11, 8, 8)" in err and "32x32" in err and repr(a.file_names[0]) in err, err
    assert ".npz" in err and str(paths.PROBS_DIR) in err, err


def test_case_s11_a_submission_of_maps_of_another_size_names_the_map(root256, tmp_path):
    names = TrashDataset(root256, "test").file_names
    ix = write_index(paths.PROBS_DIR / "small" / "data_test", {n: confident(np.zeros((32, 32), np.uint8), p=0.9)
                                                                for n in names}, split="test")
    with pytest.raises(ValueError) as e:
        index_to_submission(ix, tmp_path / "s.csv")
    assert str(ix.path / ix.items[0]["path"]) in str(e.value) and "(11, 32, 32)" in str(e.value)
    assert not (tmp_path / "s.csv").exists()


# ---------------------------------------------------------------- fuzz: damage anything, never a wrong number

def _per_image_confusion(root: Path, maps: dict) -> dict:
    ds = TrashDataset(root, "val")
    return {n: confusion_matrix(maps[n].argmax(0), ds.load_mask(ds.file_names.index(n)), num_classes=11)
            for n in maps}


def _damage_maps(rng, folder: Path, names: list[str], other: Path) -> None:
    for _ in range(int(rng.integers(1, 3))):
        files = sorted(folder.glob("*.npz"))
        if not files:
            return
        f = files[int(rng.integers(len(files)))]
        data = bytearray(f.read_bytes())
        kind = rng.integers(6)
        if kind == 0:
            f.write_bytes(bytes(data[:int(rng.integers(len(data)))]))
        elif kind == 1:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
            f.write_bytes(bytes(data))
        elif kind == 2:
            swap(f, files[int(rng.integers(len(files)))])
        elif kind == 3:
            shutil.copyfile(other / f.name, f)  # the same image's map from another index
        elif kind == 4:
            f.unlink()
        else:
            f.write_bytes(rng.bytes(int(rng.integers(0, 300))))


JUNK = [None, True, -1, 0, 2.5, float("nan"), float("inf"), "", "x", "../00000.npz", "/etc/passwd.npz",
        "sub/00000.npz", "..", [], [11, 32], [11, 32, 32, 1], [11, -32, 32], [11, 32.0, 32], {}, "0" * 39, "g" * 40]


def _damage_index(rng, folder: Path) -> None:
    meta = json.loads((folder / INDEX_FILE).read_text())
    items = meta["items"]
    for _ in range(int(rng.integers(1, 3))):
        kind = rng.integers(7)
        if kind == 0:  # a key deleted, at the top or in an item
            target = meta if rng.random() < 0.3 else items[int(rng.integers(len(items)))]
            if target:
                target.pop(sorted(target)[int(rng.integers(len(target)))])
        elif kind == 1:  # a wrong value (type, length, non-finite, escaping path)
            target = meta if rng.random() < 0.2 else items[int(rng.integers(len(items)))]
            key = sorted(target)[int(rng.integers(len(target)))] if target else "x"
            target[key] = JUNK[int(rng.integers(len(JUNK)))]
        elif kind == 2:  # items reordered: still a right index
            rng.shuffle(items)
        elif kind == 3 and len(items) > 1:  # one field swapped between two items
            i, j = rng.choice(len(items), 2, replace=False)
            key = ["path", "file_name", "sha1", "shape", "image_id"][int(rng.integers(5))]
            if key in items[i] and key in items[j]:
                items[i][key], items[j][key] = items[j][key], items[i][key]
        elif kind == 4:  # an item dropped or repeated
            if rng.random() < 0.5 and items:
                items.pop(int(rng.integers(len(items))))
            elif items:
                items.append(dict(items[int(rng.integers(len(items)))]))
        elif kind == 5:
            meta["version"] = [1, 2, 4, "3", 3.0, None][int(rng.integers(6))]
        else:
            meta["dtype"] = ["float16", "float32", "object", None][int(rng.integers(4))]
    (folder / INDEX_FILE).write_text(json.dumps(meta))  # NaN and Infinity as Python's json writes them


def _harmless(rng, folder: Path) -> None:
    meta = json.loads((folder / INDEX_FILE).read_text())
    rng.shuffle(meta["items"])
    meta["items"][0]["image_id"] = [7, "x", -1][int(rng.integers(3))]
    meta["settings"] = [{}, {"split": "val"}, meta["settings"]][int(rng.integers(3))]
    (folder / INDEX_FILE).write_text(json.dumps(meta))


@pytest.mark.integration
def test_case_sfuzz_a_damaged_store_is_a_named_error_or_the_right_score(root, tmp_path):
    rng = np.random.default_rng(25)
    maps = noisy_maps(root, "val")
    pristine = write_index(tmp_path / "pristine", maps, split="val").path
    other = write_index(tmp_path / "other", noisy_maps(root, "val", seed=9), split="val").path
    per_image = _per_image_confusion(root, maps)
    (tmp_path / "fuzz").mkdir()
    (tmp_path / "fuzz" / "00000.npz").write_bytes((pristine / "00000.npz").read_bytes())  # bait for "../00000.npz"
    outcomes = {"error": 0, "score": 0}
    for trial in range(300):
        folder = tmp_path / "fuzz" / f"t{trial}"
        shutil.copytree(pristine, folder)
        what = rng.integers(4)
        if what in (0, 2):
            _damage_maps(rng, folder, list(maps), other)
        if what in (1, 2):
            _damage_index(rng, folder)
        if what == 3:  # what changes no score: items reordered, another image_id, other settings
            _harmless(rng, folder)
        subset = bool(rng.random() < 0.3)
        try:
            ev = evaluate_index(ProbIndex(folder), root, "val", **({"subset": True} if subset else {}))
        except (ValueError, FileNotFoundError) as e:
            assert str(folder) in str(e), (trial, e)
            outcomes["error"] += 1
            continue
        scored = ev.per_image["file_name"].tolist()
        assert subset or sorted(scored) == sorted(maps), trial
        np.testing.assert_array_equal(ev.confusion, sum(per_image[n] for n in scored), err_msg=f"trial {trial}")
        outcomes["score"] += 1
    assert outcomes["error"] > 150 and outcomes["score"] > 50, outcomes  # both outcomes were exercised


@pytest.mark.integration
def test_case_sfuzz_a_resume_keeps_only_maps_that_check_out_and_redoes_the_rest(root, tmp_path):
    rng = np.random.default_rng(6)
    maps = noisy_maps(root, "val")
    items = [{"image_id": i, "file_name": n, "shape": list(p.shape)} for i, (n, p) in enumerate(maps.items())]

    def store(folder, maps, settings):
        writer = ProbWriter(folder, items, settings)
        for i, p in enumerate(maps.values()):
            writer.write(i, p)
        return writer.close().path

    pristine = store(tmp_path / "pristine", maps, {"made": "fuzz"})
    other = store(tmp_path / "other", noisy_maps(root, "val", seed=9), {"made": "other"})  # same images
    expected = [ProbIndex(pristine).load(i) for i in range(len(maps))]
    redone = 0
    for trial in range(80):
        folder = tmp_path / "fuzz" / f"t{trial}"
        shutil.copytree(pristine, folder)
        _damage_maps(rng, folder, list(maps), other)
        if rng.random() < 0.5:
            (folder / INDEX_FILE).unlink()  # an interrupted writer: no checksums to go by
        elif rng.random() < 0.5:
            _damage_index(rng, folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            writer = ProbWriter(folder, items, {"made": "fuzz"})
        for i in writer.todo:
            writer.write(i, list(maps.values())[i])
        redone += len(writer.todo)
        index = writer.close()
        for i in range(len(maps)):
            np.testing.assert_array_equal(index.load(i), expected[i], err_msg=f"trial {trial}, map {i}")
    assert redone >= 80, redone
