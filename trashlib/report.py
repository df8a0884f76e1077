"""The report: run the numbered notebooks with papermill, render HTML, write an index page.

Notebooks record their key numbers with `save_metrics` and their figures with `save_figure`, so later
notebooks and the index read results instead of retraining. A profile (smoke, cpu, gpu, or a YAML
file) supplies each notebook's parameters; without a profile a notebook runs its own defaults, which
are the cheap smoke run (that is what `pytest --nbval-lax` executes).

A profile file has four top-level keys: `description`; `defaults`, parameters for every notebook that
declares them (data_root); `training`, the training budget (TrainConfig fields) that every training
notebook receives as its one `training` parameter and turns into a config with `training_config`; and
`notebooks`, per notebook its parameters, where a `training:` mapping overrides single budget keys.
Every key must name a parameter of its notebook's `parameters` cell: a typo is an error, not a warning.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import html
import json
import math
import os
import time
import typing
from pathlib import Path

import numpy as np
import yaml

from trashlib import paths
from trashlib.config import TrainConfig
from trashlib.io import atomic_open, write_json

PROFILES_DIR = paths.PACKAGE_DIR / "profiles"
PROFILE_KEYS = ("description", "defaults", "training", "notebooks")
NOT_BUDGET = ("model", "data_root")  # a notebook chooses its models; data_root comes from defaults or --data
BUDGET_KEYS = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - set(NOT_BUDGET)


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
    """The metrics a notebook saved, or None if it has not run."""
    path = paths.REPORTS_DIR / "metrics" / f"{notebook}.json"
    return json.loads(path.read_text()) if path.exists() else None


def save_figure(fig, name: str, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure to reports/figures/<name>.png (atomic) and return the path."""
    path = paths.REPORTS_DIR / "figures" / f"{name}.png"
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    return path


def reported_runs(notebooks) -> list[str]:
    """Names of the runs that notebooks recorded in their metrics ("run" or "runs"), in order, no repeats."""
    names = []
    for nb in notebooks:
        m = load_metrics(nb) or {}
        for name in [m["run"]] if "run" in m else m.get("runs", []):
            if name not in names:
                names.append(name)
    return names


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping, got {type(value).__name__}: {value!r}")
    return value


def _profile_path(profile: str | os.PathLike) -> Path:
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"profile {profile!r} not found (known profiles: {', '.join(known)}, or a YAML path)")
    return path


def _read_profile(path: Path) -> dict:
    """The profile file's shape checked: four known keys, mappings where mappings belong, a valid budget."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from None
    data = _mapping(data, f"{path}: the profile")
    unknown = set(data) - set(PROFILE_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(map(str, unknown))} "
                         f"(allowed: {', '.join(PROFILE_KEYS)})")
    prof = {"path": path, "description": str(data.get("description") or ""),
            "defaults": _mapping(data.get("defaults"), f"{path}: defaults"),
            "training": _mapping(data.get("training"), f"{path}: training"),
            "notebooks": {}}
    for name, block in _mapping(data.get("notebooks"), f"{path}: notebooks").items():
        block = dict(_mapping(block, f"{path}: notebooks.{name}"))
        if "training" in block:
            block["training"] = _mapping(block["training"], f"{path}: notebooks.{name}.training")
        prof["notebooks"][str(name)] = block
    _check_budget(path, "training", prof["training"])
    for name, block in prof["notebooks"].items():
        if "training" in block:
            _check_budget(path, f"notebooks.{name}.training", {**prof["training"], **block["training"]})
    return prof


def _check_budget(path: Path, where: str, budget: dict) -> None:
    chosen = sorted(set(budget) & set(NOT_BUDGET))
    if chosen:
        raise ValueError(f"{path}: {where} sets {chosen}, which the notebooks choose themselves (not a budget key)")
    hints = typing.get_type_hints(TrainConfig)
    text = sorted(k for k, v in budget.items() if isinstance(v, str) and k in hints and "str" not in str(hints[k]))
    if text:  # TrainConfig would fail comparing text with numbers
        raise ValueError(f"{path}: {where}: {text} must be numbers, not text (YAML reads 3e-4 as text: write 3.0e-4)")
    try:
        TrainConfig.from_dict(budget)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {where}: {e}") from None


def _smoke_training() -> dict:
    """The smoke profile's budget: what a training notebook runs with its defaults (nbval's run)."""
    return _read_profile(_profile_path("smoke"))["training"]


def load_profile(profile: str | os.PathLike) -> dict:
    """A profile (name or YAML path): {"path", "description", "defaults", "training", "notebooks": {name: {...}}}.

    Raises ValueError naming the file for malformed YAML, a non-mapping section, a budget key that is no
    TrainConfig field, a notebook name that matches no notebook, or a key that is not a notebook parameter.
    """
    prof = _read_profile(_profile_path(profile))
    declared = {p.stem: notebook_parameter_names(p) for p in notebook_paths()}
    problems = []
    for name, block in prof["notebooks"].items():
        if name not in declared:
            problems.append(f"notebooks.{name} matches no notebook (notebooks: {', '.join(declared)})")
            continue
        for key in block:
            if key not in declared[name]:
                hint = "; budget keys go under training:" if "training" in declared[name] and key in BUDGET_KEYS else ""
                problems.append(f"notebooks.{name}.{key} is not a parameter of {name} "
                                f"(its parameters: {', '.join(declared[name])}{hint})")
    everywhere = sorted({k for params in declared.values() for k in params})
    problems += [f"defaults.{key} is a parameter of no notebook (parameters: {', '.join(everywhere)})"
                 for key in prof["defaults"] if key not in everywhere]
    if problems:
        raise ValueError(f"{prof['path']}: " + "; ".join(problems))
    return prof


def training_config(training: dict | None = None, **varied) -> TrainConfig:
    """A training notebook's TrainConfig: the budget (None: the smoke profile's) with what it varies.

    `training` is the TrainConfig fields a profile gives (its `training:` block merged with the
    notebook's overrides); `varied` are the notebook's own choices (model, data_root). log_every
    defaults to about 25 loss lines per run.
    """
    if training is None:
        training = _smoke_training()
    config = {**_mapping(training, "training"), **varied}
    steps = config.get("steps", TrainConfig.steps)
    if isinstance(steps, int) and "log_every" not in config:  # a bad steps value is TrainConfig's to report
        config["log_every"] = max(1, steps // 25)
    return TrainConfig.from_dict(config)


def notebook_parameter_names(nb_path: str | os.PathLike) -> list[str]:
    """The names assigned in a notebook's `parameters`-tagged cell (what papermill may override)."""
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    names = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            try:
                body = ast.parse("".join(cell.get("source", ""))).body
            except SyntaxError as e:
                raise ValueError(f"{nb_path}: the parameters cell is not plain Python: {e}") from None
            for node in body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def notebook_paths(selection: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order, optionally filtered by names or number prefixes ("01", "02_baseline...")."""
    nbs = sorted(p for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return nbs
    chosen = [p for p in nbs if any(p.stem == s or p.stem.startswith(f"{s}_") or p.name == s for s in selection)]
    missing = [s for s in selection if not any(p.stem == s or p.stem.startswith(f"{s}_") or p.name == s for p in nbs)]
    if missing:
        raise ValueError(f"no notebook matches {missing}; notebooks: {', '.join(p.stem for p in nbs)}")
    return chosen


def notebook_parameters(profile: dict, notebook: str, *, data_root: str | None = None) -> dict:
    """Parameters papermill injects into one notebook, each only where its parameters cell declares it:
    profile defaults, then the notebook's own; `training` is the profile's budget with the notebook's overrides."""
    declared = notebook_parameter_names(paths.NOTEBOOKS_DIR / f"{notebook}.ipynb")
    block = profile["notebooks"].get(notebook, {})
    params = {**profile["defaults"], **block}
    if "training" in declared:
        params["training"] = {**(profile["training"] or _smoke_training()), **block.get("training", {})}
    if data_root is not None:  # absolute: the kernel runs in the notebooks' folder, not the caller's
        params["data_root"] = str(Path(data_root).expanduser().resolve())
    return {k: v for k, v in params.items() if k in declared}


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


def run_notebook(nb_path: Path, parameters: dict, *, out_dir: Path) -> dict:
    """Execute one notebook with papermill into out_dir (.ipynb and .html); returns a status record."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / nb_path.name
    tmp = out_dir / f".{nb_path.stem}.running.ipynb"
    start = time.perf_counter()
    status, error = "ok", None
    try:
        pm.execute_notebook(str(nb_path), str(tmp), parameters=parameters, cwd=str(nb_path.parent),
                            progress_bar=False, kernel_name=_kernel_name())
    except Exception as e:  # the failed notebook is still rendered, so the reader sees the traceback
        status, error = "failed", f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
    seconds = time.perf_counter() - start
    if tmp.exists():
        os.replace(tmp, executed)
        render_html(executed, out_dir / f"{nb_path.stem}.html")
    return {"notebook": nb_path.stem, "title": _title(nb_path), "status": status, "error": error,
            "seconds": round(seconds, 1), "parameters": parameters}


@contextlib.contextmanager
def _reports_dir(out_dir: str | os.PathLike | None):
    """Send this process's and the notebook kernels' report files to out_dir for the duration."""
    if out_dir is None:
        yield paths.REPORTS_DIR
        return
    saved = paths.REPORTS_DIR, os.environ.get("TRASHLIB_REPORTS")
    paths.REPORTS_DIR = Path(out_dir).resolve()
    os.environ["TRASHLIB_REPORTS"] = str(paths.REPORTS_DIR)  # kernels inherit the environment
    try:
        yield paths.REPORTS_DIR
    finally:
        paths.REPORTS_DIR = saved[0]
        if saved[1] is None:
            os.environ.pop("TRASHLIB_REPORTS", None)
        else:
            os.environ["TRASHLIB_REPORTS"] = saved[1]


def make_report(profile: str = "cpu", notebooks: list[str] | None = None, *, data_root: str | None = None,
                out_dir: str | os.PathLike | None = None, stop_on_error: bool = True) -> list[dict]:
    """Run the notebooks in order with a profile, render HTML and write index.html (into reports/ or out_dir)."""
    with _reports_dir(out_dir):
        return _make_report(profile, notebooks, data_root=data_root, stop_on_error=stop_on_error)


def _make_report(profile, notebooks, *, data_root, stop_on_error) -> list[dict]:
    prof = load_profile(profile)
    out_dir = paths.REPORTS_DIR
    records = []
    for nb in notebook_paths(notebooks):
        params = notebook_parameters(prof, nb.stem, data_root=data_root)
        print(f"[report] {nb.stem} ({profile}) ...", flush=True)
        rec = run_notebook(nb, params, out_dir=out_dir)
        print(f"[report] {nb.stem}: {rec['status']} in {rec['seconds']:.0f} s" + (f" - {rec['error']}" if rec["error"] else ""), flush=True)
        records.append(rec)
        write_index(_merge_records(out_dir, records), profile=profile)
        if rec["status"] != "ok" and stop_on_error:
            raise RuntimeError(f"notebook {nb.stem} failed ({rec['error']}); see {out_dir / (nb.stem + '.html')}")
    return records


def _merge_records(out_dir: Path, records: list[dict]) -> list[dict]:
    """This run's records plus earlier ones of notebooks not rerun, so running one notebook keeps the index whole."""
    path = out_dir / "metrics" / "_runs.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    fresh = {r["notebook"] for r in records}
    kept = [r for r in earlier if r["notebook"] not in fresh and (out_dir / f"{r['notebook']}.html").exists()]
    return sorted(kept + records, key=lambda r: r["notebook"])


def _metric_summary(metrics: dict | None, limit: int = 8) -> str:
    if not metrics:
        return ""
    items = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in items[:limit])


def write_index(records: list[dict], *, profile: str) -> Path:
    """reports/index.html: every rendered notebook with its status, run time and key numbers."""
    rows = []
    for r in records:
        link = f'<a href="{html.escape(r["notebook"])}.html">{html.escape(r["title"])}</a>'
        status = "ok" if r["status"] == "ok" else f'<b style="color:#b00">failed</b>: {html.escape(r["error"] or "")}'
        rows.append(f"<tr><td>{html.escape(r['notebook'])}</td><td>{link}</td><td>{status}</td>"
                    f"<td>{r['seconds']:.0f} s</td><td>{html.escape(_metric_summary(load_metrics(r['notebook'])))}</td></tr>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>trashlib report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}}</style>
</head><body><h1>trashlib report</h1>
<p>Semantic segmentation of recycling-trash photos. Profile <code>{html.escape(profile)}</code>, generated {time.strftime('%Y-%m-%d %H:%M')}.
Each notebook is rendered with its outputs; key numbers come from <code>metrics/&lt;notebook&gt;.json</code>.</p>
<table><tr><th>#</th><th>notebook</th><th>status</th><th>time</th><th>key numbers</th></tr>
{''.join(rows)}
</table></body></html>
"""
    path = paths.REPORTS_DIR / "index.html"
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(page)
    write_json(paths.REPORTS_DIR / "metrics" / "_runs.json", _jsonable(records))
    return path
