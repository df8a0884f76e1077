"""The run folder as training writes it: reuse of a finished run, resume or refuse, start, metrics log.

Nothing here deletes what trashlib did not write: `runs.check_run_folder` refuses foreign folders and
`runs.clear_run` removes only the run's own files. A branch records which training of its trunk it
started from (`trunk_identity`), so it is neither resumed nor reused once the trunk has been trained again.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from trashlib import runs
from trashlib.config import TrainConfig
from trashlib.data import train_fingerprint
from trashlib.io import atomic_open, read_json, write_json
from trashlib.models.sizes import presets_fingerprint
from trashlib.runs.checkpoint import checkpoint_step, last_checkpoint


def trunk_identity(trunk_dir: Path) -> str:
    """Which training of a finished trunk run a branch starts from: the sha1 of its finished.json, which every
    training writes anew (its timings differ), so a trunk trained again has another identity."""
    return hashlib.sha1((trunk_dir / runs.FINISHED_FILE).read_bytes()).hexdigest()


def start_folder(run_dir: Path, cfg: TrainConfig, device: str, *, resuming: bool, precision: str = "no",
                 trunk_sha1: str | None = None) -> None:
    """Write config and provenance (for a branch, its trunk's identity); a fresh start clears what an earlier
    attempt of this run left."""
    runs.remove_temporary(run_dir)  # what a kill left: the project's own temporary names only
    if not resuming:
        runs.clear_run(run_dir)
    # resume and restart are one-off actions, not settings a copied config.yaml should repeat
    cfg.replace(resume=False, restart=False).to_yaml(run_dir / runs.CONFIG_FILE)
    # the presets the weights were built from: a resume after they changed is refused (resuming_run)
    write_json(run_dir / runs.ENV_FILE, {**runs.environment(device, precision=precision),
                                         "presets_sha1": presets_fingerprint(cfg.size),
                                         **({"trunk_sha1": trunk_sha1} if trunk_sha1 else {})})
    (run_dir / "checkpoints").mkdir(exist_ok=True)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records written after the checkpoint we resume from (they will be written again)."""
    if path.exists():
        kept = [r for r in runs.read_metrics(path) if r.get("step", 0) <= step]
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in kept))


class MetricsLog:
    """Appends JSON lines to metrics.jsonl (main process only) as they happen."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def __call__(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def finished_run(run_dir: Path, cfg: TrainConfig, *, trunk_sha1: str | None = None) -> bool:
    """Whether `run_dir` holds this config's finished run, trained on the same data, presets and (a branch)
    training of its trunk; a change is said and answered False (train again)."""
    if not (run_dir / runs.FINISHED_FILE).exists():
        return False
    if runs.Run(run_dir).config.identity() != cfg.identity():
        return False
    finished = read_json(run_dir / runs.FINISHED_FILE)
    saved = finished.get("data_sha1")
    if saved is not None and saved != train_fingerprint(cfg):
        print(f"{run_dir.name}: the data changed since this run finished; training it again")
        return False
    if finished.get("presets_sha1") != presets_fingerprint(cfg.size):  # absent: finished before presets were recorded
        print(f"{run_dir.name}: the {cfg.size} model presets (trashlib.models.sizes) changed since this run finished; "
              "training it again")
        return False
    if _other_trunk(run_dir, trunk_sha1):
        print(f"{run_dir.name}: its trunk {cfg.init_from} was trained again since this branch finished; "
              "training it again")
        return False
    return True


def resuming_run(run_dir: Path, cfg: TrainConfig, force: bool, *, trunk_sha1: str | None = None) -> bool:
    """Whether to continue from the last checkpoint; refuses to wipe an interrupted run unasked, and to continue
    a branch whose trunk was trained again since it started (its checkpoint continues the old trunk)."""
    last = last_checkpoint(run_dir / "checkpoints")
    if last is None or (run_dir / runs.FINISHED_FILE).exists():  # nothing to lose, or a finished run retrained
        return False
    if cfg.resume:
        started = _started_presets(run_dir)
        if started is not None and started != presets_fingerprint(cfg.size):
            raise ValueError(f"cannot resume {run_dir.name}: the {cfg.size} model presets (trashlib.models.sizes) "
                             f"changed since it started, so its checkpoint belongs to another model; start it over "
                             f"with --restart (restart=True)")
        if _other_trunk(run_dir, trunk_sha1):
            raise ValueError(f"cannot resume {run_dir.name}: its trunk {cfg.init_from} was trained again since this "
                             f"branch started, so its checkpoint continues the trunk's earlier weights; start it over "
                             f"with --restart (restart=True)")
        return True
    if cfg.restart or force:
        return False
    raise FileExistsError(f"{run_dir} holds an interrupted run (last checkpoint at step {checkpoint_step(last)} of "
                          f"{cfg.steps}): continue it with --resume (resume=True), or start it over with --restart "
                          "(restart=True), which deletes its checkpoints and metrics")


def _other_trunk(run_dir: Path, trunk_sha1: str | None) -> bool:
    """Whether the run recorded starting from a training of its trunk other than `trunk_sha1` (False when
    either is unknown: a run that is no branch, or one started before trunks were recorded)."""
    try:
        recorded = read_json(run_dir / runs.ENV_FILE).get("trunk_sha1")
    except (OSError, ValueError, AttributeError):
        return False
    return trunk_sha1 is not None and recorded is not None and recorded != trunk_sha1


def _started_presets(run_dir: Path) -> str | None:
    """The presets fingerprint the run started with (None: not recorded, or unreadable provenance)."""
    try:
        return read_json(run_dir / runs.ENV_FILE).get("presets_sha1")
    except (OSError, ValueError, AttributeError):
        return None
