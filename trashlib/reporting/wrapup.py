"""The wrap-up page, reports/index.html: what notebooks 01-07 found in this run, on one page.

Sections: the summary (data, profile, hardware, time, final val and test mIoU); the waterfall of val
mIoU through the stages, as a chart and a table linking each stage to its notebook section and run
folders (config, seed, git commit); per-class IoU through the stages; the winning team's experiment table
regenerated beside this run's numbers; "what worked, what did not", written from the numbers; the
rendered notebooks; the figures. Every number comes from reports/metrics/*.json (the notebooks' own
records and _runs.json, the report's run times); a notebook without metrics is "not run". A metrics
file that cannot be read whole (cut off, not JSON, NaN, a number that is text or out of range) is
never half-read: the page is still built, that notebook's sections say "unreadable", and a note at
the top names the file and the fault, so one damaged file hides neither the rest of the run nor itself.
"""
from __future__ import annotations

import html
import json
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from trashlib import paths
from trashlib.io import atomic_open
from trashlib.plots.files import write_png
from trashlib.plots.waterfall import plot_stage_classes, plot_waterfall
from trashlib.reporting.findings import delta_sentence
from trashlib.reporting.metrics_file import read_all_records
from trashlib.reporting.published import winners_claims, winners_table
from trashlib.reporting.records import NOTEBOOKS
from trashlib.reporting.waterfall import class_frame, collect_steps
from trashlib.runs import CONFIG_FILE, Run
from trashlib.runs.folder import cpu_name

# the tag that marks, in each notebook, the markdown cell whose heading the wrap-up page links a step to
KEY_TAG = "key-result"
STYLE = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;line-height:1.45;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.2em}td,th{padding:3px 9px;border-bottom:1px solid #ddd;text-align:left;
font-size:0.92em;vertical-align:top}th{background:#f4f4f4}.gain{color:#2a7a3a;font-weight:bold}
.loss{color:#b3261e;font-weight:bold}.tie,.muted{color:#777}img{max-width:100%}.thumbs img{width:260px;margin:4px;
border:1px solid #ddd}.note{background:#fff8e1;padding:6px 10px;border-left:4px solid #f0c000}"""


def section_anchor(notebook: str) -> str:
    """`#id` of the first heading of the notebook's cell tagged KEY_TAG, as nbconvert names headings ("" if none)."""
    path = paths.NOTEBOOKS_DIR / f"{notebook}.ipynb"
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return ""
    for cell in cells:
        if cell.get("cell_type") == "markdown" and KEY_TAG in (cell.get("metadata") or {}).get("tags", []):
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("## "):
                    return "#" + quote(line[3:].strip().replace(" ", "-"), safe="-_.:()!,'*~")
    return ""


def _e(v) -> str:
    return html.escape(str(v))


def _fmt(v, spec: str = ".3f") -> str:
    return "—" if v is None or (isinstance(v, float) and pd.isna(v)) else format(v, spec)


def _verdict(v: str) -> str:
    return f'<span class="{_e(v.split()[0]) if v else ""}">{_e(v)}</span>'


def _nb_link(notebook: str, text: str, reports: Path, anchor: str = "") -> str:
    return f'<a href="{_e(notebook)}.html{_e(anchor)}">{_e(text)}</a>' if (reports / f"{notebook}.html").exists() \
        else _e(text)


def _run_links(names: list[str], reports: Path, limit: int = 4) -> str:
    out = []
    for name in names[:limit]:
        folder = Path(paths.RUNS_DIR) / name
        if not (folder / CONFIG_FILE).exists():
            out.append(f"{_e(name)} <span class='muted'>(folder missing)</span>")
            continue
        run = Run(folder)
        commit = (run.environment.get("git") or {}).get("commit") or "unknown"
        href = quote(os.path.relpath(folder, reports))
        out.append(f'<a href="{href}/">{_e(name)}</a> <span class="muted">seed {run.config.seed}, '
                   f'commit {_e(commit[:8])}</span>')
    more = f"<br><span class='muted'>and {len(names) - limit} more</span>" if len(names) > limit else ""
    return "<br>".join(out) + more


def _save(fig, reports: Path, name: str) -> str:
    path = reports / "figures" / f"{name}.png"
    write_png(fig, path, close=True)
    return f"figures/{name}.png"


def _hardware(stages) -> str:
    """The device the first recorded run trained on (its environment.json), else this machine."""
    for name in (n for s in stages for n in s.runs):
        folder = Path(paths.RUNS_DIR) / name
        env = Run(folder).environment if (folder / CONFIG_FILE).exists() else {}
        if env.get("device"):
            device = env.get("device_name") or (f"cpu: {env['cpu']}" if env.get("cpu") else env["device"])
            precision = {None: "", "no": ", fp32"}.get(env.get("mixed_precision"), f", {env.get('mixed_precision')}")
            return f"{device}{precision} ({env.get('platform', '')}), as recorded by {name}"
    return f"this machine: {cpu_name()} (no run here recorded its device)"


def _summary(records, metrics, stages, profile: str, unreadable: dict) -> str:
    eda, sub = metrics.get(NOTEBOOKS[0]), metrics.get(NOTEBOOKS[6])
    unknown = f"unknown (metrics/{NOTEBOOKS[0]}.json is unreadable)" if NOTEBOOKS[0] in unreadable else None
    data = (eda.data_root if eda is not None else None) or next(
        (r["parameters"].get("data_root") for r in records if (r.get("parameters") or {}).get("data_root")), None) \
        or unknown or "the embedded dataset"
    size = f" ({eda.n_images_in_split} images in {eda.split})" if eda is not None and eda.n_images_in_split else ""
    seconds = sum(r.get("seconds") or 0 for r in records)
    last = next((s for s in reversed(stages) if s.value is not None), None)
    final_val = sub.val_mIoU if sub is not None else last.value if last else None
    test = sub.test_mIoU if sub is not None else None
    submitted = (sub.stage or sub.run) if sub is not None else None
    final = f"{_fmt(final_val)}" + (f" (submitted: {submitted})" if submitted else "")
    test = _fmt(test) if test is not None else "not measured (test labels hidden, or 07 not run)"
    if NOTEBOOKS[6] in unreadable:  # what was submitted is unknown: no stand-in number
        final = test = f"unreadable (metrics/{NOTEBOOKS[6]}.json, see the note above)"
    rows = [("data", f"{data}{size}"), ("profile", profile), ("hardware", _hardware(stages)),
            ("total time", f"{seconds / 60:.1f} min over {len(records)} notebooks" if records else "not recorded"),
            ("final val mIoU", final), ("test mIoU", test)]
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _stage_table(stages, reports: Path) -> str:
    head = "<tr><th>stage</th><th>what</th><th>val mIoU</th><th>seeds</th><th>reference</th><th>Δ</th>" \
           "<th>verdict</th><th>run folders</th><th>note</th></tr>"
    rows = []
    for s in stages:
        name = _nb_link(s.notebook, f"{s.name} ({s.notebook[:2]})", reports, section_anchor(s.notebook))
        value = _fmt(s.value) + (f" ± {_fmt(s.spread)}" if s.spread else "")
        ref = "" if s.reference is None else f"{_e(s.reference)} ({_fmt(s.reference_value)})"
        rows.append(f"<tr><td>{name}</td><td>{_e(s.what)}</td><td>{value}</td><td>{s.seeds if s.value is not None else ''}"
                    f"</td><td>{ref}</td><td>{_fmt(s.delta, '+.3f')}</td><td>{_verdict(s.verdict)}</td>"
                    f"<td>{_run_links(s.runs, reports)}</td><td>{_e(s.note)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _winners_shown(table: pd.DataFrame) -> pd.DataFrame:
    """The winners' table as the page shows it: the interval's two ends as one "95% CI" column."""
    if "CI low" not in table:
        return table
    ci = [f"[{lo:+.4f}, {hi:+.4f}]" if pd.notna(lo) and pd.notna(hi) else None
          for lo, hi in zip(table["CI low"], table["CI high"])]
    shown = table.drop(columns=["CI low", "CI high"])
    shown.insert(shown.columns.get_loc("MDE"), "95% CI", ci)
    return shown


def _findings(stages, claims) -> str:
    groups = {"What worked": [], "What did not": [], "Ties and single measurements": [], "Not measured": []}
    for s in stages:
        if s.delta is None:
            if s.verdict in ("not run", "unreadable"):
                detail = f" ({s.note})" if s.note and s.note != "not run" else ""
                groups["Not measured"].append(f"{s.name} ({s.notebook}): {s.verdict}{detail}.")
            continue
        text = delta_sentence(s.label, s.value, s.spread, s.delta, s.reference, s.verdict, seeds=s.seeds,
                              ci="" if s.ci is None else f"[{s.ci[0]:+.3f}, {s.ci[1]:+.3f}]", mde=s.mde)
        key = {"gain": "What worked", "loss": "What did not"}.get(s.verdict, "Ties and single measurements")
        groups[key].append(text)
    out = "".join(f"<h3>{k}</h3><ul>{''.join(f'<li>{_e(t)}</li>' for t in v)}</ul>" for k, v in groups.items() if v)
    if claims:
        out += ("<h3>The winning team's claims, re-tested</h3><ul>" + "".join(f"<li>{_e(c)}</li>" for c in claims)
                + "</ul>")
    return out + ("<p class='muted'>The rule (trashlib.scoring.compare):"
                  " a difference is a gain or a loss only when its 95% "
                  "interval excludes 0, else a tie, and the MDE is the smallest effect the design detects; a step "
                  "without a spread of its own is judged against 02's seed spread.</p>")


def _notebooks(records, metrics, reports: Path, unreadable: dict) -> str:
    done = {r["notebook"]: r for r in records}
    rows = []
    known = {p.stem for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")} | {n for n, m in metrics.items() if m is not None}
    for nb in sorted(set(done) | known | set(unreadable)):
        r = done.get(nb)
        if r is None:
            status = "metrics from an earlier run" if metrics.get(nb) is not None else \
                "ran, but its metrics are unreadable" if nb in unreadable else "not run"
        else:
            status = "ok" if r["status"] == "ok" else f'<b class="loss">failed</b>: {_e(r.get("error") or "")}'
        seconds = "" if r is None else f"{r.get('seconds') or 0:.0f} s"
        numbers = f"metrics/{_e(nb)}.json" if metrics.get(nb) is not None else \
            f'<b class="loss">metrics/{_e(nb)}.json unreadable</b>' if nb in unreadable else "—"
        rows.append(f"<tr><td>{_nb_link(nb, (r or {}).get('title', nb), reports)}</td><td>{status}</td>"
                    f"<td>{seconds}</td><td>{numbers}</td></tr>")
    return "<table><tr><th>notebook</th><th>status</th><th>time</th><th>key numbers</th></tr>" + "".join(rows) + "</table>"


def _figures(reports: Path) -> str:
    figs = sorted((reports / "figures").glob("*.png"))
    groups: dict[str, list[Path]] = {}
    for f in figs:
        groups.setdefault(f.stem[:2] if re.match(r"\d\d_", f.stem) else "wrap-up", []).append(f)
    return "".join(f"<h3>{_e(k)}</h3><div class='thumbs'>" + "".join(
        f'<a href="figures/{quote(f.name)}"><img src="figures/{quote(f.name)}" alt="{_e(f.stem)}" title="{_e(f.stem)}"></a>'
        for f in v) + "</div>" for k, v in groups.items())


def _mark_unreadable(stage, unreadable: dict, reports: Path):
    """A stage whose notebook's metrics file could not be read says so (not "not run"), naming the fault."""
    if stage.notebook in unreadable and stage.verdict == "not run":
        stage.verdict, stage.note = "unreadable", unreadable[stage.notebook].replace(f"{reports}{os.sep}", "")
    return stage


def build_page(records: list[dict], *, profile: str, reports_dir: Path | None = None) -> Path:
    """Write reports/index.html from the metrics (and records, the report's per-notebook run times)."""
    reports = Path(reports_dir or paths.REPORTS_DIR)
    metrics, unreadable = read_all_records(reports / "metrics")
    stages = [_mark_unreadable(s, unreadable, reports) for s in collect_steps(metrics)]
    waterfall = _save(plot_waterfall(stages), reports, "wrapup_waterfall")
    heat = plot_stage_classes(class_frame(stages))
    heat = _save(heat, reports, "wrapup_per_class") if heat is not None else None
    winners = winners_table(metrics, unreadable=set(unreadable))
    winners_html = _winners_shown(winners).to_html(index=False, na_rep="—", float_format=lambda v: f"{v:.4f}",
                                                   border=0, escape=True)
    warn = "".join(f"<p class='note'>Unreadable: {_e(why)}. Its sections below say so and show none of its numbers; "
                   f"run {_e(nb)} again to write it anew.</p>" for nb, why in unreadable.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>trashlib: what this run found</title>
<style>{STYLE}</style></head><body>
<h1>Trash segmentation: what this run found</h1>
<p>Semantic segmentation of recycling-trash photos (11 classes, the competition's mIoU). Profile
<code>{_e(profile)}</code>, page generated {time.strftime('%Y-%m-%d %H:%M')} from <code>metrics/*.json</code>.</p>
{warn}<h2 id="summary">Summary</h2>{_summary(records, metrics, stages, profile, unreadable)}
<p class="note">Small models trained on this run's budget stand in for the leaderboard's: read the steps
(gains, losses, ties), not the levels.</p>
<h2 id="waterfall">The waterfall: val mIoU through the stages</h2>
<p>Blue bars are levels; a step floats from its paired reference (dotted line) to its value: green a gain,
red a loss, grey a tie (its 95% interval holds 0). Error bars are the spread over seeds. The axis does not start at 0.</p>
<img src="{waterfall}" alt="waterfall of val mIoU through the stages">
{_stage_table(stages, reports)}
{f'<h3>Per-class IoU through the stages</h3><img src="{heat}" alt="per-class IoU by stage">' if heat else ''}
<h2 id="winners-table">The winning team's experiments, regenerated</h2>
<p class="note">Different dataset and scale: the winning team's numbers are public-leaderboard mIoU of the real
competition (3272 photos, large pretrained models at 512 px); this run's are val mIoU of its own models and data.
Compare the direction and size of each step, not the levels.</p>
{winners_html}
<h2 id="findings">What worked, what did not</h2>{_findings(stages, winners_claims(winners))}
<h2 id="notebooks">Notebooks</h2>{_notebooks(records, metrics, reports, unreadable)}
<h2 id="figures">Figures</h2>{_figures(reports)}
</body></html>
"""
    path = reports / "index.html"
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(page)
    for why in unreadable.values():
        print(f"[report] unreadable: {why} ({path.name} marks its sections so)", flush=True)
    return path
