"""The metrics store: each notebook's record (reports/metrics/<notebook>.json, one typed schema per notebook:
`trashlib.reporting.records`) and figures (reports/figures/<name>.png), written atomically, and the runs
that notebooks recorded there.

Later notebooks and the wrap-up page read these instead of retraining.
"""
from __future__ import annotations

from pathlib import Path

from trashlib import paths
from trashlib.io import write_json
from trashlib.plots.files import write_png
from trashlib.reporting.metrics_file import read_record
from trashlib.reporting.records import (BackbonesRecord, BaselineRecord, CopyPasteRecord, NotebookRecord, PseudoRecord,
                                        SubmissionRecord, jsonable, record_class)


def save_metrics(record: NotebookRecord) -> None:
    """Write a notebook's record to reports/metrics/<notebook>.json (`metrics_path`; atomic), with its schema and
    version. It returns nothing, so a notebook cell that ends with it shows no path."""
    if not isinstance(record, NotebookRecord):
        raise TypeError(f"save_metrics takes a notebook's record (trashlib.reporting.records), got "
                        f"{type(record).__name__}")
    write_json(metrics_path(record.NOTEBOOK), jsonable(record.file_dict()))


def metrics_path(notebook: str) -> Path:
    """Where `save_metrics` puts the record of `notebook`."""
    return paths.REPORTS_DIR / "metrics" / f"{notebook}.json"


def load_metrics(notebook: str) -> NotebookRecord | None:
    """The record a notebook saved (of its class in `records.RECORDS`), or None if it has not run; a
    ValueError naming the file and the key when it cannot be read whole (`trashlib.reporting.metrics_file`)."""
    record_class(notebook)  # an unknown notebook is an error, not "has not run"
    path = metrics_path(notebook)
    if not path.exists():
        return None
    try:
        return read_record(path)
    except ValueError as e:
        raise ValueError(f"{e}; run {notebook} again to write it anew") from None


def save_figure(fig, name: str, *, dpi: int = 110) -> None:
    """Save a matplotlib figure to reports/figures/<name>.png (atomic; `figure_path(name)`).

    It returns nothing, so a notebook cell that ends with it shows the figure and no path.
    """
    write_png(fig, figure_path(name), dpi=dpi)


def figure_path(name: str) -> Path:
    """Where `save_figure` puts the figure `name`."""
    return paths.REPORTS_DIR / "figures" / f"{name}.png"


def _arms(m: NotebookRecord) -> dict:
    """A record's arms over seeds by name (03's models, 04 and 06's variants)."""
    return m.models if isinstance(m, BackbonesRecord) else \
        m.variants if isinstance(m, (CopyPasteRecord, PseudoRecord)) else {}


def _runs(m: NotebookRecord) -> list[str]:
    """The runs a record lists one by one (03 and 04's `runs`, 07's submitted `run`)."""
    if isinstance(m, (BackbonesRecord, CopyPasteRecord)):
        return list(m.runs)
    return [m.run] if isinstance(m, SubmissionRecord) and m.run else []


def reported_run_groups(notebooks) -> dict[str, list[str]]:
    """Run names that notebooks recorded in their records, grouped so that the seeds of one arm share a group.

    Read per notebook, labelled with its number: `run_names` (02's seeds, "02 seeds"), `trunk_run` ("02
    trunk"), `variants` and `models` (a group per arm, "04 online", "03 segformer"), then `run` and `runs`
    (runs not yet grouped, by model, "03 mask2former-dinat-tiny"). A notebook that has not run is skipped;
    a run already in an earlier group is not repeated.
    """
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()

    def add(label: str, names) -> None:
        fresh = [n for n in dict.fromkeys(names) if n not in seen]
        seen.update(fresh)
        if fresh:
            groups.setdefault(label, []).extend(fresh)

    for nb in notebooks:
        m = load_metrics(nb)
        if m is None:
            continue
        number = nb.split("_", 1)[0]
        if isinstance(m, BaselineRecord):
            add(f"{number} seeds", m.run_names)
        if isinstance(m, (BaselineRecord, PseudoRecord)) and m.trunk_run:
            add(f"{number} trunk", [m.trunk_run])
        for arm, record in _arms(m).items():  # arms with their seeds first: a flat list must not merge them
            add(f"{number} {arm}", record.run_names)
        for name in _runs(m):
            add(f"{number} {name.split('_', 1)[0]}", [name])
    return groups
