"""The report's folder (reports/, or --out): its lock, what a killed report left there, the earlier run records.

A report holds LOCK_FILE while it runs (an flock the system frees when the process ends, even by
kill -9): a second report into the same folder is refused, as both would write the same files, and
the next report may remove what a killed one left: papermill's partial notebook (RUNNING) and the
temporaries of atomic writes of the files a report writes. metrics/_runs.json holds the run records
of notebooks run earlier (only their run times and statuses): a damaged file or entry is said and dropped.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import time
from pathlib import Path

from trashlib.io import read_json

try:
    import fcntl
except ImportError:  # Windows: reports are not locked
    fcntl = None

LOCK_FILE = ".report.lock"
RUNNING = ".{}.running.ipynb"  # papermill's output while a notebook runs (renamed when it has run)
# atomic_open's temporaries (`.<name>.XXXXXXXX.tmp`) of the files a report writes, by folder; the next
# report removes them once a minute old: a notebook run by hand (nbval, Jupyter) writes into reports/
# without the lock, but never for that long
_TEMPORARIES = {"": r"\.(index|\d\d_.+)\.html", "metrics": r"\..+\.json", "figures": r"\..+\.png"}
_STALE_S = 60


@contextlib.contextmanager
def report_lock(out_dir: Path):
    """Hold the folder's LOCK_FILE while a report runs (the system frees it when the process ends, even killed);
    FileExistsError naming the folder when another report holds it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK_FILE, "a+", encoding="utf-8") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                who = f.read().strip() or "another process"
                raise FileExistsError(f"{out_dir}: another report is running into this folder ({who}); wait for "
                                      "it to end, or give another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        yield


def remove_leftovers(out_dir: Path) -> list[Path]:
    """Delete what a killed report left in its folder: papermill's partial notebooks (RUNNING) and temporaries
    of atomic writes a minute old, in the folder, metrics/ and figures/. Call it holding the lock; returns them."""
    found = [p for p in out_dir.glob(RUNNING.format("[0-9][0-9]_*")) if p.is_file()]
    now = time.time()
    for sub, name in _TEMPORARIES.items():
        folder = out_dir / sub
        for p in folder.iterdir() if folder.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                if re.fullmatch(name + r"\.[a-z0-9_]{8}\.tmp", p.name) and p.is_file() \
                        and now - p.stat().st_mtime > _STALE_S:
                    found.append(p)
    for p in found:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return found


def _is_record(r) -> bool:
    """Whether an entry of _runs.json is a notebook run record as `run_notebook` returns it."""
    return isinstance(r, dict) and isinstance(r.get("notebook"), str) and isinstance(r.get("status"), str) \
        and isinstance(r.get("title", ""), str) and isinstance(r.get("error") or "", str) \
        and isinstance(r.get("parameters") or {}, dict) and (r.get("seconds") is None or (
            isinstance(r["seconds"], (int, float)) and not isinstance(r["seconds"], bool)
            and math.isfinite(r["seconds"]) and r["seconds"] >= 0))


def earlier_records(path: Path) -> list[dict]:
    """The records of _runs.json; a damaged file (or entry) is said and dropped: it holds only earlier run times."""
    if not path.exists():
        return []
    try:
        earlier = read_json(path)
    except (ValueError, OSError) as e:
        print(f"[report] {e}: the earlier notebooks' run records are dropped", flush=True)
        return []
    kept = [r for r in earlier if _is_record(r)] if isinstance(earlier, list) else []
    if not isinstance(earlier, list):
        print(f"[report] {path}: not a list of notebook run records; dropped", flush=True)
    elif len(kept) < len(earlier):
        print(f"[report] {path}: {len(earlier) - len(kept)} entries are not notebook run records; dropped", flush=True)
    return kept
