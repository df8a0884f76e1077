"""The notebooks' metrics files (reports/metrics/<notebook>.json) as the report reads them: whole, or not at all.

A file cut off, not JSON, holding NaN (save_metrics writes it as null), or holding at a key the wrap-up
page reads a value it cannot be (an mIoU of 30, text for a number, a negative spread, seeds that are
not a list) is unreadable, with the file, the key and the fault named: the page marks that notebook's
sections so instead of showing a number made from it, and `store.load_metrics` refuses it.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from trashlib.io import read_json
from trashlib.reporting.waterfall import NOTEBOOKS

_LEVEL = re.compile(r"mIoU(_mean)?$")  # keys holding an mIoU (or one per seed): a number in [0, 1]
_TEXT = ("run", "trunk_run", "stage", "reference", "built_on", "verdict", "trunk_copy_paste", "val_mIoU_from",
         "data_root", "split", "model")
_NAMES = ("run_names", "runs", "members", "seed_runs")
_RECORDS = {"variants": dict, "models": dict, "recipe": dict, "stages": list, "table": list}


def _is_number(v, low: float = -math.inf, high: float = math.inf) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high


def _value_problem(key: str, v, at: str) -> str | None:
    """Why the value of `key` (at path `at`) is not what the page reads there (None: fine, or a key it does not
    read)."""
    if v is None:
        return None
    if _LEVEL.search(key):
        ok = _is_number(v, 0, 1) or isinstance(v, list) and all(x is None or _is_number(x, 0, 1) for x in v)
        return None if ok else "must be an mIoU in [0, 1] (or a list of them)"
    if key.endswith("_std"):
        return None if _is_number(v, 0) else "must be a spread, a number >= 0"
    if key in ("per_class_iou", "test_per_class_iou"):
        values = [x for y in v.values() for x in (y.values() if isinstance(y, dict) else [y])] \
            if isinstance(v, dict) else [v]
        return None if all(x is None or _is_number(x, 0, 1) for x in values) else "must map classes to IoUs in [0, 1]"
    if key == "seeds":  # a list of seeds; rows of 05's stages and of comparison tables record a count
        count = at.startswith(("stages[", "table["))
        ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v) or \
            count and _is_number(v, 1) and isinstance(v, int)
        return None if ok else "must be a list of seeds (integers)" + (" or a count" if count else "")
    if key == "n_images_in_split":
        return None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else "must be a count of images"
    if key in _TEXT:
        return None if isinstance(v, str) else "must be text"
    if key in _NAMES:
        return None if isinstance(v, list) and all(isinstance(x, str) for x in v) else "must be a list of run names"
    if key in _RECORDS:
        kind = _RECORDS[key]
        items = v.values() if isinstance(v, dict) else v
        inner = kind is list or key in ("variants", "models")  # lists of records, or records by name
        ok = isinstance(v, kind) and (not inner or all(isinstance(x, dict) for x in items))
        return None if ok else f"must be {'a list' if kind is list else 'a mapping'}{' of records' if inner else ''}"
    return None


def metrics_problem(metrics, where: str = "", *, read: bool = True) -> str | None:
    """The first fault of a metrics record that the wrap-up page would misread, as `key.path: what`, else None.

    NaN and infinity are faults anywhere (save_metrics writes them as null). The keys the page reads (at
    the top, in each record of variants, models, stages and table, and in recipe) must hold what it reads
    there: an mIoU in [0, 1], a spread >= 0, seeds, run names, records.
    """
    if isinstance(metrics, float) and not math.isfinite(metrics):
        return f"{where or 'a value'}: {metrics} is not a number (save_metrics writes NaN as null)"
    children = []
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            at = f"{where}.{key}" if where else str(key)
            if read and (problem := _value_problem(str(key), value, at)) is not None:
                shown = json.dumps(value)
                return f"{at}: {problem}, got {shown if len(shown) <= 60 else shown[:57] + '...'}"
            if read and key in ("variants", "models") and isinstance(value, dict):  # records by name
                children += [(v, f"{at}.{k}", True) for k, v in value.items()]
            else:
                children.append((value, at, read and key in ("stages", "table", "recipe")))
    elif isinstance(metrics, list):
        children = [(value, f"{where}[{i}]", read) for i, value in enumerate(metrics)]
    for value, at, inner in children:
        if (problem := metrics_problem(value, at, read=inner)) is not None:
            return problem
    return None


def read_metrics(path: str | os.PathLike) -> dict:
    """A metrics file read whole: a JSON object without a fault `metrics_problem` finds, else a ValueError
    naming the file (and the key)."""
    metrics = read_json(path)
    problem = "not a JSON object" if not isinstance(metrics, dict) else metrics_problem(metrics)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    return metrics


def read_all_metrics(metrics_dir: Path) -> tuple[dict, dict[str, str]]:
    """{notebook: metrics or None} for the numbered notebooks, and {notebook: why its file is unreadable}.

    An unreadable file gives None, like a notebook that has not run, and its entry in the second mapping.
    """
    found, unreadable = {}, {}
    names = list(NOTEBOOKS) + sorted(p.stem for p in metrics_dir.glob("[0-9][0-9]_*.json") if p.stem not in NOTEBOOKS)
    for nb in names:
        path = metrics_dir / f"{nb}.json"
        found[nb] = None
        if path.exists():
            try:
                found[nb] = read_metrics(path)
            except (ValueError, OSError) as e:
                unreadable[nb] = str(e)
    return found, unreadable
