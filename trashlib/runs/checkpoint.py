"""Checkpoints as safetensors (loaded without unpickling code) plus a JSON file of the scalar state.

`best.safetensors` holds model weights only (plain state-dict keys). The last checkpoint is a folder
`checkpoints/last-<step>/` holding a pair: `last.safetensors` (what an exact resume needs as tensors:
`model/<key>`, `optim/<param index>/<key>`, `rng/...`) and `last_state.json` (the rest: optimizer
param groups, step, RNG states of numpy and python, data order, best score, class weights). The pair
is one unit: written and fsynced in `last-<step>.tmp/`, renamed to `last-<step>/`, and only then is
the older folder removed, so a kill at any moment leaves at least one complete pair; `last_checkpoint`
picks the newest. Runs written before this layout (the pair directly in `checkpoints/`) still load.
Every load refuses a file that is not safetensors (naming it) and weights holding NaN or infinity.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from trashlib.io import atomic_open, read_json, write_json

WEIGHTS_FILE, STATE_FILE, BEST_FILE = "last.safetensors", "last_state.json", "best.safetensors"
_LAST = re.compile(r"last-(\d+)")
# temporaries of this module: step folders being written or removed, and atomic_open's `.<name>.XXXXXXXX.tmp`
_TEMPORARY = re.compile(r"last-\d+(\.old)?\.tmp|\.(best\.safetensors|last\.safetensors|last_state\.json)\.[a-z0-9_]{8}\.tmp")


def save_weights(path: str | os.PathLike, tensors: dict[str, torch.Tensor], *, metadata: dict | None = None) -> Path:
    """Write tensors to a safetensors file atomically; metadata values are JSON-encoded strings."""
    # clone: safetensors refuses tensors sharing storage (tied weights) and non-contiguous views
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_open(path, "wb") as f:
        f.write(save(flat, metadata=meta))
    return Path(path)


def _unreadable(path: Path, error: Exception) -> ValueError:
    return ValueError(f"{path} is not a readable safetensors file ({error}): it is truncated or corrupt; "
                      "copy it again or use another checkpoint")


def load_weights(path: str | os.PathLike, *, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (those under `prefix`, with the prefix removed); refuses NaN and infinity."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise _unreadable(path, e) from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: {len(bad)} tensor(s) hold NaN or infinite (non-finite) values, e.g. {bad[0]!r}; "
                         "refusing to load weights of a diverged run")
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON-decoded metadata of a safetensors file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path} does not exist") from None
    except (SafetensorError, OSError) as e:
        raise _unreadable(path, e) from None
    try:
        return {k: json.loads(v) for k, v in meta.items()}
    except json.JSONDecodeError:
        raise ValueError(f"{path}: metadata is not JSON (not written by trashlib?)") from None


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, JSON) of the torch, CUDA, numpy and python global RNG states."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return tensors, {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
                     "python": [version, list(internal), gauss_next]}


def restore_rng(tensors: dict[str, torch.Tensor], state: dict) -> None:
    """Inverse of `rng_state`."""
    torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state dict as (tensors `optim/<param>/<key>`, JSON of param groups and scalars)."""
    tensors, scalars = {}, {}
    for pid, entries in state_dict["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim/{pid}/{key}"] = value
            else:
                scalars[f"{pid}/{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of `flatten_optimizer`."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split("/", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def last_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The folder of the newest complete last-checkpoint pair (`last-<step>/`, or the older layout's
    `checkpoints/` itself), None when there is none."""
    ckpt_dir = Path(ckpt_dir)
    folders = sorted((int(m[1]), p) for p in (ckpt_dir.iterdir() if ckpt_dir.is_dir() else ())
                     if (m := _LAST.fullmatch(p.name)) and p.is_dir())
    for _, folder in reversed(folders):
        if (folder / WEIGHTS_FILE).is_file() and (folder / STATE_FILE).is_file():
            return folder
    if (ckpt_dir / WEIGHTS_FILE).is_file() and (ckpt_dir / STATE_FILE).is_file():
        return ckpt_dir
    return None


def checkpoint_step(folder: str | os.PathLike) -> int:
    """The step of a last-checkpoint folder (as returned by `last_checkpoint`)."""
    folder = Path(folder)
    m = _LAST.fullmatch(folder.name)
    return int(m[1]) if m else read_json(folder / STATE_FILE)["step"]


def _fsync_dir(path: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make a rename in this folder durable
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _discard(folder: Path) -> None:
    """Remove a step folder: renamed to a temporary name first, so a half-removed one is never read."""
    doomed = folder.with_name(folder.name + ".old.tmp")
    if doomed.exists():  # left by a kill during an earlier removal
        shutil.rmtree(doomed)
    os.replace(folder, doomed)
    shutil.rmtree(doomed)


def remove_temporary(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Delete what a killed save left in `ckpt_dir` (this module's temporary names only); returns them."""
    ckpt_dir = Path(ckpt_dir)
    found = [p for p in (ckpt_dir.iterdir() if ckpt_dir.is_dir() else ()) if _TEMPORARY.fullmatch(p.name)]
    for p in found:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return found


def clear_checkpoints(ckpt_dir: str | os.PathLike) -> None:
    """Delete every checkpoint this module wrote in `ckpt_dir` (and nothing else), for a fresh start."""
    ckpt_dir = Path(ckpt_dir)
    remove_temporary(ckpt_dir)
    for p in (ckpt_dir.iterdir() if ckpt_dir.is_dir() else ()):
        if _LAST.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
            _discard(p)
        elif p.name in (WEIGHTS_FILE, STATE_FILE, BEST_FILE):
            p.unlink()


def save_training_state(ckpt_dir: str | os.PathLike, *, model_state: dict, optimizer_state: dict,
                        state: dict) -> Path:
    """Write the pair `last-<step>/` (see the module docstring) and remove older ones; returns the folder."""
    ckpt_dir = Path(ckpt_dir)
    step = state["step"]
    opt_tensors, opt_meta = flatten_optimizer(optimizer_state)
    rng_tensors, rng_meta = rng_state()
    tensors = {**{f"model/{k}": v for k, v in model_state.items()}, **opt_tensors, **rng_tensors}
    final, tmp = ckpt_dir / f"last-{step}", ckpt_dir / f"last-{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_weights(tmp / WEIGHTS_FILE, tensors, metadata={"step": step})  # each file fsynced by atomic_open
    write_json(tmp / STATE_FILE, {**state, "optimizer": opt_meta, "rng": rng_meta}, indent=None)
    _fsync_dir(tmp)
    if final.exists():  # only an incomplete one (a complete one would have been resumed from); the older
        _discard(final)  # complete pair stays until the rename below, so a kill here loses nothing
    os.replace(tmp, final)
    _fsync_dir(ckpt_dir)
    for p in list(ckpt_dir.iterdir()):  # the new pair is durable: older ones (and the old layout's) can go
        if _LAST.fullmatch(p.name) and p != final and p.is_dir() and not p.is_symlink():
            _discard(p)
    for name in (WEIGHTS_FILE, STATE_FILE):
        (ckpt_dir / name).unlink(missing_ok=True)
    return final


def load_training_state(ckpt_dir: str | os.PathLike) -> tuple[dict, dict, dict]:
    """(model state dict, optimizer state dict, scalar state) of the last checkpoint; restores no RNG."""
    folder = last_checkpoint(ckpt_dir)
    if folder is None:
        raise FileNotFoundError(f"{ckpt_dir} holds no complete last checkpoint")
    state = read_json(folder / STATE_FILE)
    tensor_path = folder / WEIGHTS_FILE
    step = read_metadata(tensor_path).get("step")
    if step != state.get("step"):
        raise ValueError(f"{tensor_path} is from step {step} but {STATE_FILE} from step {state.get('step')}: "
                         "the checkpoint was interrupted while being written")
    tensors = load_weights(tensor_path)
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    state["rng_tensors"] = {k: v for k, v in tensors.items() if k.startswith("rng/")}
    return model_state, unflatten_optimizer(tensors, state.pop("optimizer")), state
