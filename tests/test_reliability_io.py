"""Hostile input and hostile disks: unwritable outputs found up front, bounded memory, no tracebacks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trashlib.cli import main
from trashlib.config import TrainConfig
from trashlib.runs import Run

IDS = [f"batch_01/{i:04d}.jpg" for i in range(3)]


def write_test_json(path: Path, ids=IDS) -> Path:
    images = [{"id": i, "file_name": f, "width": 512, "height": 512} for i, f in enumerate(ids)]
    # "annotations" makes it a labels file too: `submission score` then gets as far as reading the CSV
    path.write_text(json.dumps({"images": images, "categories": [], "annotations": []}))
    return path


@pytest.fixture
def no_model_loading(monkeypatch, tmp_path):
    """Loading a model fails the test: the checks under test must come before any prediction work."""
    import trashlib.paths as paths

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output paths were checked")

    monkeypatch.setattr(Run, "load_model", refuse)
    monkeypatch.setattr(paths, "PROBS_DIR", tmp_path / "probs")


def read_only_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root: permission bits do not stop writes
        folder.chmod(0o755)
        pytest.skip("running as root: a chmod 0o555 folder is still writable")
    return folder


# ---------------------------------------------------------------- 1. unwritable outputs, found up front

def under_a_file(tmp_path: Path) -> Path:
    """A folder no one can create, root included: its parent is a regular file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    return blocker / "out"


@pytest.mark.parametrize("where", ["under a file", "read-only folder", "existing folder"])
def test_predict_checks_the_submission_path_before_predicting(fake_run, tiny_root, tmp_path, capsys,
                                                              no_model_loading, where):
    if where == "under a file":
        csv = under_a_file(tmp_path) / "sub.csv"
    elif where == "read-only folder":
        csv = read_only_folder(tmp_path) / "sub.csv"
    else:
        csv = tmp_path / "sub.csv"
        csv.mkdir()
    rc = main(["predict", str(fake_run), "--data", str(tiny_root), "--submission", str(csv)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert str(csv) in err and "Traceback" not in err
    assert not (tmp_path / "probs").exists()  # nothing was predicted or stored


def test_predict_checks_the_store_folder_before_predicting(fake_run, tiny_root, tmp_path, capsys, monkeypatch,
                                                          no_model_loading):
    import trashlib.paths as paths

    monkeypatch.setattr(paths, "PROBS_DIR", under_a_file(tmp_path) / "probs")
    assert main(["predict", str(fake_run), "--data", str(tiny_root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(paths.PROBS_DIR) in err and "blocker" in err, err


@pytest.mark.parametrize("where", ["under a file", "read-only folder"])
def test_predict_api_checks_out_dir_before_loading_the_model(fake_run, tiny_root, tmp_path, no_model_loading, where):
    from trashlib.predict.inference import predict

    out_dir = under_a_file(tmp_path) if where == "under a file" else read_only_folder(tmp_path)
    with pytest.raises(OSError, match="cannot write") as e:
        predict(fake_run, tiny_root, "test", out_dir=out_dir, progress=False)
    assert str(out_dir) in str(e.value)


def test_complete_maps_are_reused_without_loading_the_model(fake_run, tiny_root, tmp_path, monkeypatch):
    """A store that needs no writing (a complete index with these settings) needs no model either."""
    from test_inference import Pointwise

    from trashlib.predict.inference import TTA, predict

    monkeypatch.setattr(Run, "load_model", lambda self, which="last", device="cpu": Pointwise())
    first = predict(fake_run, tiny_root, "test", tta=TTA(), out_dir=tmp_path / "store", progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded to reuse complete maps")

    monkeypatch.setattr(Run, "load_model", refuse)
    again = predict(fake_run, tiny_root, "test", tta=TTA(), out_dir=tmp_path / "store", progress=False)
    assert again.path == first.path and len(again) == 2


# ---------------------------------------------------------------- 2. bounded memory on huge files

MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys, time
    csv_path, test_json = sys.argv[1:]
    from trashlib.submission import read_submission, validate_submission
    size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    limit = size + (160 << 20)  # 160 MB above what the interpreter and the imports hold
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    start = time.time()
    problems = validate_submission(csv_path, test_json)
    try:
        n = sum(1 for _ in read_submission(csv_path))
        read = f"read {n} rows"
    except ValueError as e:
        read = str(e)
    print(json.dumps({"problems": problems, "read": read, "seconds": time.time() - start}))
""")


def write_huge_csv(path: Path, kind: str) -> None:
    with open(path, "wb") as f:
        f.write(b"image_id,PredictionString\n")
        if kind == "one enormous line":  # 400 MB: a header, the start of a row, then a sparse run of NUL bytes
            f.write(f"{IDS[0]},0 0 ".encode())
            f.truncate(400 << 20)
        else:  # 150 MB of short rows with 1 kB ids: each is two problems, 300+ MB of messages if all are kept
            f.write(("x" * 1000 + ",7 7\n").encode() * 150_000)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmSize from /proc (Linux)")
@pytest.mark.parametrize("kind", ["one enormous line", "many bad rows"])
@pytest.mark.integration
def test_validating_a_huge_file_stays_in_bounded_memory(tmp_path, kind):
    path = tmp_path / "huge.csv"
    try:
        write_huge_csv(path, kind)
        proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path),
                               str(write_test_json(tmp_path / "test.json"))],
                              capture_output=True, text=True, timeout=120)
    finally:
        path.unlink(missing_ok=True)
    assert proc.returncode == 0 and "MemoryError" not in proc.stderr, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    problems = result["problems"]
    assert result["seconds"] < 20
    assert len(problems) < 150 and all(p.startswith(f"{path}: ") for p in problems)
    assert all(len(p) < 400 for p in problems), max(problems, key=len)[:500]  # a 1 kB id is shortened
    if kind == "one enormous line":
        assert f"{path}: line 2: row longer than" in problems[0], problems
        assert "line 2: row longer than" in result["read"]
    else:
        assert "more problem(s) not listed" in problems[-2], problems[-3:]
        assert "line 2: unknown image_id 'xxx" in problems[0]
        assert "line 2 (xxxx" in result["read"]


# ---------------------------------------------------------------- 3. the command line never shows a traceback

def _files(tmp_path: Path) -> dict[str, Path]:
    """Hostile inputs by name."""
    f = {"test.json": write_test_json(tmp_path / "test.json"), "missing": tmp_path / "missing.csv",
         "folder": tmp_path / "a-folder"}
    f["folder"].mkdir()
    for name, data in {"empty.csv": b"", "garbage.csv": b"hello, world\n\"unterminated\n,,,\n",
                       "binary.csv": bytes(range(256)) * 40, "latin-1.csv": "image_id,PredictionString\n"
                       "caf\xe9.jpg,0\n".encode("latin-1"), "nul.csv": b"\x00" * 1000,
                       "garbage.json": b"{not json", "binary.json": b"\x89PNG\r\n\x1a\n\x00\xff",
                       "list.json": b"[1, 2]", "unhashable.json": b'{"images": [{"file_name": [1]}]}',
                       "latin-1.json": '{"images": [{"file_name": "caf\xe9"}]}'.encode("latin-1")}.items():
        f[name] = tmp_path / name
        f[name].write_bytes(data)
    return f


VALIDATE = [("missing", "test.json"), ("empty.csv", "test.json"), ("garbage.csv", "test.json"),
            ("binary.csv", "test.json"), ("latin-1.csv", "test.json"), ("nul.csv", "test.json"),
            ("folder", "test.json"), ("garbage.csv", "missing"), ("garbage.csv", "garbage.json"),
            ("garbage.csv", "binary.json"), ("garbage.csv", "list.json"), ("garbage.csv", "unhashable.json"),
            ("garbage.csv", "latin-1.json"), ("garbage.csv", "folder")]


@pytest.mark.parametrize("command", ["validate", "score"])
@pytest.mark.parametrize("csv, test", VALIDATE, ids=[f"{c}-{t}" for c, t in VALIDATE])
def test_cli_submission_commands_explain_bad_input(tmp_path, capsys, command, csv, test):
    f = _files(tmp_path)
    option = "--test" if command == "validate" else "--labels"
    rc = main(["submission", command, str(f[csv]), option, str(f[test])])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    bad = f[test] if test != "test.json" else f[csv]
    if rc == 1:  # an invalid submission: the problems, each naming the file, then the count
        assert command == "validate" and not err and out.endswith("problem(s)\n"), (out, err)
        assert all(line.startswith(f"{bad}: ") for line in out.splitlines()), out
    else:
        assert rc == 2 and err.startswith("error: ") and str(bad) in err.splitlines()[0], err


def _fake_run_with(tmp_path: Path, fault: str) -> Path:
    run = tmp_path / "runs" / "bad-run"
    (run / "checkpoints").mkdir(parents=True)
    TrainConfig(model="segformer", steps=1, batch_size=1, image_size=64).to_yaml(run / "config.yaml")
    last = run / "checkpoints" / "last-1"  # the last weights, which predict uses
    last.mkdir()
    (last / "last_state.json").write_text("{}")
    (last / "last.safetensors").write_bytes(b"\x00garbage, not safetensors" * 10)
    if fault == "binary config":
        (run / "config.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    elif fault == "no checkpoint":
        (last / "last.safetensors").unlink()
    elif fault == "weights of another model":
        from safetensors.torch import save_file
        import torch

        save_file({"other.weight": torch.zeros(2, 2)}, str(last / "last.safetensors"))
    return run


PREDICT = ["missing run", "binary config", "no checkpoint", "garbage checkpoint", "weights of another model",
           "missing data root",
           "garbage test.json", "missing split"]


@pytest.mark.parametrize("case", PREDICT)
def test_cli_predict_explains_bad_input(tiny_copy, tmp_path, capsys, monkeypatch, case):
    import trashlib.paths as paths

    monkeypatch.setattr(paths, "PROBS_DIR", tmp_path / "probs")
    run = tmp_path / "no-such-run" if case == "missing run" else _fake_run_with(tmp_path, case)
    data, split = tiny_copy, "test"
    expected = {"missing run": run, "binary config": run / "config.yaml", "no checkpoint": run / "checkpoints",
                "garbage checkpoint": run / "checkpoints" / "last-1" / "last.safetensors",
                "weights of another model": run / "checkpoints" / "last-1" / "last.safetensors",
                "missing data root": tmp_path / "no-data", "garbage test.json": tiny_copy / "test.json",
                "missing split": tiny_copy / "holdout.json"}[case]
    if case == "missing data root":
        data = tmp_path / "no-data"
    elif case == "garbage test.json":
        (tiny_copy / "test.json").write_bytes(b"\xff\xfe{{{")
    elif case == "missing split":
        split = "holdout"
    rc = main(["predict", str(run), "--data", str(data), "--split", split, "--submission", str(tmp_path / "s.csv")])
    out, err = capsys.readouterr()
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in out + err, err
    assert str(expected) in err.splitlines()[0], err


@pytest.mark.integration
def test_python_dash_m_prints_one_line_for_a_bad_test_json(tmp_path):
    f = _files(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "trashlib", "submission", "validate", str(f["binary.csv"]),
                           "--test", str(f["unhashable.json"])], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {f['unhashable.json']}: ") and proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"), OSError(30, "Read-only file system")])
def test_check_writable_names_the_folder_it_cannot_write(tmp_path, monkeypatch, error):
    import tempfile

    from trashlib.io import check_writable

    check_writable(tmp_path / "new" / "deeper")  # a folder that can be made is fine, and is not made yet
    assert not (tmp_path / "new").exists()

    def refuse(*args, **kwargs):  # what a read-only disk, or a folder root does not own, answers
        raise error

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(PermissionError, match=f"cannot write the maps: {tmp_path} is not writable \\({error.strerror}\\)"):
        check_writable(tmp_path / "new", what="the maps")
