"""The report runner: run the numbered notebooks with papermill, render HTML, write the wrap-up page (index.html).

Notebooks record their key numbers and figures in the metrics store (`trashlib.reporting.store`), so later
notebooks and the index read results instead of retraining. A profile (smoke, cpu, gpu, or a YAML
file) supplies each notebook's parameters; without a profile a notebook runs its own defaults, which
are the cheap smoke run (that is what `pytest --nbval-lax` executes).

Profiles and the parameters they give each notebook are `trashlib.reporting.parameters`.

A notebook is renamed to its final name only once it has run, and every file is written atomically,
so nothing half-written is ever taken for a result; a report holds its folder's lock while it runs
and removes what a killed one left (`trashlib.reporting.folder`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

from trashlib import paths, progress
from trashlib.io import atomic_open, write_json
from trashlib.reporting.folder import RUNNING, earlier_records, remove_leftovers, report_lock
from trashlib.reporting.parameters import load_profile, notebook_parameters, notebook_paths
from trashlib.reporting.records import jsonable
from trashlib.reporting.wrapup import build_page


def _title(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return nb_path.stem


# a button that folds every code cell's input away (and back), so the page reads as a report; the outputs stay
CODE_TOGGLE = """<style>body.trashlib-no-code .jp-CodeCell .jp-Cell-inputWrapper {display: none}
#trashlib-code-toggle {position: fixed; top: 8px; right: 8px; z-index: 10; font: 13px sans-serif; padding: 4px 10px;
cursor: pointer}</style>
<button id="trashlib-code-toggle" type="button" onclick="var hidden = document.body.classList.toggle('trashlib-no-code');
this.textContent = hidden ? 'Show the code' : 'Hide the code';">Hide the code</button>"""


def render_html(executed: Path, out: Path) -> Path:
    """Executed notebook -> standalone HTML (figures embedded), with a button that folds the code away, written
    atomically."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_filename(str(executed))
    with atomic_open(out, "w", encoding="utf-8") as f:
        f.write(with_code_toggle(body))
    return out


def with_code_toggle(page: str) -> str:
    """The page with `CODE_TOGGLE` right after its <body> tag (unchanged when it has none)."""
    match = re.search(r"<body[^>]*>", page)
    return page if match is None else page[:match.end()] + "\n" + CODE_TOGGLE + page[match.end():]


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
    """reports/index.html, the wrap-up page (`trashlib.reporting.wrapup`), from the metrics and the notebooks' run records."""
    write_json(paths.REPORTS_DIR / "metrics" / "_runs.json", jsonable(records))
    return build_page(records, profile=profile, reports_dir=paths.REPORTS_DIR)
