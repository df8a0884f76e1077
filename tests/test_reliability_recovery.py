"""Issue 25's last cases: kills during a branch run and a report, damaged profiles and metrics files, a 1e9
polygon coordinate, truncated JPEGs, and `data synth --overwrite` into a folder holding someone else's files."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from test_training import TinySeg, _without_time, small_cfg

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def one_thread():
    """One torch thread, as in the killed subprocess: the same sums in the same order, so the same weights."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _child_env(tmp_path: Path) -> dict:
    return {**os.environ, "TRASHLIB_HOME": str(tmp_path / "home"), "PYTHONPATH": str(TESTS.parent)}


def _weights(run) -> dict:
    from trashlib.runs.checkpoint import load_weights

    return load_weights(run.checkpoint("last"), prefix="model/")


# -- r-kill-branch: kill -9 during a branch run, then resume -------------------------------------------
BRANCH_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
import trashlib.runs.checkpoint as checkpoint
from test_training import TinySeg, small_cfg
from trashlib.training import train

real = checkpoint.write_json
def hangs_in_step_4(path, obj, **kw):  # the kill lands here: last-4.tmp/ holds the weights, not the state
    if obj.get("step") == 4:
        print("killme", flush=True)
        time.sleep(120)
    return real(path, obj, **kw)
checkpoint.write_json = hangs_in_step_4
root, out = sys.argv[1:3]
cfg = small_cfg(root, steps=6, eval_every=3, save_every=1, class_weighting="cdb", init_from="trunk", out_dir=out,
                run_name="cut", resume=True)
torch.manual_seed(0)
train(cfg, model=TinySeg(), progress=False)
"""


@pytest.mark.integration
def test_case_r_kill_branch_kill_9_while_a_checkpoint_is_written_then_resume_is_exact(tiny_root, tmp_path, one_thread):
    from trashlib.runs.checkpoint import last_checkpoint
    from trashlib.runs import Run
    from trashlib.training import train

    out = tmp_path / "runs"
    torch.manual_seed(0)
    train(small_cfg(tiny_root, steps=4, eval_every=None, out_dir=str(out), run_name="trunk"), model=TinySeg(),
          progress=False)
    branch = small_cfg(tiny_root, steps=6, eval_every=3, save_every=1, class_weighting="cdb", init_from="trunk",
                       out_dir=str(out))
    torch.manual_seed(0)
    straight = train(branch.replace(run_name="straight"), model=TinySeg(), progress=False)

    script = tmp_path / "branch.py"
    script.write_text(BRANCH_CHILD.format(tests=str(TESTS)))
    child = subprocess.Popen([sys.executable, str(script), str(tiny_root), str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_child_env(tmp_path))
    try:
        said = next((line for line in child.stdout if line.startswith("killme")), None)
        assert said, child.stderr.read()[-2000:]
    finally:
        child.kill()
        child.communicate(timeout=60)
    assert child.returncode == -9
    ckpt = out / "cut" / "checkpoints"
    assert last_checkpoint(ckpt) == ckpt / "last-3"  # the half-written step 4 does not count
    assert (ckpt / "last-4.tmp").is_dir() and not (out / "cut" / "finished.json").exists()

    torch.manual_seed(123)  # the resumed run must not depend on the caller's RNG
    resumed = train(branch.replace(run_name="cut", resume=True), model=TinySeg(), progress=False)
    assert resumed.finished and resumed.path == out / "cut"
    assert _without_time(resumed.metrics()) == _without_time(straight.metrics())
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in resumed.path.rglob("*") if p.name.endswith(".tmp")] == []
    assert Run(out / "cut").config.init_from == "trunk"


def test_case_r_kill_branch_resume_and_reuse_refuse_a_trunk_trained_again(tiny_root, tmp_path, capsys):
    from trashlib.training import train

    out = tmp_path / "runs"
    trunk_cfg = small_cfg(tiny_root, steps=3, eval_every=None, out_dir=str(out), run_name="trunk")
    torch.manual_seed(0)
    train(trunk_cfg, model=TinySeg(), progress=False)
    branch = small_cfg(tiny_root, steps=4, eval_every=None, save_every=1, init_from="trunk", out_dir=str(out),
                       run_name="arm")
    cut = train(branch, model=TinySeg(), stop_after=2, progress=False)  # interrupted after step 2
    torch.manual_seed(1)
    train(trunk_cfg, model=TinySeg(), force=True, progress=False)  # the trunk is trained again
    with pytest.raises(ValueError, match=r"cannot resume arm: its trunk trunk was trained again.*--restart"):
        train(branch.replace(resume=True), model=TinySeg(), progress=False)
    assert cut.checkpoint("last").parent.name == "last-2"  # refused, not wiped
    done = train(branch.replace(restart=True), model=TinySeg(), progress=False)
    assert done.finished
    capsys.readouterr()
    assert train(branch, model=TinySeg(), progress=False).path == done.path  # same trunk: reused
    assert "reusing finished run" in capsys.readouterr().out
    finished = (done.path / "finished.json").read_bytes()
    torch.manual_seed(2)
    train(trunk_cfg, model=TinySeg(), force=True, progress=False)
    again = train(branch, model=TinySeg(), progress=False)  # a finished branch of the old trunk: trained anew
    assert "its trunk trunk was trained again since this branch finished" in capsys.readouterr().out
    assert again.finished and (again.path / "finished.json").read_bytes() != finished


# -- r-profile: report profiles with typos or wrong types ---------------------------------------------
NB2, NB4, NB5, NB6 = "02_baseline_mask2former", "04_copy_paste", "05_crf_ensemble", "06_pseudo_label"
PROFILES = {
    "typo-top-level": ("trainning:\n  steps: 12\n", ["'trainning'", "did you mean 'training'"]),
    "typo-budget": ("training:\n  stpes: 12\n", ["'stpes'", "did you mean 'steps'"]),
    "typo-branch": ("branch:\n  lrr: 0.1\n", ["branch", "'lrr'", "did you mean 'lr'"]),
    "typo-parameter": (f"notebooks:\n  {NB2}:\n    val_max_imgs: 8\n", [f"notebooks.{NB2}.val_max_imgs",
                                                                        "did you mean 'val_max_images'"]),
    "typo-default": ("defaults:\n  data_rot: null\n", ["defaults.data_rot", "did you mean 'data_root'"]),
    "typo-notebook": (f"notebooks:\n  02_baseline_mask2fromer:\n    val_max_images: 8\n",
                      ["02_baseline_mask2fromer matches no notebook", f"did you mean '{NB2}'"]),
    "typo-tta-field": (f"notebooks:\n  {NB6}:\n    tta: {{hflp: false}}\n", [f"notebooks.{NB6}.tta.hflp",
                                                                             "did you mean 'hflip'"]),
    "typo-variant-field": (f"notebooks:\n  {NB4}:\n    variants:\n      mine: {{copy_paste: online, cp_donrs: x}}\n",
                           [f"notebooks.{NB4}.variants.mine", "'cp_donrs'", "did you mean 'cp_donors'"]),
    "text-for-integer": (f"notebooks:\n  {NB2}:\n    val_max_images: '8'\n", [f"notebooks.{NB2}.val_max_images",
                                                                           "must be an integer", "'8'"]),
    "list-for-number": ("training:\n  lr: [0.1, 0.2]\n", ["training.lr must be a number", "[0.1, 0.2]"]),
    "list-for-parameter": (f"notebooks:\n  {NB6}:\n    threshold: [0.9]\n", [f"notebooks.{NB6}.threshold",
                                                                            "must be a number"]),
    "null-for-integer": (f"notebooks:\n  {NB5}:\n    members: null\n", [f"notebooks.{NB5}.members", "null"]),
    "nan-parameter": (f"notebooks:\n  {NB6}:\n    keep: .nan\n", [f"notebooks.{NB6}.keep", "NaN"]),
    "nan-in-a-list": ("training:\n  scale_range: [0.5, .nan]\n", ["training.scale_range", "finite numbers"]),
    "bool-for-integer": ("training:\n  steps: true\n", ["training.steps must be an integer", "True"]),
    "yaml-no-for-text": ("training:\n  mixed_precision: no\n", ["training.mixed_precision must be text",
                                                                 "quote the word"]),
    "number-for-a-folder": ("defaults:\n  data_root: 5\n", ["defaults.data_root must be a folder"]),
    "text-description": ("description: [a, b]\n", ["description must be text"]),
    "key-given-twice": ("training:\n  steps: 12\ntraining:\n  steps: 13\n", ["the key 'training' is given twice",
                                                                            "line 3"]),
    "empty-file": ("", ["is empty"]),
    "not-utf8": (b"\xff\xfe training", ["not UTF-8 text"]),
    # these held before; kept so they stay held
    "invalid-yaml": ("training: [steps: 3\n", ["invalid YAML"]),
    "not-a-mapping": ("- a\n- b\n", ["the profile must be a mapping"]),
    "nan-budget": ("training:\n  lr: .nan\n", ["lr must be a finite number"]),
}


@pytest.mark.parametrize("case", list(PROFILES))
def test_case_r_profile_is_refused_naming_file_and_key_before_any_notebook_runs(tmp_path, monkeypatch, capsys, case):
    from trashlib.cli import main
    from trashlib.reporting import runner

    text, words = PROFILES[case]
    path = tmp_path / "mine.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    ran = []
    monkeypatch.setattr(runner, "run_notebook", lambda nb, *a, **k: ran.append(nb) or pytest.fail(f"{nb} ran"))
    assert main(["report", "--profile", str(path), "--out", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert ran == []


def test_case_r_profile_missing_file_and_notebook_typo_on_the_command_line(tmp_path, capsys):
    from trashlib.cli import main

    assert main(["report", "--profile", str(tmp_path / "nope.yaml")]) == 2
    assert str(tmp_path / "nope.yaml") in capsys.readouterr().err
    assert main(["report", "--profile", "smoke", "--out", str(tmp_path / "r"), "02_baseline_mask2fromer"]) == 2
    assert "did you mean '02_baseline_mask2former'" in capsys.readouterr().err


# -- r-metrics: a damaged reports/metrics/*.json before the wrap-up page --------------------------------
def _good_metrics() -> dict:
    """The wrap-up fixture's records as their files hold them (schema and version first)."""
    from test_wrapup import METRICS, records

    return {nb: json.loads(json.dumps(r.file_dict())) for nb, r in records(METRICS).items()}


DAMAGES = {  # notebook, how its file is damaged, a number of it that must not appear on the page
    "truncated": ("04_copy_paste", lambda text, m: text[: len(text) // 2], None),
    "empty": ("05_crf_ensemble", lambda text, m: "", None),
    "invalid-json": ("07_submission", lambda text, m: "{not json", None),
    "nan": ("07_submission", lambda text, m: json.dumps({**m, "val_mIoU": float("nan")}), "0.290"),
    "text-for-a-number": ("07_submission", lambda text, m: json.dumps({**m, "test_mIoU": "0.95"}), "0.95"),
    "out-of-range": ("02_baseline_mask2former", lambda text, m: json.dumps({**m, "val_mIoU_mean": 30.0}), "30.0"),
    "negative-spread": ("02_baseline_mask2former", lambda text, m: json.dumps({**m, "val_mIoU_std": -0.5}), "0.500"),
    "seeds-as-text": ("04_copy_paste", lambda text, m: json.dumps({**m, "variants": {
        k: {**v, "seeds": "abc"} for k, v in m["variants"].items()}}), "0.305"),
    "stages-not-a-list": ("05_crf_ensemble", lambda text, m: json.dumps({"stages": "abc"}), None),
    "not-an-object": ("02_baseline_mask2former", lambda text, m: "[1, 2]", None),
    "older-version": ("07_submission", lambda text, m: json.dumps({**m, "version": 0}), "0.290"),
    "no-version": ("07_submission", lambda text, m: json.dumps({k: v for k, v in m.items() if k != "version"}),
                   "0.290"),
    "unknown-key": ("02_baseline_mask2former", lambda text, m: json.dumps({**m, "val_miou_mean": 0.9}), None),
}


@pytest.mark.parametrize("case", list(DAMAGES))
@pytest.mark.integration
def test_case_r_metrics_a_damaged_file_is_named_and_its_sections_marked_unreadable(tmp_path, monkeypatch, capsys,
                                                                                  case):
    """The page is still built (one damaged file must not hide the rest of an hour's report), its sections of
    that notebook say "unreadable" and show none of its numbers, and a note names the file and the fault."""
    from trashlib import paths
    from trashlib.cli import main
    from trashlib.reporting import runner

    reports = tmp_path / "reports"
    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "runs")
    notebook, damage, hidden = DAMAGES[case]
    good = _good_metrics()
    (reports / "metrics").mkdir(parents=True)
    for nb, m in good.items():
        (reports / "metrics" / f"{nb}.json").write_text(json.dumps(m, indent=2))
    path = reports / "metrics" / f"{notebook}.json"
    path.write_text(damage(path.read_text(), good[notebook]))
    monkeypatch.setattr(runner, "run_notebook", lambda nb, params, *, out_dir: {
        "notebook": nb.stem, "title": nb.stem, "status": "ok", "error": None, "seconds": 1.0, "parameters": params})
    assert main(["report", "--profile", "smoke", "--out", str(reports), "01_EDA"]) == 0
    out = capsys.readouterr().out
    page = (reports / "index.html").read_text()
    assert "Traceback" not in page and f"{notebook}.json" in page
    assert "unreadable" in page
    assert f"unreadable: {path}" in out
    stage_table = page[page.index('id="waterfall"'):page.index('id="winners-table"')]
    if notebook != "07_submission":
        assert "unreadable" in stage_table
    else:  # what was submitted is unknown: the summary shows no stand-in number
        summary = page[page.index('id="summary"'):page.index('id="waterfall"')]
        assert summary.count("unreadable (metrics/07_submission.json") == 2 and "0.352" not in summary
    if hidden is not None:  # nowhere but in the fault's quote of the bad value
        assert hidden not in re.sub(r"got [^<]*", "", page)


def test_case_r_metrics_load_metrics_names_the_damaged_file(tmp_path, monkeypatch):
    from trashlib import paths
    from trashlib.reporting import store

    monkeypatch.setattr(paths, "REPORTS_DIR", tmp_path)
    (tmp_path / "metrics").mkdir()
    path = tmp_path / "metrics" / "05_crf_ensemble.json"
    head = '"schema": "05_crf_ensemble", "version": 1'
    for text, fault in (('{"stages": [', "invalid JSON"),
                        ('{%s, "stages": [{"name": "a", "val_mIoU": NaN}]}' % head, r"stages\[0\]\.val_mIoU"),
                        ('{"stages": []}', "no schema version"),
                        ('{%s, "stages": [], "stagez": 1}' % head, "stagez: not a key of StagesRecord")):
        path.write_text(text)
        with pytest.raises(ValueError, match=f"{path}: {fault}"):
            store.load_metrics("05_crf_ensemble")


@pytest.mark.integration
def test_case_r_metrics_a_damaged_runs_record_file_is_dropped_not_a_traceback(tmp_path, monkeypatch, capsys):
    from trashlib.cli import main
    from trashlib.reporting import runner

    reports = tmp_path / "reports"
    (reports / "metrics").mkdir(parents=True)
    monkeypatch.setattr(runner, "run_notebook", lambda nb, params, *, out_dir: {
        "notebook": nb.stem, "title": nb.stem, "status": "ok", "error": None, "seconds": 1.0, "parameters": params})
    for text in ("{trunc", '[{"x": 1}]', '[{"notebook": "02_baseline_mask2former", "status": "ok", "seconds": "1"}]'):
        (reports / "metrics" / "_runs.json").write_text(text)
        assert main(["report", "--profile", "smoke", "--out", str(reports), "01_EDA"]) == 0, capsys.readouterr().err
        assert "_runs.json" in capsys.readouterr().out and (reports / "index.html").exists()


# -- r-kill-report: kill -9 in the middle of `report`, then rerun -----------------------------------
REPORT_CHILD = """
import json, sys, time
import papermill

def half_written(input_path, output_path, **kw):  # papermill writes its output as the cells run
    text = open(input_path, encoding="utf-8").read()
    open(output_path, "w", encoding="utf-8").write(text[: len(text) // 2])
    print("killme", flush=True)
    time.sleep(120)

papermill.execute_notebook = half_written

from trashlib.reporting import runner
runner.make_report("smoke", ["01_EDA"], out_dir=sys.argv[1])
"""


def _ran(input_path, output_path, **kw):
    """papermill's stand-in: the notebook, as run, at the output path."""
    Path(output_path).write_text(Path(input_path).read_text(encoding="utf-8"), encoding="utf-8")


@pytest.mark.integration
def test_case_r_kill_report_kill_9_mid_notebook_then_rerun_completes_and_cleans_up(tmp_path, monkeypatch, capsys):
    import papermill

    from trashlib.reporting import runner

    reports = tmp_path / "reports"
    stale = reports / "metrics" / ".01_EDA.json.k2j9x0q7.tmp"  # an atomic write a kill cut, long ago
    young = reports / "metrics" / ".02_baseline_mask2former.json.a1b2c3d4.tmp"  # one being written right now
    theirs = reports / ".notes.txt.k2j9x0q7.tmp"  # not a name the report writes: not its to delete
    for p in (stale, young, theirs):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{")
    for p in (stale, theirs):
        os.utime(p, (time.time() - 3600,) * 2)
    script = tmp_path / "report_child.py"
    script.write_text(REPORT_CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(reports)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_child_env(tmp_path))
    monkeypatch.setattr(papermill, "execute_notebook", _ran)
    try:
        said = next((line for line in child.stdout if line.startswith("killme")), None)
        assert said, child.stderr.read()[-3000:]
        # a second report into the same folder meanwhile is refused: both would write the same files
        with pytest.raises(FileExistsError, match=f"{reports}: another report is running into this folder"):
            runner.make_report("smoke", ["07_submission"], out_dir=reports)
    finally:
        child.kill()
        child.communicate(timeout=60)
    assert child.returncode == -9
    assert (reports / ".01_EDA.running.ipynb").exists()
    assert not (reports / "01_EDA.ipynb").exists() and not (reports / "01_EDA.html").exists()

    records = runner.make_report("smoke", ["07_submission"], out_dir=reports)  # the rerun
    assert [r["status"] for r in records] == ["ok"]
    assert "removed .01_EDA.running.ipynb, left by an interrupted report" in capsys.readouterr().out
    assert not (reports / ".01_EDA.running.ipynb").exists() and not stale.exists()
    assert young.exists() and theirs.exists()
    page = (reports / "index.html").read_text()
    assert "07_submission.html" in page and 'href="01_EDA.html"' not in page  # 01 is not taken as done


# -- r-poly: a 1e9 polygon coordinate -------------------------------------------------------------------
@pytest.mark.parametrize("split", ["train", "val", "test_labels", "test"])
def test_case_r_poly_a_1e9_coordinate_is_an_error_naming_file_annotation_and_image(tiny_copy, split, capsys):
    from trashlib.cli import main
    from trashlib.data import DatasetError, TrashDataset

    source = json.loads((tiny_copy / f"{'test_labels' if split == 'test' else split}.json").read_text())
    data = json.loads((tiny_copy / f"{split}.json").read_text())  # test.json: images only, given the annotations
    ann = {**source["annotations"][0], "segmentation": [[0, 0, 1e9, 0, 1e9, 1e9]]}
    data["annotations"] = [ann] + source["annotations"][1:]
    (tiny_copy / f"{split}.json").write_text(json.dumps(data))
    item = f"annotation {ann['id']}"
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=f"{split}.json: {item}: polygon 0 has coordinates far outside"):
        TrashDataset(tiny_copy, split)
    assert main(["data", "check", str(tiny_copy)]) == 1
    out = capsys.readouterr().out
    assert f"{split}.json: {item}: polygon 0 has coordinates far outside the 64x64 image" in out
    assert f"[image {ann['image_id']}]" in out and time.perf_counter() - start < 10


# -- r-jpeg: a truncated JPEG ---------------------------------------------------------------------------
def test_case_r_jpeg_a_truncated_jpeg_is_an_error_naming_it_when_read_and_in_check(tiny_copy, capsys):
    from trashlib.cli import main
    from trashlib.data import DatasetError, TrashDataset

    image = tiny_copy / "batch_01" / "0000.jpg"
    whole = image.read_bytes()
    for cut in (whole[: len(whole) // 2], whole[:-2], whole[:300]):
        image.write_bytes(cut)
        with pytest.raises(DatasetError, match=f"train.json: image 0: image file {image} is truncated"):
            TrashDataset(tiny_copy, "train")[0]
        assert main(["data", "check", str(tiny_copy)]) == 1
        assert "image 0: image file batch_01/0000.jpg is truncated" in capsys.readouterr().out


def test_case_r_jpeg_a_whole_jpeg_with_trailing_bytes_is_read_not_called_truncated(tiny_copy, capsys):
    """Phones append data after the end-of-image marker (maker notes, a motion photo's video): the photo is whole."""
    import cv2

    from trashlib.cli import main
    from trashlib.data import TrashDataset

    image = tiny_copy / "batch_01" / "0000.jpg"
    whole = image.read_bytes()
    expected = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
    image.write_bytes(whole + b"MotionPhoto_Data" + bytes(range(256)) * 4)
    got, _ = TrashDataset(tiny_copy, "train")[0]
    np.testing.assert_array_equal(got, expected)
    assert main(["data", "check", str(tiny_copy)]) == 0, capsys.readouterr().out
    # a thumbnail's end marker in the headers does not make a truncated photo whole
    thumb = b"\xff\xe1" + (2 + 6).to_bytes(2, "big") + b"\xff\xd8ab\xff\xd9"  # APP1 holding FF D8 .. FF D9
    image.write_bytes(whole[:2] + thumb + whole[2: len(whole) // 2])
    assert main(["data", "check", str(tiny_copy)]) == 1
    assert "batch_01/0000.jpg is truncated" in capsys.readouterr().out


# -- r-synth: `data synth --overwrite` into a folder holding unrelated files --------------------------------
def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_case_r_synth_overwrite_refuses_a_folder_of_unrelated_files_naming_one(tmp_path, capsys):
    from trashlib.cli import main

    theirs = tmp_path / "theirs"
    (theirs / "photos").mkdir(parents=True)
    (theirs / "photos" / "holiday.jpg").write_bytes(b"my photo")
    (theirs / "thesis.tex").write_text("chapter 1")
    before = _tree(theirs)
    assert main(["data", "synth", "--out", str(theirs), "--overwrite", "--n-train", "1", "--n-val", "1",
                 "--n-test", "1", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"error: {theirs} already holds files not made by trashlib" in err
    assert "photos" in err and "thesis.tex" in err and "nothing is deleted" in err
    assert _tree(theirs) == before and sorted(p.name for p in tmp_path.iterdir()) == ["theirs"]


def test_case_r_synth_overwrite_keeps_a_photo_saved_under_a_generated_looking_name(tmp_path):
    """A trashlib dataset of 3 images with someone's photo saved as batch_01_vt/0999.jpg: the generator never
    wrote that name, so --overwrite must not delete it."""
    from trashlib.synth import generate_dataset
    from trashlib.synth.generate import DatasetExistsError

    kw = dict(n_train=1, n_val=1, n_test=1, image_size=128, workers=1)
    out = generate_dataset(tmp_path / "d", **kw)
    mine = out / "batch_01_vt" / "0999.jpg"
    mine.write_bytes(b"someone's photo")
    with pytest.raises(DatasetExistsError, match=r"files trashlib did not write \(batch_01_vt/0999\.jpg\)"):
        generate_dataset(out, seed=4, overwrite=True, **kw)
    assert mine.read_bytes() == b"someone's photo"
    mine.unlink()
    generate_dataset(out, seed=4, overwrite=True, **kw)  # only its own files: replaced
    assert json.loads((out / "synth_meta.json").read_text())["seed"] == 4
