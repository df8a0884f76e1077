"""Checkpoints as safetensors (loaded without unpickling code) plus a JSON file of the scalar state.

`best.safetensors` holds model weights only (plain state-dict keys). `last.safetensors` holds what an
exact resume needs as tensors: `model/<key>`, `optim/<param index>/<key>` and `rng/...`;
`last_state.json` holds the rest (optimizer param groups, step, RNG states of numpy and python, data
order, best score, class weights). Both files carry the step, so a crash between the two writes is
detected instead of resuming from a mismatched pair.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from trashlib.io import atomic_open, read_json, write_json


def save_weights(path: str | os.PathLike, tensors: dict[str, torch.Tensor], *, metadata: dict | None = None) -> Path:
    """Write tensors to a safetensors file atomically; metadata values are JSON-encoded strings."""
    # clone: safetensors refuses tensors sharing storage (tied weights) and non-contiguous views
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_open(path, "wb") as f:
        f.write(save(flat, metadata=meta))
    return Path(path)


def load_weights(path: str | os.PathLike, *, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (those under `prefix`, with the prefix removed)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    tensors = load_file(str(path))
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON-decoded metadata of a safetensors file."""
    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}


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


def save_training_state(ckpt_dir: str | os.PathLike, *, model_state: dict, optimizer_state: dict,
                        state: dict) -> None:
    """Write last.safetensors then last_state.json: everything `load_training_state` needs."""
    ckpt_dir = Path(ckpt_dir)
    opt_tensors, opt_meta = flatten_optimizer(optimizer_state)
    rng_tensors, rng_meta = rng_state()
    tensors = {**{f"model/{k}": v for k, v in model_state.items()}, **opt_tensors, **rng_tensors}
    save_weights(ckpt_dir / "last.safetensors", tensors, metadata={"step": state["step"]})
    write_json(ckpt_dir / "last_state.json", {**state, "optimizer": opt_meta, "rng": rng_meta}, indent=None)


def load_training_state(ckpt_dir: str | os.PathLike) -> tuple[dict, dict, dict]:
    """(model state dict, optimizer state dict, scalar state) of the last checkpoint; restores no RNG."""
    ckpt_dir = Path(ckpt_dir)
    state = read_json(ckpt_dir / "last_state.json")
    tensor_path = ckpt_dir / "last.safetensors"
    step = read_metadata(tensor_path).get("step")
    if step != state["step"]:
        raise ValueError(f"{tensor_path} is from step {step} but last_state.json from step {state['step']}: "
                         "the checkpoint was interrupted while being written")
    tensors = load_weights(tensor_path)
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    state["rng_tensors"] = {k: v for k, v in tensors.items() if k.startswith("rng/")}
    return model_state, unflatten_optimizer(tensors, state.pop("optimizer")), state
