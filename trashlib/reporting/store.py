"""The metrics store: each notebook's key numbers (reports/metrics/<notebook>.json) and figures
(reports/figures/<name>.png), written atomically, and the runs that notebooks recorded there.

Later notebooks and the wrap-up page read these instead of retraining.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from trashlib import paths
from trashlib.io import atomic_open, write_json
from trashlib.reporting.metrics_file import read_metrics


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_metrics(notebook: str, metrics: dict) -> Path:
    """Write a notebook's key numbers to reports/metrics/<notebook>.json (atomic; NaN -> null)."""
    return write_json(paths.REPORTS_DIR / "metrics" / f"{notebook}.json", jsonable(metrics))


def load_metrics(notebook: str) -> dict | None:
    """The metrics a notebook saved, or None if it has not run; a ValueError naming the file (and the key) when
    it cannot be read whole (`trashlib.reporting.metrics_file`)."""
    path = paths.REPORTS_DIR / "metrics" / f"{notebook}.json"
    if not path.exists():
        return None
    try:
        return read_metrics(path)
    except ValueError as e:
        raise ValueError(f"{e}; run {notebook} again to write it anew") from None


def save_figure(fig, name: str, *, dpi: int = 110) -> None:
    """Save a matplotlib figure to reports/figures/<name>.png (atomic; `figure_path(name)`).

    It returns nothing, so a notebook cell that ends with it shows the figure and no path.
    """
    with atomic_open(figure_path(name), "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")


def figure_path(name: str) -> Path:
    """Where `save_figure` puts the figure `name`."""
    return paths.REPORTS_DIR / "figures" / f"{name}.png"


def reported_runs(notebooks) -> list[str]:
    """Names of the runs that notebooks recorded in their metrics ("run" or "runs"), in order, no repeats."""
    names = []
    for nb in notebooks:
        m = load_metrics(nb) or {}
        for name in [m["run"]] if "run" in m else m.get("runs", []):
            if name not in names:
                names.append(name)
    return names


def _names(value, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where} must be a run name or a list of run names, got {value!r}")
    return value


def reported_run_groups(notebooks) -> dict[str, list[str]]:
    """Run names that notebooks recorded in their metrics, grouped so that the seeds of one arm share a group.

    Read per notebook, labelled with its number: "run_names" (one group, "02 seeds"), "trunk_run"
    ("02 trunk"), "variants" and "models" ({name: {"run_names": [...]}}, a group per arm, "04 online",
    "03 segformer"), then "run" and "runs" (runs not yet grouped, by model, "03 mask2former-dinat-tiny"). A notebook that has
    not run is skipped; a run already in an earlier group is not repeated; a malformed entry is a
    ValueError naming the metrics file and the key.
    """
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()

    def add(label: str, names: list[str]) -> None:
        fresh = [n for n in dict.fromkeys(names) if n not in seen]
        seen.update(fresh)
        if fresh:
            groups.setdefault(label, []).extend(fresh)

    for nb in notebooks:
        m = load_metrics(nb)
        if m is None:
            continue
        where, number = paths.REPORTS_DIR / "metrics" / f"{nb}.json", nb.split("_", 1)[0]
        if not isinstance(m, dict):
            raise ValueError(f"{where}: the metrics must be a JSON object, got {type(m).__name__}")
        if "run_names" in m:
            add(f"{number} seeds", _names(m["run_names"], f"{where}: run_names"))
        if m.get("trunk_run") is not None:
            add(f"{number} trunk", _names(m["trunk_run"], f"{where}: trunk_run"))
        for key in ("variants", "models"):  # arms with their seeds first: a flat `runs` list must not merge them
            arms = m.get(key) or {}
            if not isinstance(arms, dict):
                raise ValueError(f"{where}: {key} must be a mapping of name to {{run_names: [...]}}")
            for arm, record in arms.items():
                if not isinstance(record, dict) or "run_names" not in record:
                    raise ValueError(f"{where}: {key}.{arm} must be a mapping with run_names")
                add(f"{number} {arm}", _names(record["run_names"], f"{where}: {key}.{arm}.run_names"))
        for key in ("run", "runs"):
            for name in _names(m[key], f"{where}: {key}") if m.get(key) is not None else []:
                add(f"{number} {name.split('_', 1)[0]}", [name])
    return groups
