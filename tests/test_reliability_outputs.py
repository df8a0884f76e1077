"""Issue 25: no output lands on an input, no val or test image in training, run names, and the smaller cases.

Each `test_case_<id>_...` drives one case of the issue through the public surface (the command line or the
library functions that build a run's data), and checks the refusal comes before any work.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import confident, make_tiny_dataset, write_index
from test_training import TinySeg, small_cfg

from trashlib.cli import main
from trashlib.config import TrainConfig
from trashlib.data import DatasetError, TrashDataset, build_train_dataset, write_label_maps
from trashlib.runs import Run


@pytest.fixture(autouse=True)
def _probs_store(tmp_path, monkeypatch):
    import trashlib.paths as paths

    monkeypatch.setattr(paths, "PROBS_DIR", tmp_path / "probs")


@pytest.fixture(scope="module")
def root256(tmp_path_factory) -> Path:
    """A tiny dataset of 256x256 images (the size a submission takes); copied before a test may harm it."""
    return make_tiny_dataset(tmp_path_factory.mktemp("out256") / "data", n_train=1, n_val=1, n_test=2, size=256)


@pytest.fixture
def data256(root256, tmp_path) -> Path:
    return Path(shutil.copytree(root256, tmp_path / "data"))


def _indices(root: Path, tmp_path: Path, n: int = 2) -> list[Path]:
    """n probability indices of the test split (random maps, no model)."""
    rng = np.random.default_rng(0)
    names = TrashDataset(root, "test").file_names
    size = TrashDataset(root, "test").image_infos[0]["height"]
    return [write_index(tmp_path / f"idx{k}", {n_: rng.dirichlet(np.ones(11), (size, size)).transpose(2, 0, 1)
                                               .astype(np.float32) for n_ in names},
                        split="test", data_root=str(root)).path for k in range(n)]


def _snapshot(*folders: Path) -> dict:
    """sha1 of every file under the folders: what must be unchanged byte for byte."""
    return {p: hashlib.sha1(p.read_bytes()).hexdigest() for f in folders for p in sorted(Path(f).rglob("*"))
            if p.is_file()}


def _one_line_error(capsys, *names) -> str:
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in out + err, err
    for name in names:
        assert str(name) in err, err
    return err


def _stored(tmp_path: Path) -> list[Path]:
    """What the ensemble or the predictions stored: nothing, when a check came first."""
    return sorted(p for p in (tmp_path / "probs").rglob("*") if p.is_file()) if (tmp_path / "probs").exists() else []


# ---------------------------------------------------------------- no output lands on an input

def test_case_o1_a_submission_onto_the_datasets_test_json_is_refused(data256, tmp_path, capsys):
    a, b = _indices(data256, tmp_path)
    before = _snapshot(data256, a, b)
    target = data256 / "test.json"
    rc = main(["ensemble", str(a), str(b), "--data", str(data256), "--split", "test", "--submission", str(target)])
    assert rc == 2 and "lies inside the input" in _one_line_error(capsys, target, data256)
    assert _snapshot(data256, a, b) == before and not _stored(tmp_path)


def test_case_o2_a_submission_onto_an_input_index_is_refused(data256, tmp_path, capsys):
    a, b = _indices(data256, tmp_path)
    before = _snapshot(data256, a, b)
    target = a / "index.json"
    rc = main(["ensemble", str(a), str(b), "--data", str(data256), "--split", "test", "--submission", str(target)])
    assert rc == 2 and "lies inside the input" in _one_line_error(capsys, target)
    assert _snapshot(data256, a, b) == before and not _stored(tmp_path)


@pytest.mark.parametrize("where", ["symlinked data root", "probability store", "another run folder",
                                   "another index"])
def test_case_o1_outputs_inside_protected_folders_are_refused(data256, tmp_path, capsys, where):
    import trashlib.paths as paths

    a, b = _indices(data256, tmp_path)
    if where == "symlinked data root":
        (tmp_path / "link").symlink_to(data256)
        target = tmp_path / "link" / "batch_01" / "sub.csv"
    elif where == "probability store":
        target = Path(paths.PROBS_DIR) / "sub.csv"
    elif where == "another run folder":
        run = tmp_path / "runs" / "other"
        run.mkdir(parents=True)
        for name in ("config.yaml", "environment.json"):
            (run / name).write_text("{}")
        target = run / "sub.csv"
    else:
        target = _indices(data256, tmp_path / "more", 1)[0] / "sub.csv"
    before = _snapshot(data256, a, b)
    rc = main(["ensemble", str(a), str(b), "--data", str(data256), "--split", "test", "--submission", str(target)])
    assert rc == 2
    _one_line_error(capsys, target)
    assert not target.exists() and _snapshot(data256, a, b) == before and not _stored(tmp_path)


def test_case_o1_predict_refuses_a_submission_inside_its_run_or_data(fake_run, data256, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr(Run, "load_model", refuse)
    for target in (fake_run / "sub.csv", data256 / "test.json"):
        before = _snapshot(fake_run, data256)
        assert main(["predict", str(fake_run), "--data", str(data256), "--submission", str(target)]) == 2
        _one_line_error(capsys, target)
        assert _snapshot(fake_run, data256) == before


def test_case_o_exist_an_existing_submission_needs_overwrite_output(data256, tmp_path, capsys):
    a, b = _indices(data256, tmp_path)
    csv = tmp_path / "out" / "sub.csv"
    csv.parent.mkdir()
    csv.write_text("mine, not a submission\n")
    argv = ["ensemble", str(a), str(b), "--data", str(data256), "--split", "test", "--submission", str(csv)]
    assert main(argv) == 2
    assert "--overwrite-output" in _one_line_error(capsys, csv)
    assert csv.read_text() == "mine, not a submission\n" and not _stored(tmp_path)  # refused before the vote
    assert main(argv + ["--overwrite-output"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{csv}: OK")


@pytest.mark.parametrize("command", ["predict", "ensemble"])
def test_case_o_exist_overwrite_output_is_documented(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--overwrite-output replace an existing --submission file" in out


def test_case_o1_report_out_inside_the_data_root_is_refused(tiny_root, capsys, monkeypatch):
    import trashlib.cli as cli

    def refuse(*args, **kwargs):
        raise AssertionError("the notebooks ran before --out was checked")

    monkeypatch.setattr(cli, "make_report", refuse)
    assert main(["report", "--data", str(tiny_root), "--out", str(tiny_root / "report"), "01"]) == 2
    assert "lies inside the input" in _one_line_error(capsys, tiny_root / "report")
    assert not (tiny_root / "report").exists()


# ---------------------------------------------------------------- the smaller ensemble cases

@pytest.mark.parametrize("k", ["3", "0"])
def test_case_o_k_overwrite_k_outside_the_inputs_is_refused_before_the_vote(tiny_root, tmp_path, capsys, k):
    a, b = _indices(tiny_root, tmp_path)
    rc = main(["ensemble", str(a), str(b), "--data", str(tiny_root), "--split", "test", "--overwrite", k])
    assert rc == 2 and "K must lie in 1..2" in _one_line_error(capsys, f"--overwrite {k}")
    assert not _stored(tmp_path)


def test_case_o_dup_the_same_index_twice_is_refused(tiny_root, tmp_path, capsys):
    a, b = _indices(tiny_root, tmp_path)
    copy = shutil.copytree(a, tmp_path / "copy-of-a")
    for argv in ([a, a], [a, tmp_path / "idx0" / ".." / "idx0"], [a, b, copy]):
        rc = main(["ensemble", *map(str, argv), "--data", str(tiny_root), "--split", "test"])
        assert rc == 2 and "two votes" in _one_line_error(capsys, argv[-1])
    assert not _stored(tmp_path)


def test_case_o_dup_a_run_beside_its_own_stored_predictions_is_refused(fake_run, tiny_root, tmp_path, capsys,
                                                                       monkeypatch):
    from test_inference import Pointwise

    from trashlib.predict.inference import TTA, predict

    monkeypatch.setattr(Run, "load_model", lambda self, which="last", device="cpu": Pointwise())
    stored = predict(fake_run, tiny_root, "test", tta=TTA(hflip=True), progress=False)  # what ensemble would reuse
    before = _stored(tmp_path)
    rc = main(["ensemble", str(fake_run), str(stored.path), "--data", str(tiny_root), "--split", "test"])
    assert rc == 2 and "holds the predictions of" in _one_line_error(capsys, stored.path, fake_run)
    assert _stored(tmp_path) == before  # no vote was stored


# ---------------------------------------------------------------- no val or test image in training

def _set_of(root: Path, split: str, folder: Path, *, names=None, as_arrays=False, labels=True):
    """A label-map set of a split's images (as their files, or as decoded arrays saved anew)."""
    ds = TrashDataset(root, "test_labels" if split == "test" else split)
    samples = []
    for i, name in enumerate(ds.file_names):
        image = ds.load_image(i) if as_arrays else root / name
        mask = ds.load_mask(i) if labels else np.full((ds.image_infos[i]["height"], ds.image_infos[i]["width"]),
                                                      255, np.uint8)
        samples.append((names[i] if names else name, image, mask))
    return write_label_maps(folder, samples)


def test_case_o7_val_images_under_their_own_names_are_refused_before_training(tiny_root, tmp_path):
    from trashlib.training import train

    leak = _set_of(tiny_root, "val", tmp_path / "leak")
    cfg = small_cfg(tiny_root, steps=2, eval_every=None, run_name="leaky", extra_train=(str(leak.root),))
    with pytest.raises(ValueError, match="is val image batch_01/0004.jpg of .*inflate the val score") as e:
        train(cfg, model=TinySeg(), progress=False)
    import trashlib.paths as paths

    assert str(leak.path) in str(e.value) and not (Path(paths.RUNS_DIR) / "leaky").exists()


def test_case_o7_a_leaking_set_is_refused_before_the_offline_pasted_set_is_written(tiny_root, tmp_path, monkeypatch):
    import trashlib.paths as paths
    from trashlib.training import train

    monkeypatch.setattr(paths, "INTERIM_DIR", tmp_path / "interim")
    leak = _set_of(tiny_root, "val", tmp_path / "leak")
    cfg = small_cfg(tiny_root, steps=2, eval_every=None, run_name="leaky-cp", extra_train=(str(leak.root),),
                    copy_paste="offline")
    with pytest.raises(ValueError, match="inflate the val score"):
        train(cfg, model=TinySeg(), progress=False)
    assert not list((tmp_path / "interim").glob("label-maps/copy-paste-*"))

@pytest.mark.parametrize("copy", ["renamed PNG of the pixels", "JPEG re-encode at quality 75", "half size"])
def test_case_o7_a_renamed_or_re_encoded_val_image_is_refused_by_its_pixels(root256, tmp_path, copy):
    val = TrashDataset(root256, "val")
    image, mask = val[0]
    if copy == "renamed PNG of the pixels":
        source = image
    else:
        source = tmp_path / "copy.jpg"
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if copy == "half size":
            bgr = cv2.resize(bgr, (128, 128), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (128, 128), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(source), bgr, [cv2.IMWRITE_JPEG_QUALITY, 75])
    train_ds = TrashDataset(root256, "train")
    leak = write_label_maps(tmp_path / "leak", [("mine-0.png", train_ds.load_image(0), train_ds.load_mask(0)),
                                                ("mine-1.png", source, mask)])
    with pytest.raises(ValueError, match=r"item 1 \(mine-1.png\) is val image batch_01/0001.jpg .*by its pixels"):
        build_train_dataset(TrainConfig(data_root=str(root256), extra_train=(str(leak.root),)))


def test_case_o7_test_images_with_labels_are_refused_but_pseudo_labels_are_not(tiny_copy, tmp_path):
    from trashlib.data.leakage import check_no_held_out
    from trashlib.pseudo.labels import PseudoRecipe, make_pseudo_labels

    labelled = _set_of(tiny_copy, "test", tmp_path / "test-labels")
    with pytest.raises(ValueError, match="is test image .*only as pseudo labels"):
        build_train_dataset(TrainConfig(data_root=str(tiny_copy), extra_train=(str(labelled.root),)))
    truth = TrashDataset(tiny_copy, "test_labels")
    teacher = write_index(tmp_path / "teacher", {n: confident(truth.load_mask(i), p=0.9)
                                                 for i, n in enumerate(truth.file_names)},
                          split="test", data_root=str(tiny_copy))
    pseudo = make_pseudo_labels(teacher, PseudoRecipe("hard"), out_dir=tmp_path / "pl")
    check_no_held_out(pseudo, tiny_copy)  # what notebook 06 calls
    both = build_train_dataset(TrainConfig(data_root=str(tiny_copy), extra_train=(str(pseudo.root),)))
    assert len(both) == 4 + 2


def test_case_o7_a_train_split_holding_val_images_is_refused_and_pasted_from_train_only(tiny_root):
    from trashlib.data.pasted import materialise_pasted, pasted_folder

    cfg = TrainConfig(data_root=str(tiny_root), train_split="train_all", val_split="val")
    with pytest.raises(ValueError, match=r"train_all.json: holds 2 image\(s\) of the val split"):
        build_train_dataset(cfg)
    offline = cfg.replace(copy_paste="offline")
    with pytest.raises(ValueError, match="holds 2 image"):
        materialise_pasted(offline)
    assert not pasted_folder(offline).exists()  # refused before a pasted image was written
    assert len(build_train_dataset(cfg.replace(val_split=None))) == 6  # everything, without validation


# ---------------------------------------------------------------- label maps checked up front

def _with_bad_map(root: Path, folder: Path, fault: str):
    ds = TrashDataset(root, "train")
    made = write_label_maps(folder, [(f"mine-{i}.png", ds.load_image(i), ds.load_mask(i)) for i in range(3)])
    mask = folder / made.items[2]["mask"]
    if fault == "value 42":
        bad = ds.load_mask(2).copy()
        bad[5, 5] = 42
        cv2.imwrite(str(mask), bad)
    elif fault == "wrong size":
        cv2.imwrite(str(mask), np.zeros((32, 48), np.uint8))
    elif fault == "three channels":
        cv2.imwrite(str(mask), np.zeros((64, 64, 3), np.uint8))
    elif fault == "not an image":
        mask.write_bytes(b"garbage, not a PNG")
    elif fault == "missing":
        mask.unlink()
    return made


@pytest.mark.parametrize("fault, match", [("value 42", "value 42"), ("wrong size", "label map is 48x32, its image"),
                                          ("three channels", "single-channel"), ("not an image", "not an image"),
                                          ("missing", "missing")])
def test_case_o_maps_a_bad_label_map_is_refused_before_training(tiny_root, tmp_path, fault, match):
    made = _with_bad_map(tiny_root, tmp_path / "set", fault)
    with pytest.raises(DatasetError, match=match) as e:
        build_train_dataset(TrainConfig(data_root=str(tiny_root), extra_train=(str(made.root),)))
    assert str(made.path) in str(e.value) and "item 2 (mine-2.png)" in str(e.value)


def test_label_maps_are_checked_once_per_content(tiny_root, tmp_path, monkeypatch):
    import trashlib.data.labelmaps as labelmaps

    made = _with_bad_map(tiny_root, tmp_path / "set", "none")
    cfg = TrainConfig(data_root=str(tiny_root), extra_train=(str(made.root),))
    build_train_dataset(cfg)
    reads = []
    real = labelmaps.read_label_map
    monkeypatch.setattr(labelmaps, "read_label_map", lambda *a, **k: reads.append(a) or real(*a, **k))
    build_train_dataset(cfg)
    assert reads == []  # remembered
    bad = made.load_mask(1).copy()
    bad[0, 0] = 99
    cv2.imwrite(str(made.root / made.items[1]["mask"]), bad)
    os.utime(made.root / made.items[1]["mask"], ns=(1, 1))  # a changed file, whatever the clock's resolution
    with pytest.raises(DatasetError, match="value 99"):
        build_train_dataset(cfg)


# ---------------------------------------------------------------- run names and numbers

NAMES = {"escape": "../escape", "dot": ".", "dot-dot": "..", "slash": "a/b", "300 characters": "x" * 300,
         "empty": "", "NUL": "a\x00b", "backslash": "a\\b", "newline": "a\nb"}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_case_o8_run_names_are_one_path_component(tiny_root, tmp_path, capsys, name):
    out = tmp_path / "runs"
    out.mkdir()
    rc = main(["train", "--model", "segformer", "--data", str(tiny_root), "--steps", "1", "--batch-size", "1",
               "--image-size", "64", "--val-split", "none", "--num-workers", "0", "--no-progress",
               "--out", str(out), "--run-name", name])
    assert rc == 2 and "run_name: a run name must" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"] and not any(out.iterdir())


def test_run_names_may_be_unicode(tmp_path):
    from trashlib.runs import run_dir_for

    cfg = TrainConfig(run_name="läuft-ゴミ_1", out_dir=str(tmp_path / "runs"))
    assert run_dir_for(cfg) == tmp_path / "runs" / "läuft-ゴミ_1"
    with pytest.raises(ValueError, match="fit a file name"):
        run_dir_for(cfg.replace(run_name="ゴミ" * 90))  # 180 characters, 540 bytes


def test_case_o8_a_run_folder_inside_the_data_root_is_refused(tiny_copy):
    from trashlib.training import train

    cfg = small_cfg(tiny_copy, steps=2, eval_every=None, run_name="inside", out_dir=str(tiny_copy))
    with pytest.raises(ValueError, match="the run folder .*inside the input"):
        train(cfg, model=TinySeg(), progress=False)
    assert not (tiny_copy / "inside").exists()


FLOATS = [("--lr", "nan"), ("--lr", "inf"), ("--lr", "-1e-4"), ("--weight-decay", "nan"), ("--cp-prob", "inf"),
          ("--grad-clip", "-inf"), ("--cdb-tau", "nan"), ("--poly-power", "inf"), ("--hflip", "nan")]


@pytest.mark.parametrize("option, value", FLOATS, ids=[f"{o}={v}" for o, v in FLOATS])
def test_non_finite_or_negative_numbers_are_refused_as_on_d9e3664(tiny_root, tmp_path, capsys, option, value):
    extra = ["--copy-paste", "online"] if option.startswith("--cp") else []
    rc = main(["train", "--model", "segformer", "--data", str(tiny_root), "--steps", "1", "--out",
               str(tmp_path / "runs"), "--no-progress", f"{option}={value}", *extra])
    err = _one_line_error(capsys, option.lstrip("-").replace("-", "_"))
    assert rc == 2 and ("finite" in err or "> 0" in err) and not (tmp_path / "runs").exists()


CP = [["--cp-prob", "0.9"], ["--copy-paste", "none", "--cp-donors", "inverse"], ["--cp-copies", "3", "--cp-scale", "1", "2"]]


@pytest.mark.parametrize("options", CP, ids=[" ".join(o) for o in CP])
def test_case_o_cp_copy_paste_options_without_copy_paste_are_refused(tiny_root, tmp_path, capsys, options):
    rc = main(["train", "--model", "segformer", "--data", str(tiny_root), "--steps", "1", "--batch-size", "1",
               "--image-size", "64", "--val-split", "none", "--num-workers", "0", "--no-progress",
               "--out", str(tmp_path / "runs"), *options])
    err = _one_line_error(capsys, *[o for o in options if o.startswith("--cp")])
    assert rc == 2 and "copy_paste none" in err and not (tmp_path / "runs").exists()


def test_a_branch_may_keep_its_trunks_recipe_with_copy_paste_none(tmp_path):
    """A branch that stops pasting inherits the trunk's cp_* fields (the cpu profile's branches): allowed."""
    from trashlib.config import config_from_arguments
    from trashlib.cli import build_parser

    yaml = tmp_path / "branch.yaml"
    yaml.write_text("copy_paste: none\ncp_donors: classes\ncp_classes: [Metal]\n")
    args = build_parser().parse_args(["train", "--config", str(yaml), "--steps", "5"])
    assert config_from_arguments(args, yaml_path=yaml).cp_classes == ("Metal",)


# ---------------------------------------------------------------- a killed writer's temporary folder

WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from trashlib.data.labelmaps import write_label_maps

    def samples():
        yield "a.png", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
        print("writing", flush=True)
        time.sleep(60)
        yield "b.png", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)

    write_label_maps(sys.argv[1], samples())
""")


def test_case_o_tmp_a_killed_writers_temporary_folder_is_removed_by_the_rerun(tiny_root, tmp_path):
    from trashlib.data.pasted import materialise_pasted, pasted_folder

    cfg = TrainConfig(data_root=str(tiny_root), copy_paste="offline", val_split=None)
    folder = pasted_folder(cfg)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout.readline() == "writing\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    left = list(folder.parent.glob(f".{folder.name}.*.tmp"))
    assert len(left) == 1 and not folder.exists()
    # beside it: a live writer's temporary folder (this process) and things the project did not make
    live = folder.parent / re.sub(r"-\d+\.[a-z0-9_]{8}\.tmp$", f"-{os.getpid()}.abcd1234.tmp", left[0].name)
    live.mkdir()
    foreign = [folder.parent / f".{folder.name}.notes.tmp", folder.parent / f".{folder.name}.otherhost-1.abcd1234.tmp"]
    for p in foreign:
        p.mkdir()
    made = materialise_pasted(cfg)
    assert len(made) == 4 and not left[0].exists()
    assert live.is_dir() and all(p.is_dir() for p in foreign)


def test_a_runs_folder_moved_under_data_interim_is_an_output_not_an_input(tmp_path, monkeypatch):
    import trashlib.paths as paths
    from trashlib.io import check_output_place
    monkeypatch.setattr(paths, "INTERIM_DIR", tmp_path / "data" / "interim")
    monkeypatch.setattr(paths, "PROBS_DIR", tmp_path / "data" / "interim" / "probs")
    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "data" / "interim" / "nbval" / "runs")
    check_output_place(paths.RUNS_DIR / "a-run", what="the run folder")
    with pytest.raises(ValueError, match="lies inside the project's"):
        check_output_place(tmp_path / "data" / "interim" / "nbval" / "other", what="x")
    with pytest.raises(ValueError, match="lies inside the project's"):
        check_output_place(paths.PROBS_DIR / "x.csv", what="x")
