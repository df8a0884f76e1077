"""Loading public checkpoints (a hub id or a local folder) with an 11-class head, offline-friendly.

Nothing is downloaded behind the user's back when the hub is offline: a missing checkpoint raises
`PretrainedNotFoundError`, which says the exact `hf download` command and the folder to pass. A hub
id whose last part names a folder under data/raw/weights/ uses that folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from trashlib import paths
from trashlib.classes import CLASS_NAMES


class PretrainedNotFoundError(FileNotFoundError):
    """A checkpoint could not be found locally (and the hub was unreachable or offline)."""


def weights_dir() -> Path:
    """data/raw/weights/: where downloaded checkpoints are expected (one folder per checkpoint)."""
    return paths.RAW_DIR / "weights"


def resolve_pretrained(pretrained: str | os.PathLike) -> str:
    """A local folder for `pretrained` if one exists, else the hub id unchanged."""
    path = Path(pretrained).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise PretrainedNotFoundError(f"{path} has no config.json: not a transformers checkpoint folder "
                                          "(save one with model.save_pretrained(folder))")
        return str(path.resolve())
    local = weights_dir() / str(pretrained).rstrip("/").split("/")[-1]
    if (local / "config.json").exists():
        return str(local)
    return str(pretrained)


def missing_message(pretrained: str | os.PathLike, error: Exception) -> str:
    """How to get a checkpoint onto this machine."""
    name = str(pretrained).rstrip("/").split("/")[-1]
    target = weights_dir() / name
    return (f"cannot load pretrained weights {str(pretrained)!r} ({type(error).__name__}: {error}).\n"
            f"Download them on a machine with internet access:\n"
            f"    hf download {pretrained} --local-dir {target}\n"
            f"then pass pretrained={str(target)!r} (or the hub id; a folder of that name under "
            f"{weights_dir()} is used automatically). Without HF_HUB_OFFLINE=1 the hub is tried directly.")


def label_kwargs(num_classes: int) -> dict:
    """num_labels / id2label / label2id for a head with `num_classes` outputs (trashlib's class names)."""
    names = list(CLASS_NAMES) if num_classes == len(CLASS_NAMES) else [f"class_{i}" for i in range(num_classes)]
    return {"num_labels": num_classes, "id2label": dict(enumerate(names)),
            "label2id": {n: i for i, n in enumerate(names)}}


def from_pretrained(model_class, pretrained: str | os.PathLike, **kwargs):
    """`model_class.from_pretrained` with a clear error when the checkpoint is not available."""
    source = resolve_pretrained(pretrained)
    try:
        return model_class.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:  # offline / unknown repo / missing files all surface as OSError
        if Path(source).exists() and not isinstance(error, OSError):
            raise
        raise PretrainedNotFoundError(missing_message(pretrained, error)) from error


def load_config(config_class, pretrained: str | os.PathLike, **kwargs):
    """`config_class.from_pretrained` with the same clear error."""
    return from_pretrained(config_class, pretrained, **kwargs)


def load_with_head(model_class, pretrained: str | os.PathLike, *, num_classes: int, **kwargs):
    """A whole pretrained model whose class head is resized (and re-initialised) to `num_classes`."""
    return from_pretrained(model_class, pretrained, ignore_mismatched_sizes=True,
                           **label_kwargs(num_classes), **kwargs)
