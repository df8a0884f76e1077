"""Training: the one loop `train(cfg) -> Run` over a `TrainConfig` (trashlib.config).

Run folders (`Run`, `list_runs`, `best_run`, `find_runs`) live in `trashlib.runs`, since training,
inference, evaluation and the notebooks all read them.
"""
from trashlib.training.loop import resolve_precision, train

__all__ = ["resolve_precision", "train"]
