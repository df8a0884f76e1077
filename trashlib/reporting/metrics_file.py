"""The notebooks' metrics files (reports/metrics/<notebook>.json) as the report reads them: whole, as the
notebook's typed record (`trashlib.reporting.records`), or not at all.

A file cut off, not JSON, of another schema version, holding NaN (save_metrics writes it as null), a key
its record does not declare, or at a key a value of another kind (an mIoU of 30, text for a number, a
negative spread, seeds that are not a list) is unreadable, with the file, the key and the fault named:
the page marks that notebook's sections so instead of showing a number made from it, and
`store.load_metrics` refuses it.
"""
from __future__ import annotations

import os
from pathlib import Path

from trashlib.io import read_json
from trashlib.reporting.records import NOTEBOOKS, NotebookRecord, record_class


def read_record(path: str | os.PathLike) -> NotebookRecord:
    """The record of one metrics file (its notebook is the file's name), else a ValueError naming the file and
    the key."""
    path = Path(path)
    return record_class(path.stem).from_file_dict(read_json(path), where=str(path))


def read_all_records(metrics_dir: Path) -> tuple[dict[str, NotebookRecord | None], dict[str, str]]:
    """{notebook: its record, or None} for the numbered notebooks, and {notebook: why its file is unreadable}.

    An unreadable file gives None, like a notebook that has not run, and its entry in the second mapping.
    """
    found, unreadable = {}, {}
    for nb in NOTEBOOKS:
        path = metrics_dir / f"{nb}.json"
        found[nb] = None
        if path.exists():
            try:
                found[nb] = read_record(path)
            except (ValueError, OSError) as e:
                unreadable[nb] = str(e)
    return found, unreadable
