"""The report: run the numbered notebooks with papermill, render HTML, write the wrap-up page (index.html).

Notebooks record their key numbers with `save_metrics` and their figures with `save_figure`, so later
notebooks and the index read results instead of retraining. A profile (smoke, cpu, gpu, or a YAML
file) supplies each notebook's parameters; without a profile a notebook runs its own defaults, which
are the cheap smoke run (that is what `pytest --nbval-lax` executes).

Profiles and the parameters they give each notebook are `trashlib.parameters`.

A notebook is renamed to its final name only once it has run, and every file is written atomically,
so nothing half-written is ever taken for a result; a report holds its folder's lock while it runs
and removes what a killed one left (`trashlib.report_folder`).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from trashlib import paths, progress
from trashlib.io import atomic_open, write_json
from trashlib.metrics_file import read_metrics
from trashlib.parameters import load_profile, notebook_parameters, notebook_paths
from trashlib.report_folder import RUNNING, earlier_records, remove_leftovers, report_lock
from trashlib.wrapup import build_page



def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_metrics(notebook: str, metrics: dict) -> Path:
    """Write a notebook's key numbers to reports/metrics/<notebook>.json (atomic; NaN -> null)."""
    return write_json(paths.REPORTS_DIR / "metrics" / f"{notebook}.json", _jsonable(metrics))


def load_metrics(notebook: str) -> dict | None:
    """The metrics a notebook saved, or None if it has not run; a ValueError naming the file (and the key) when
    it cannot be read whole (`trashlib.metrics_file`)."""
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


def _title(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return nb_path.stem


def render_html(executed: Path, out: Path) -> Path:
    """Executed notebook -> standalone HTML (figures embedded), written atomically."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_filename(str(executed))
    with atomic_open(out, "w", encoding="utf-8") as f:
        f.write(body)
    return out


def _kernel_name() -> str:
    """The kernel installed with the project's environment ("trashlib"), else the default python3."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "trashlib" if "trashlib" in KernelSpecManager().find_kernel_specs() else "python3"


# the kernel's own log, not the notebook's output: it warns at every start that it talks to papermill over
# local TCP without encryption, one line per notebook that tells the reader of `make report` nothing
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def run_notebook(nb_path: Path, parameters: dict, *, out_dir: Path) -> dict:
    """Execute one notebook with papermill into out_dir (.ipynb and .html); returns a status record."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / nb_path.name
    tmp = out_dir / RUNNING.format(nb_path.stem)
    start = time.perf_counter()
    status, error = "ok", None
    try:
        with _environment(**{progress.ENV: "0"}):  # a rendered report holds results, not progress bars
            pm.execute_notebook(str(nb_path), str(tmp), parameters=parameters, cwd=str(nb_path.parent),
                                progress_bar=False, kernel_name=_kernel_name(), extra_arguments=KERNEL_ARGUMENTS)
    except Exception as e:  # the failed notebook is still rendered, so the reader sees the traceback
        status, error = "failed", f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
    seconds = time.perf_counter() - start
    if tmp.exists():
        os.replace(tmp, executed)
        render_html(executed, out_dir / f"{nb_path.stem}.html")
    return {"notebook": nb_path.stem, "title": _title(nb_path), "status": status, "error": error,
            "seconds": round(seconds, 1), "parameters": parameters}


@contextlib.contextmanager
def _environment(**values: str):
    """Set environment variables for the duration (the notebook kernels inherit them), then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _reports_dir(out_dir: str | os.PathLike | None):
    """Send this process's and the notebook kernels' report files to out_dir for the duration."""
    if out_dir is None:
        yield paths.REPORTS_DIR
        return
    saved = paths.REPORTS_DIR
    paths.REPORTS_DIR = Path(out_dir).resolve()
    try:
        with _environment(TRASHLIB_REPORTS=str(paths.REPORTS_DIR)):
            yield paths.REPORTS_DIR
    finally:
        paths.REPORTS_DIR = saved


def make_report(profile: str = "cpu", notebooks: list[str] | None = None, *, data_root: str | None = None,
                out_dir: str | os.PathLike | None = None, stop_on_error: bool = True) -> list[dict]:
    """Run the notebooks in order with a profile, render HTML and write index.html (into reports/ or out_dir)."""
    with _reports_dir(out_dir) as folder, report_lock(folder):
        for p in remove_leftovers(folder):
            print(f"[report] removed {p.relative_to(folder)}, left by an interrupted report", flush=True)
        return _make_report(profile, notebooks, data_root=data_root, stop_on_error=stop_on_error)


def _make_report(profile, notebooks, *, data_root, stop_on_error) -> list[dict]:
    prof = load_profile(profile)
    out_dir = paths.REPORTS_DIR
    records, index_error = [], None
    for nb in notebook_paths(notebooks):
        params = notebook_parameters(prof, nb.stem, data_root=data_root)
        print(f"[report] {nb.stem} ({profile}) ...", flush=True)
        rec = run_notebook(nb, params, out_dir=out_dir)
        print(f"[report] {nb.stem}: {rec['status']} in {rec['seconds']:.0f} s" + (f" - {rec['error']}" if rec["error"] else ""), flush=True)
        records.append(rec)
        index_error = _write_index_safely(_merge_records(out_dir, records), profile=profile)
        if rec["status"] != "ok" and stop_on_error:
            raise RuntimeError(f"notebook {nb.stem} failed ({rec['error']}); see {out_dir / (nb.stem + '.html')}")
    if index_error:  # the notebooks all ran; only the page is missing
        raise RuntimeError(f"the notebooks ran, but {out_dir / 'index.html'} could not be written: {index_error}")
    return records


def _write_index_safely(records: list[dict], *, profile: str) -> str | None:
    """Write index.html; a failure is reported and returned, so that the remaining notebooks still run."""
    try:
        write_index(records, profile=profile)
    except (ValueError, KeyError, TypeError, OSError) as e:
        message = f"{type(e).__name__}: {e}"
        print(f"[report] index.html not written ({message}); the notebooks go on", flush=True)
        return message
    return None


def _merge_records(out_dir: Path, records: list[dict]) -> list[dict]:
    """This run's records plus earlier ones of notebooks not rerun, so running one notebook keeps the index whole."""
    earlier = earlier_records(out_dir / "metrics" / "_runs.json")
    fresh = {r["notebook"] for r in records}
    kept = [r for r in earlier if r["notebook"] not in fresh and (out_dir / f"{r['notebook']}.html").exists()]
    return sorted(kept + records, key=lambda r: r["notebook"])


def write_index(records: list[dict], *, profile: str) -> Path:
    """reports/index.html, the wrap-up page (`trashlib.wrapup`), from the metrics and the notebooks' run records."""
    write_json(paths.REPORTS_DIR / "metrics" / "_runs.json", _jsonable(records))
    return build_page(records, profile=profile, reports_dir=paths.REPORTS_DIR)
