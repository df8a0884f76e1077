"""Training: `TrainConfig`, the one loop `train(cfg) -> Run`, and run folders (`Run`, `list_runs`, `best_run`).

Names are resolved lazily so that `python -m trashlib --help` does not import torch.
"""
from __future__ import annotations

from trashlib.training.config import TrainConfig

_LAZY = {
    "train": "trashlib.training.loop",
    "Run": "trashlib.training.runs",
    "list_runs": "trashlib.training.runs",
    "best_run": "trashlib.training.runs",
    "run_name": "trashlib.training.runs",
    "evaluate_split": "trashlib.training.evaluate",
}

__all__ = ["TrainConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trashlib.training' has no attribute {name!r}")
