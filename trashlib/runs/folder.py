"""Run folders: naming, no-clobber, provenance files, and `Run`, the read side of a training run.

Layout of `runs/<run-name>/`: config.yaml, environment.json (git commit and dirty flag, versions,
device), metrics.jsonl (one JSON record per line, written as training goes), eval-images.npz (the
final evaluation's confusion matrix of each val image, for `trashlib.scoring.compare`), checkpoints/
(best.safetensors and last-<step>/ holding last.safetensors + last_state.json, see trashlib.runs.checkpoint)
and finished.json once training completed. A folder without config.yaml is not a run: training never
writes into (or clears) one that holds anything else.
Names follow `<model>-<size>_b<batch>x<steps>_<data folder>-<crop>`, for example
`mask2former-swin-tiny_b4x300_trash-synth-256`; a different config asking for a taken name gets
`_<config hash>` appended, so nothing is ever overwritten by another experiment.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import unicodedata
import warnings
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from trashlib import paths
from trashlib.config import TrainConfig
from trashlib.io import atomic_open, check_output_place, read_json
from trashlib.models import build_model
from trashlib.runs import checkpoint
from trashlib.runs.checkpoint import load_weights

CONFIG_FILE, METRICS_FILE, FINISHED_FILE, ENV_FILE = "config.yaml", "metrics.jsonl", "finished.json", "environment.json"
EVAL_IMAGES_FILE = "eval-images.npz"  # the final evaluation's confusion matrix per val image
RUN_FILES = (CONFIG_FILE, METRICS_FILE, FINISHED_FILE, ENV_FILE, EVAL_IMAGES_FILE)
# atomic_open's temporaries of the files above: `.<name>.XXXXXXXX.tmp`
_TEMPORARY = re.compile(r"\.(" + "|".join(re.escape(n) for n in RUN_FILES) + r")\.[a-z0-9_]{8}\.tmp")


NAME_MAX = 255 - 7  # bytes of a file name on common file systems, less the `_<config hash>` a taken name gets


def run_name_problem(name) -> str | None:
    """Why `name` cannot be a run folder's name (None when it can): it must be one path component, that is
    not `.` or `..`, holds no `/`, backslash or control character, no edge spaces, and fits a file name."""
    if not isinstance(name, str) or not name.strip():
        return f"a run name must be a non-empty text, got {name!r}"
    if name in (".", "..") or any(c in name for c in "/\\") or any(unicodedata.category(c) == "Cc" for c in name):
        return f"a run name must be one folder name (no '/', backslash, control character, '.' or '..'), got {name!r}"
    if name != name.strip():
        return f"a run name must not begin or end with a space, got {name!r}"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return f"a run name must be UTF-8 text, got {name!r}"
    if size > NAME_MAX:
        return f"a run name must fit a file name ({NAME_MAX} bytes of UTF-8), got {size} bytes: {name[:40]!r}..."
    return None


def runs_dir() -> Path:
    """The default runs folder, read at call time (tests and notebooks may move it)."""
    return Path(paths.RUNS_DIR)


def run_name(cfg: TrainConfig) -> str:
    """The readable name of a config: model-size_bBATCHxSTEPS_DATA-CROP (batch = per device x accumulation),
    then -rWORK for a working resolution, _branch for a run started from a trunk, _sSEED for seeds but 0."""
    data = Path(cfg.data_root).name if cfg.data_root else "default-data"
    name = f"{cfg.model}-{cfg.size}_b{cfg.batch_size * cfg.grad_accum}x{cfg.steps}_{data}-{cfg.image_size}"
    name += f"-r{cfg.work_size}" if cfg.work_size else ""
    name += "_branch" if cfg.init_from else ""
    name += cfg.copy_paste_tag  # _cp-online-inverse, _cp-offline-uniform, _classmix, ... ("" without copy & paste)
    name += f"_s{cfg.seed}" if cfg.seed else ""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def run_dir_for(cfg: TrainConfig) -> Path:
    """The folder of `cfg`'s run: its name, or name_<hash> when the name holds a different config.

    A name is one folder name (`run_name_problem`), and the folder lies outside the data root, the
    extra training sets, the project's data folders and any other run (`io.check_output_place`).
    """
    base = Path(cfg.out_dir) if cfg.out_dir else runs_dir()
    name = run_name(cfg) if cfg.run_name is None else cfg.run_name
    if problem := run_name_problem(name):  # a generated name grows with the data folder's name
        raise ValueError(f"{problem}; choose one with --run-name" if cfg.run_name is None else f"run_name: {problem}")
    check_output_place(base / name, inputs=[p for p in (cfg.data_root, *cfg.extra_train) if p], what="the run folder")
    for candidate in (base / name, base / f"{name}_{cfg.config_hash()}"):
        saved = candidate / CONFIG_FILE
        if not saved.exists() or TrainConfig.from_yaml(saved).identity() == cfg.identity():
            return candidate
    raise ValueError(f"{base / name}: both the name and the hashed name hold other configs")


def check_run_folder(path: str | os.PathLike) -> None:
    """Refuse a folder that exists and holds files but no config.yaml: training would write into what
    the project did not create."""
    path = Path(path)
    if not path.exists() or (path / CONFIG_FILE).exists():
        return
    if not path.is_dir():
        raise ValueError(f"{path} is a file, not a run folder; choose another --run-name or --out")
    foreign = [p.name for p in path.iterdir() if not _TEMPORARY.fullmatch(p.name)]
    if foreign:
        raise ValueError(f"{path} holds files ({', '.join(sorted(foreign)[:3])}{', ...' if len(foreign) > 3 else ''}) "
                         f"but is not a trashlib run folder (no {CONFIG_FILE}); training will not write into it: "
                         "choose another --run-name or --out")


def remove_temporary(path: str | os.PathLike) -> None:
    """Delete what a killed write left in a run folder and its checkpoints (the project's temporary names only)."""
    path = Path(path)
    for p in (path.iterdir() if path.is_dir() else ()):
        if _TEMPORARY.fullmatch(p.name) and p.is_file():
            p.unlink()
    checkpoint.remove_temporary(path / "checkpoints")


def clear_run(path: str | os.PathLike, *, config: bool = False) -> None:
    """Delete what training wrote in a run folder (metrics, finished mark, checkpoints; with `config`
    also config.yaml and environment.json, and then the folder and checkpoints/ if nothing else is in them)."""
    path = Path(path)
    remove_temporary(path)
    checkpoint.clear_checkpoints(path / "checkpoints")
    for name in (METRICS_FILE, FINISHED_FILE) + ((CONFIG_FILE, ENV_FILE) if config else ()):
        (path / name).unlink(missing_ok=True)
    if config:
        for folder in (path / "checkpoints", path):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Records of a metrics.jsonl file; a cut-off last line (a kill while writing it) is skipped with a
    warning, a bad line before it is an error naming the line."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                warnings.warn(f"{path}: line {n} is cut off (a write was interrupted); skipped it", stacklevel=2)
                break
            raise ValueError(f"{path}: line {n} is not JSON: {e.msg}") from None
    return records


def git_state() -> dict:
    """{"commit": HEAD or "unknown", "dirty": bool or None} of the project's repository."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=paths.PACKAGE_DIR.parent, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def cpuinfo(key: str) -> str:
    """The value of the first `key` line of Linux's /proc/cpuinfo ("model name", "flags"); "" where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), "")
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name (Linux's cpuinfo; else what `platform` says) and its core count: "AMD EPYC, 2 cores"."""
    return f"{cpuinfo('model name') or platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"


def environment(device: str, *, precision: str = "no") -> dict:
    """Provenance of a run: git state, interpreter and library versions, device and CPU, the precision used
    (what `mixed_precision: auto` became on this machine: step times differ by machine and precision)."""
    env = {"git": git_state(), "python": platform.python_version(), "platform": platform.platform(),
           "torch": torch.__version__, "device": device, "cpu": cpu_name(), "mixed_precision": precision}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name()
    for lib in ("transformers", "accelerate", "albumentations", "numpy", "safetensors"):
        try:  # metadata, not import: importing transformers alone takes seconds
            env[lib] = version(lib)
        except PackageNotFoundError:
            env[lib] = None
    return env


class EvalImages(NamedTuple):
    """The per-image record of one evaluation: its step, the val images' file names, their confusion
    matrices (images, classes, classes) int64, and their small objects found and there, by class
    (images, 2, classes) int64 (`metrics.object_hits`; None in a record written before they were kept)."""

    step: int
    file_names: list[str]
    confusions: np.ndarray
    objects: np.ndarray | None = None


def save_eval_images(path: str | os.PathLike, step: int, file_names, confusions: np.ndarray, *,
                     objects: np.ndarray | None = None) -> None:
    """Write an `EvalImages` record as .npz (no pickles), atomically."""
    confusions = np.asarray(confusions)
    if confusions.ndim != 3 or confusions.shape[1] != confusions.shape[2] or len(file_names) != len(confusions):
        raise ValueError(f"{path}: {len(file_names)} images but confusions of shape {confusions.shape}")
    extra = {}
    if objects is not None:
        objects = np.asarray(objects)
        if objects.shape != (len(confusions), 2, confusions.shape[1]):
            raise ValueError(f"{path}: {len(confusions)} images of {confusions.shape[1]} classes but small-object "
                             f"counts of shape {objects.shape}")
        extra["objects"] = objects.astype(np.int64)
    with atomic_open(path, "wb") as f:
        np.savez(f, step=np.int64(step), file_names=np.array(list(file_names), dtype=str),
                 confusions=confusions.astype(np.int64), **extra)


def read_eval_images(path: str | os.PathLike) -> EvalImages:
    """An `EvalImages` record written by `save_eval_images`; ValueError naming the file when it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            step, names, conf = int(z["step"]), [str(n) for n in z["file_names"]], z["confusions"]
            objects = z["objects"] if "objects" in z.files else None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable per-image evaluation ({e}); delete it and run the "
                         "training again with --force to record it") from None
    if (conf.ndim != 3 or conf.shape[1] != conf.shape[2] or len(names) != len(conf)
            or not np.issubdtype(conf.dtype, np.integer) or (conf < 0).any()):
        raise ValueError(f"{path}: confusions of shape {conf.shape} and dtype {conf.dtype} for {len(names)} images: "
                         "damaged; delete it and run the training again with --force to record it")
    if objects is not None and (objects.shape != (len(conf), 2, conf.shape[1])
                                or not np.issubdtype(objects.dtype, np.integer) or (objects < 0).any()
                                or (objects[:, 0] > objects[:, 1]).any()):
        raise ValueError(f"{path}: small-object counts of shape {objects.shape} for {len(names)} images of "
                         f"{conf.shape[1]} classes, or more found than there: damaged; delete it and run the "
                         "training again with --force to record it")
    return EvalImages(step, names, conf.astype(np.int64, copy=False),
                      None if objects is None else objects.astype(np.int64, copy=False))


class Run:
    """A training run folder: config, metrics, checkpoints, model loading."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / CONFIG_FILE).exists():
            raise FileNotFoundError(f"{self.path} is not a run folder (no {CONFIG_FILE})")
        self._config = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, finished={self.finished})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Run) and self.path.resolve() == other.path.resolve()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> TrainConfig:
        if self._config is None:
            self._config = TrainConfig.from_yaml(self.path / CONFIG_FILE)
        return self._config

    @property
    def finished(self) -> bool:
        return (self.path / FINISHED_FILE).exists()

    @property
    def environment(self) -> dict:
        return read_json(self.path / ENV_FILE) if (self.path / ENV_FILE).exists() else {}

    def metrics(self, kind: str | None = None) -> list[dict]:
        """Records of metrics.jsonl ("train" loss lines, "eval" lines), optionally of one kind."""
        records = read_metrics(self.path / METRICS_FILE)
        return [r for r in records if kind is None or r.get("kind") == kind]

    def metrics_frame(self, kind: str = "train"):
        """metrics() of one kind as a pandas DataFrame (per-class IoU expanded to columns for "eval")."""
        records = self.metrics(kind)
        if kind == "eval":
            records = [{**{k: v for k, v in r.items() if k != "per_class_iou"},
                        **{f"IoU {c}": v for c, v in (r.get("per_class_iou") or {}).items()}} for r in records]
        return pd.DataFrame.from_records(records)

    def eval_images(self) -> EvalImages | None:
        """The final evaluation's confusion matrix per val image (None for a run that did not record it:
        trained before it was recorded, or without a val split)."""
        path = self.path / EVAL_IMAGES_FILE
        return read_eval_images(path) if path.is_file() else None

    def best_metrics(self, metric: str = "mIoU") -> dict | None:
        """The evaluation record with the highest `metric` (None before any evaluation): the history's peak,
        chosen on val. A run's val mIoU is its final evaluation's (`final_metrics`), of the weights it hands on."""
        evals = [r for r in self.metrics("eval") if r.get(metric) is not None]
        return max(evals, key=lambda r: r[metric]) if evals else None

    def final_metrics(self) -> dict | None:
        """The evaluation at the run's last step, of its last weights, which `load_model` and `predict` use by
        default: the one meaning of a run's val mIoU (None for a run not finished or never evaluated there)."""
        evals = [r for r in self.metrics("eval") if r.get("step") == self.config.steps and r.get("mIoU") is not None]
        return evals[-1] if evals else None

    def checkpoint(self, which: str = "last") -> Path:
        """Path of the "best" or "last" weights; "best" falls back to "last" when never evaluated."""
        if which not in ("best", "last"):
            raise ValueError(f"which must be 'best' or 'last', got {which!r}")
        ckpt = self.path / "checkpoints"
        path = ckpt / checkpoint.BEST_FILE
        if which == "last" or not path.exists():
            last = checkpoint.last_checkpoint(ckpt)
            path = last / checkpoint.WEIGHTS_FILE if last is not None else ckpt / f"{which}.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"run {self.name} has no {which} checkpoint in {ckpt}")
        return path

    def load_model(self, which: str = "last", *, model=None, device="cpu"):
        """The run's model (built from its config unless `model` is given) with the weights, in eval mode."""
        self.checkpoint(which)  # a missing checkpoint fails here, before the model is built
        if model is None:
            cfg = self.config
            try:  # a pretrained checkpoint's config defines the architecture; its weights are replaced
                model = build_model(cfg.model, size=cfg.size, pretrained=cfg.pretrained)
            except OSError:  # checkpoint not available here: the size preset (load_state_dict checks shapes)
                model = build_model(cfg.model, size=cfg.size, pretrained=None)
        model.load_state_dict(self.weights(which))
        return model.to(device).eval()

    def weights(self, which: str = "last") -> dict:
        """The model's state dict of checkpoint `which` ("best" or "last")."""
        path = self.checkpoint(which)
        return load_weights(path, prefix="model/" if path.name == checkpoint.WEIGHTS_FILE else "")


def resolve_run(name_or_path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> Run:
    """The run at a folder path, or named so in `root` (default: the runs folder); ValueError when neither is one."""
    path = Path(name_or_path)
    if not (path / CONFIG_FILE).is_file():
        path = (Path(root) if root else runs_dir()) / str(name_or_path)
    if not (path / CONFIG_FILE).is_file():
        raise ValueError(f"{name_or_path}: no run folder there, nor of that name in {Path(root) if root else runs_dir()}")
    return Run(path)


def list_runs(root: str | os.PathLike | None = None) -> list[Run]:
    """Every run folder under `root` (default: the runs folder), sorted by name."""
    root = Path(root) if root else runs_dir()
    if not root.is_dir():
        return []
    return [Run(p) for p in sorted(root.iterdir()) if (p / CONFIG_FILE).exists()]


def find_runs(*, data_root: str | os.PathLike | None = None, names=None, finished: bool = True,
              root: str | os.PathLike | None = None) -> list[Run]:
    """Runs trained on `data_root` (when given), among `names` (when given), finished ones only by default."""
    data_root = Path(data_root).resolve() if data_root is not None else None
    names = set(names) if names is not None else None
    return [r for r in list_runs(root) if (not finished or r.finished) and (names is None or r.name in names)
            and (data_root is None or (r.config.data_root and Path(r.config.data_root).resolve() == data_root))]


def best_run(runs=None, metric: str = "mIoU") -> Run | None:
    """The run whose final evaluation scores highest on `metric` (None when no run has one)."""
    scored = [(r.final_metrics(), r) for r in (list_runs() if runs is None else runs)]
    scored = [(m[metric], r) for m, r in scored if m is not None]
    return max(scored, key=lambda t: t[0])[1] if scored else None
