"""Hostile-user cases of the training loop: divergence, foreign folders, kills, torn files, failed starts."""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli_help
from test_training import TinySeg, _without_time, small_cfg

# training, and processes killed mid-write (`make test` runs it; `make test-fast` leaves it out)
pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parent


def _last_step(run) -> int:
    from trashlib.runs.checkpoint import read_metadata

    return read_metadata(run.checkpoint("last"))["step"]


def _weights(run, which="last"):
    from trashlib.runs.checkpoint import load_weights

    path = run.checkpoint(which)
    return load_weights(path, prefix="model/" if which == "last" else "")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def _poison(path: Path) -> None:
    """Rewrite a safetensors file with one NaN in its first floating tensor, metadata kept."""
    from safetensors.torch import load_file, save_file

    from trashlib.runs.checkpoint import read_metadata

    tensors = load_file(str(path))
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(path), metadata={k: json.dumps(v) for k, v in read_metadata(path).items()})


# -- 1. numbers that are not numbers ----------------------------------------------------------------
def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tiny_root):
    from trashlib.runs import Run, run_dir_for
    from trashlib.training import train

    cfg = small_cfg(tiny_root, steps=8, lr=1e9, eval_every=2, save_every=1, run_name="diverge")
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError) as e:  # lr 1e9: the loss is nan by step 5
        train(cfg, model=TinySeg(), progress=False)
    message = str(e.value)
    bad = int(re.search(r"(?:loss|weights) became NaN or infinite at step (\d+)", message).group(1))
    assert bad > 1
    for hint in ("--resume", "--lr", "--grad-clip", f"last good checkpoint is step {bad - 1}"):
        assert hint in message
    run = Run(run_dir_for(cfg))
    assert not run.finished
    assert _last_step(run) == bad - 1
    for which in ("last", "best"):  # nothing non-finite was written as a checkpoint
        assert all(torch.isfinite(v).all() for v in _weights(run, which).values() if v.is_floating_point())
    assert all(np.isfinite(r["loss"]) for r in run.metrics("train"))
    assert max(r["step"] for r in run.metrics()) <= bad


def test_non_finite_weights_are_refused_when_loading(tiny_root, tmp_path, monkeypatch):
    import trashlib.runs.folder
    from trashlib.predict.inference import TTA, predict
    from trashlib.training import train

    torch.manual_seed(0)
    run = train(small_cfg(tiny_root, steps=2, eval_every=2, run_name="poisoned"), model=TinySeg(), progress=False)
    _poison(run.checkpoint("best"))
    with pytest.raises(ValueError, match=r"best\.safetensors.*(NaN|non-finite)"):
        run.load_model("best", model=TinySeg())
    # the run's model name is a test's
    monkeypatch.setattr(trashlib.runs.folder, "build_model", lambda *a, **k: TinySeg())
    with pytest.raises(ValueError, match=r"best\.safetensors.*(NaN|non-finite)"):
        predict(run, tiny_root, "test", tta=TTA(hflip=False), out_dir=tmp_path / "probs", progress=False,
                workers=0, device="cpu", which="best")


def test_resuming_from_non_finite_weights_is_refused(tiny_root):
    from trashlib.training import train

    cfg = small_cfg(tiny_root, steps=4, eval_every=None, run_name="poisoned-last")
    torch.manual_seed(0)
    cut = train(cfg, model=TinySeg(), stop_after=2, progress=False)
    _poison(cut.checkpoint("last"))
    with pytest.raises(ValueError, match=r"cannot resume .*last\.safetensors.*(NaN|non-finite)"):
        train(cfg.replace(resume=True), model=TinySeg(), progress=False)


# -- 2. never delete what the project did not create ------------------------------------------------
def test_a_folder_that_is_not_a_run_is_never_cleared(tiny_root, tmp_path, capsys):
    from trashlib.cli import main
    from trashlib.training import train

    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    files = {mine / "notes.txt": "keep", mine / "metrics.jsonl": "my numbers\n",
             mine / "checkpoints" / "precious.bin": "weights of mine"}
    for path, text in files.items():
        path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(mine)) + r".*not a trashlib run folder"):
        train(small_cfg(tiny_root, steps=2, eval_every=None, out_dir=str(tmp_path), run_name="mine"), model=TinySeg(),
              progress=False)
    argv = ["train", "--model", "segformer", "--data", str(tiny_root), "--steps", "2", "--val-split", "none",
            "--out", str(tmp_path), "--run-name", "mine", "--no-progress"]
    assert main(argv) == 2
    assert "not a trashlib run folder" in capsys.readouterr().err
    assert {p: p.read_text() for p in files} == files
    assert sorted(p.name for p in mine.rglob("*")) == ["checkpoints", "metrics.jsonl", "notes.txt", "precious.bin"]


def test_rerunning_an_interrupted_run_without_resume_refuses(tiny_root):
    from trashlib.training import train

    cfg = small_cfg(tiny_root, steps=6, eval_every=None, run_name="interrupted")
    torch.manual_seed(0)
    cut = train(cfg, model=TinySeg(), stop_after=3, progress=False)
    before = cut.checkpoint("last").read_bytes()
    with pytest.raises(FileExistsError, match=r"interrupted.*step 3.*--resume.*--restart"):
        train(cfg, model=TinySeg(), progress=False)
    assert cut.checkpoint("last").read_bytes() == before and len(cut.metrics()) == 3
    again = train(cfg.replace(restart=True), model=TinySeg(), progress=False)  # the explicit way to start over
    assert again.finished and [r["step"] for r in again.metrics("train")] == list(range(1, 7))
    assert again.config.restart is False  # a one-off action, not a setting a copied config.yaml repeats


def test_cli_documents_restart():
    out = cli_help("train")
    assert "--restart" in out and "--resume" in out


# -- 3. a kill between the two checkpoint files -----------------------------------------------------
class Killed(BaseException):
    """Stands in for SIGKILL: nothing after the raise runs."""


def test_a_crash_between_the_checkpoint_files_leaves_a_resumable_run(tiny_root, monkeypatch):
    import trashlib.runs.checkpoint as checkpoint
    from trashlib.training import train

    cfg = small_cfg(tiny_root, steps=8, eval_every=3, save_every=1, class_weighting="cdb", grad_accum=2)
    torch.manual_seed(0)
    straight = train(cfg.replace(run_name="between-straight"), model=TinySeg(), progress=False)
    real = checkpoint.write_json

    def dies_at_step_6(path, obj, **kw):  # the weights file of step 6 is written, its state file is not
        if obj.get("step") == 6:
            raise Killed
        return real(path, obj, **kw)

    monkeypatch.setattr(checkpoint, "write_json", dies_at_step_6)
    torch.manual_seed(0)
    with pytest.raises(Killed):
        train(cfg.replace(run_name="between"), model=TinySeg(), progress=False)
    monkeypatch.setattr(checkpoint, "write_json", real)
    resumed = train(cfg.replace(run_name="between", resume=True), model=TinySeg(), progress=False)
    assert resumed.finished
    assert _without_time(resumed.metrics()) == _without_time(straight.metrics())
    _assert_same_weights(_weights(straight), _weights(resumed))


def test_temporaries_of_a_killed_run_are_cleaned_and_only_those(tiny_root):
    from trashlib.training import train

    cfg = small_cfg(tiny_root, steps=4, eval_every=None, run_name="leftovers")
    torch.manual_seed(0)
    cut = train(cfg, model=TinySeg(), stop_after=2, progress=False)
    ckpt = cut.path / "checkpoints"
    ours = [ckpt / "last-3.tmp" / "last.safetensors", ckpt / ".best.safetensors.k2j_9x0q.tmp",
            cut.path / ".config.yaml.abcd1234.tmp", cut.path / ".metrics.jsonl.zz0011yy.tmp"]
    theirs = [ckpt / "notes.tmp", cut.path / "my.tmp", ckpt / "last-3.tmp.bak"]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    run = train(cfg.replace(resume=True), model=TinySeg(), progress=False)
    assert run.finished
    assert [p for p in ours if p.exists() or p.parent.name.endswith(".tmp") and p.parent.exists()] == []
    assert all(p.exists() for p in theirs)


HELPER = """
import os, sys, time
sys.path.insert(0, {tests!r})
import torch

real_fsync = os.fsync
def slow_fsync(fd):  # a slow disk: saving dominates a step, so random kills land inside the writes
    time.sleep(0.02)
    real_fsync(fd)
os.fsync = slow_fsync
torch.set_num_threads(1)
from test_training import TinySeg, small_cfg
from trashlib.training import train

root, out, name, steps = sys.argv[1:5]
cfg = small_cfg(root, steps=int(steps), eval_every=5, save_every=1, class_weighting="cdb", grad_accum=2,
                out_dir=out, run_name=name, resume=True)
torch.manual_seed(0)
model = TinySeg()
print("training", flush=True)
t0 = time.perf_counter()
train(cfg, model=model, progress=False)
print("done", time.perf_counter() - t0, flush=True)
"""


def _kill_at_random(tiny_root, tmp_path, *, steps: int, kills: int, seed: int) -> None:
    """Train in a subprocess, SIGKILL it up to `kills` times at random moments (each start resumes), let the
    last start finish; the run must equal an uninterrupted one exactly."""
    from trashlib.runs import Run

    script = tmp_path / "helper.py"
    script.write_text(textwrap.dedent(HELPER.format(tests=str(TESTS))))
    out = tmp_path / "runs"

    def start(name):
        p = subprocess.Popen([sys.executable, str(script), str(tiny_root), str(out), name, str(steps)],
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "training", p.communicate()[1]
        return p

    p = start("straight")
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    duration = float(stdout.split()[-1])
    rng = random.Random(seed)
    metrics = out / "cut" / "metrics.jsonl"

    def trained() -> int:  # about the steps done so far (train records in metrics.jsonl)
        try:
            return metrics.read_text().count('"train"')
        except FileNotFoundError:  # not yet, or being started over
            return 0

    landed = 0
    for i in range(kills):
        before = trained()
        p = start("cut")
        if i % 3 == 2:  # anywhere, start-up included
            time.sleep(rng.uniform(0, duration * max(steps - before, 1) / steps))
        else:  # once steps (and their checkpoint writes) are running: within the next three steps
            deadline = time.monotonic() + 60
            while trained() <= before and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 3 * duration / steps))
        p.kill()
        _, stderr = p.communicate(timeout=60)
        assert p.returncode in (0, -9), f"start {i} after a kill failed (seed {seed}):\n{stderr}"
        landed += p.returncode == -9
        if p.returncode == 0:
            break
    p = start("cut")
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, f"final resume failed (seed {seed}):\n{stderr}"
    straight, cut = Run(out / "straight"), Run(out / "cut")
    print(f"{landed} of {kills} kills landed")
    assert cut.finished and landed >= 1
    assert _without_time(cut.metrics()) == _without_time(straight.metrics())
    _assert_same_weights(_weights(straight), _weights(cut))
    _assert_same_weights(_weights(straight, "best"), _weights(cut, "best"))
    assert [p.name for p in cut.path.rglob("*.tmp")] == []


def test_kill_9_at_random_moments_then_resume_is_exact(tiny_root, tmp_path):
    _kill_at_random(tiny_root, tmp_path, steps=24, kills=2, seed=1)


@pytest.mark.slow
def test_kill_9_many_times_then_resume_is_exact(tiny_root, tmp_path):
    _kill_at_random(tiny_root, tmp_path, steps=60, kills=20, seed=2)


# -- 4. tracebacks that should be sentences ---------------------------------------------------------
def test_garbage_or_truncated_safetensors_names_the_file(tiny_root, tmp_path):
    from trashlib.runs.checkpoint import load_weights, read_metadata
    from trashlib.training import train

    torch.manual_seed(0)
    run = train(small_cfg(tiny_root, steps=2, eval_every=2, run_name="torn-ckpt"), model=TinySeg(), progress=False)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all" * 3)
    for reader in (load_weights, read_metadata):
        with pytest.raises(ValueError, match=re.escape(str(garbage)) + ".*safetensors"):
            reader(garbage)
    best = run.checkpoint("best")
    best.write_bytes(best.read_bytes()[:-100])  # a copy cut short
    with pytest.raises(ValueError, match=re.escape(str(best)) + ".*(truncated|corrupt)"):
        run.load_model("best", model=TinySeg())


def test_a_torn_last_metrics_line_is_skipped_with_a_warning(tiny_root):
    from trashlib.training import train

    cfg = small_cfg(tiny_root, steps=6, eval_every=3, run_name="torn-metrics")
    torch.manual_seed(0)
    straight = train(cfg.replace(run_name="torn-metrics-straight"), model=TinySeg(), progress=False)
    torch.manual_seed(0)
    cut = train(cfg, model=TinySeg(), stop_after=4, progress=False)
    with open(cut.path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 5, "lo')  # a kill in the middle of a write
    with pytest.warns(UserWarning, match=r"metrics\.jsonl: line 6 .*cut off"):
        assert len(cut.metrics()) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = train(cfg.replace(resume=True), model=TinySeg(), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the resumed file is whole again
        assert _without_time(resumed.metrics()) == _without_time(straight.metrics())


def test_a_torn_line_in_the_middle_of_metrics_is_an_error_naming_it(tiny_root):
    from trashlib.training import train

    cfg = small_cfg(tiny_root, steps=6, eval_every=None, run_name="torn-middle")
    torch.manual_seed(0)
    cut = train(cfg, model=TinySeg(), stop_after=4, progress=False)
    path = cut.path / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:10]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 2 is not JSON"):
        cut.metrics()
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 2 is not JSON"):
        train(cfg.replace(resume=True), model=TinySeg(), progress=False)


# -- 5. a failed start leaves no half-made run ------------------------------------------------------
class Boom(TinySeg):
    """Fails in its second training step, before any checkpoint."""

    calls = 0

    def forward(self, images, masks=None):
        if masks is not None:
            Boom.calls += 1
            if Boom.calls == 2:
                raise RuntimeError("out of memory (simulated)")
        return super().forward(images, masks)


@pytest.mark.parametrize("case", ["bad-val-split", "bad-train-json", "unknown-model", "fails-in-step-2"])
def test_a_failed_start_leaves_no_run_folder(tiny_copy, tmp_path, case):
    from trashlib.runs import best_run, find_runs, list_runs
    from trashlib.training import train

    out = tmp_path / "runs"
    cfg = small_cfg(tiny_copy, steps=4, eval_every=None, out_dir=str(out), run_name="failed")
    model = TinySeg()
    if case == "bad-val-split":
        cfg = cfg.replace(val_split="nope", eval_every=2)
    elif case == "bad-train-json":
        (tiny_copy / "train.json").write_text("{not json")
    elif case == "unknown-model":
        cfg, model = cfg.replace(model="segformre"), None
    else:
        Boom.calls, model = 0, Boom()
    with pytest.raises(Exception):
        train(cfg, model=model, progress=False)
    assert not (out / "failed").exists()
    assert list_runs(out) == [] and find_runs(root=out, finished=False) == [] and best_run(list_runs(out)) is None


def test_a_failure_after_a_checkpoint_keeps_the_run_resumable(tiny_root, tmp_path):
    from trashlib.training import train

    cfg = small_cfg(tiny_root, steps=6, eval_every=None, save_every=2, out_dir=str(tmp_path / "runs"),
                    run_name="late-failure")
    Boom.calls = 0
    boom = Boom()
    Boom.calls = -3  # fails in step 5, after the checkpoint of step 4
    with pytest.raises(RuntimeError):
        train(cfg, model=boom, progress=False)
    from trashlib.runs import Run

    run = Run(tmp_path / "runs" / "late-failure")
    assert _last_step(run) == 4
    assert train(cfg.replace(resume=True), model=TinySeg(), progress=False).finished


def test_runs_of_the_older_checkpoint_layout_still_load_and_resume(tiny_root):
    """Runs written before last-<step>/ hold the pair directly in checkpoints/; they load and resume."""
    from trashlib.training import train

    cfg = small_cfg(tiny_root, steps=4, eval_every=None, run_name="old-layout")
    torch.manual_seed(0)
    straight = train(cfg.replace(run_name="old-layout-straight"), model=TinySeg(), progress=False)
    torch.manual_seed(0)
    cut = train(cfg, model=TinySeg(), stop_after=2, progress=False)
    folder = cut.checkpoint("last").parent
    for f in list(folder.iterdir()):
        f.rename(folder.parent / f.name)
    folder.rmdir()
    assert cut.checkpoint("last") == cut.path / "checkpoints" / "last.safetensors"
    cut.load_model("last", model=TinySeg())
    resumed = train(cfg.replace(resume=True), model=TinySeg(), progress=False)
    _assert_same_weights(_weights(straight), _weights(resumed))
    assert not (cut.path / "checkpoints" / "last.safetensors").exists()  # replaced by the new layout


def test_cli_reports_divergence_as_a_sentence(tiny_root, tmp_path, monkeypatch, capsys):
    import trashlib.training.loop as loop
    from trashlib.cli import main

    monkeypatch.setattr(loop, "build_model", lambda *a, **k: TinySeg())
    torch.manual_seed(0)
    argv = ["train", "--model", "tiny-conv", "--data", str(tiny_root), "--steps", "8", "--lr", "1e9",
            "--batch-size", "2", "--image-size", "64", "--warmup-steps", "1", "--eval-every", "2",
            "--num-workers", "0", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "became NaN or infinite at step" in err and "Traceback" not in err
    assert "--resume" in err and "--lr" in err


_TWO_PROCESS_SCRIPT = '''
import os, sys, time
import trashlib.data.pasted as pasted
from trashlib.config import TrainConfig
from trashlib.training import train

real = pasted.write_label_maps
def spy(*a, **k):
    print(f"rank {os.environ['RANK']} writes the offline set", flush=True)
    time.sleep(3)  # a slow disk: a process that did not wait for the main one would start writing too
    return real(*a, **k)
pasted.write_label_maps = spy
cfg = TrainConfig(model="segformer", data_root=sys.argv[1], steps=2, batch_size=2, image_size=64, work_size=64,
                  eval_every=None, val_split=None, copy_paste="offline", run_name="two", num_workers=0,
                  repeat_threshold=0.3)
print(f"rank {os.environ['RANK']} finished {train(cfg, progress=False).finished}", flush=True)
'''


@pytest.mark.slow
def test_two_processes_write_the_offline_copy_paste_set_once(tiny_root, tmp_path):
    """Two CPU processes (torchrun, gloo): only the main process writes the offline set; both train."""
    import subprocess
    import sys

    script = tmp_path / "two.py"
    script.write_text(_TWO_PROCESS_SCRIPT)
    env = {**os.environ, "TRASHLIB_HOME": str(tmp_path / "home"), "TRASHLIB_RUNS": str(tmp_path / "runs"),
           "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}  # what `accelerate launch --cpu` sets
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script),
                          str(tiny_root)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[:3000]
    assert out.stdout.count("writes the offline set") == 1 and "rank 0 writes" in out.stdout
    assert "rank 0 finished True" in out.stdout and "rank 1 finished True" in out.stdout
