"""The stages of this run's story, read from reports/metrics/*.json, and the waterfall chart of them.

Stages, in order: baseline (02) -> best backbone (03) -> copy-paste (04) -> ensemble, CRF, overwrite
(05, one stage each) -> pseudo labels (06) -> submission (07). A stage is either a **level** (a value
on its own: the baseline, the first 05 stage, the submission) or a **step** against its own paired
reference: 03's best model against the baseline row of its table, 04 and 06's best variant against
their "none" arm, each 05 stage against the one before. A step's verdict follows `trashlib.compare`:
a tie when its 95% interval holds 0; 04, 05 and 06 record their own (seeds paired, or standing in for
05's post-processing, and the val images resampled), with the interval and MDE; otherwise the interval
comes from the seed spreads. Where a
step has no spread of its own (single-seed models, 05's deterministic post-processing), 02's seed
spread stands in as the noise, and the stage says so.
A notebook without metrics gives a stage marked "not run"; one whose metrics do not have the
expected keys gives "unreadable" with the file and the missing key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from trashlib.classes import CLASS_NAMES
from trashlib.compare import Contrast, recorded

NOTEBOOKS = ("01_EDA", "02_baseline_mask2former", "03_backbones_dinat_semask", "04_copy_paste", "05_crf_ensemble",
             "06_pseudo_label", "07_submission")
COLOURS = {"level": "#7f9fbf", "gain": "#3a9a4a", "loss": "#c8423b", "tie": "#a8a8a8", "one seed": "#a8a8a8"}


@dataclass
class Step:
    """One bar of the waterfall: its value (val mIoU) and spread, and, for a step, its reference and verdict."""

    name: str
    notebook: str
    what: str = ""
    value: float | None = None
    spread: float | None = None
    seeds: int = 1
    reference: str | None = None
    reference_value: float | None = None
    delta: float | None = None
    verdict: str = "not run"   # level, gain, loss, tie, one seed, not run, unreadable
    ci: tuple[float, float] | None = None  # a step's 95% interval of its delta, and its MDE (the rule's)
    mde: float | None = None
    runs: list[str] = field(default_factory=list)
    per_class_iou: dict | None = None
    note: str = ""

    @property
    def label(self) -> str:
        """"copy-paste (offline)": the stage and what it chose, once when they are the same."""
        return self.name if self.what in ("", self.name) else f"{self.name} ({self.what})"


def _num(v) -> float | None:
    """A finite float, else None (metrics store NaN as null)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _step(stage: Step, ref_name: str, ref_value, ref_spread, noise: tuple[float, int] | None) -> Step:
    """Fill in a step's reference, delta and verdict (borrowing 02's seed spread when it has none)."""
    stage.reference, stage.reference_value = ref_name, _num(ref_value)
    if stage.value is None or stage.reference_value is None:
        stage.verdict = "level" if stage.value is not None else "unreadable"
        return stage
    stage.delta = stage.value - stage.reference_value
    spreads = [s for s in (stage.spread, _num(ref_spread)) if s is not None]
    if stage.seeds > 1 and spreads:
        judged = Contrast.from_spread(stage.delta, max(spreads), seeds=stage.seeds)
    elif noise is not None:
        judged = Contrast.from_spread(stage.delta, noise[0], seeds=noise[1])
        stage.note = (stage.note + "; " if stage.note else "") + f"noise: 02's seed spread ({noise[0]:.3f})"
    else:
        stage.verdict = "one seed"
        return stage
    stage.verdict = judged.verdict
    if judged.seeds > 1:
        stage.ci, stage.mde = judged.ci, judged.mde
    return stage


def _baseline(m: dict) -> Step:
    value = _num(m.get("val_mIoU_mean", m.get("val_mIoU")))
    runs = list(m.get("run_names") or ([m["run"]] if m.get("run") else []))
    runs += [m["trunk_run"]] if m.get("trunk_run") and m["trunk_run"] not in runs else []
    return Step("baseline", NOTEBOOKS[1], m.get("model", "") or "", value, _num(m.get("val_mIoU_std")),
                 len(m.get("seeds") or []) or 1, verdict="level" if value is not None else "unreadable",
                 runs=runs, per_class_iou=m.get("per_class_iou"))


def backbone_rows(m: dict) -> list[tuple]:
    """03's models as (name, mean, spread, seeds, run names, per-class IoU), its reference first.

    Reads `models` ({name: variant record}, what 03 saves) or, from older reports, `table` rows.
    """
    models = m.get("models")
    if isinstance(models, dict) and models:
        return [(str(k), _num(v.get("val_mIoU_mean")), _num(v.get("val_mIoU_std")), len(v.get("seeds") or []) or 1,
                 [str(x) for x in v.get("run_names") or []], v.get("per_class_iou"))
                for k, v in models.items() if isinstance(v, dict)]
    rows = []
    for r in m.get("table") or []:
        name = r.get("model", r.get("variant")) if isinstance(r, dict) else None
        if name in (None, "colour floor"):
            continue
        rows.append((str(name), _num(r.get("val mIoU")), _num(r.get("± spread")), int(r.get("seeds") or 1),
                     [str(x) for x in m.get("runs", []) if str(x).startswith(f"{name}-")],
                     (m.get("per_class_iou") or {}).get(name)))
    return rows


def _backbones(m: dict, noise) -> Step:
    rows = [r for r in backbone_rows(m) if r[1] is not None]
    if not rows:
        raise KeyError("models (no model with a val mIoU)")
    ref = rows[0]  # the step is the best other model against the reference, however they rank
    best = max(rows[1:], key=lambda r: r[1]) if len(rows) > 1 else ref
    stage = Step("best backbone", NOTEBOOKS[2], best[0], best[1], best[2], best[3], runs=best[4],
                  per_class_iou=best[5])
    _step(stage, ref[0], ref[1], ref[2], noise)
    record = (m.get("models") or {}).get(best[0]) if isinstance(m.get("models"), dict) else None
    return _recorded(stage, record) if best is not ref else stage


def _variants(m: dict, name: str, notebook: str) -> Step:
    variants, ref = m["variants"], m.get("reference", "none")
    others = {k: v for k, v in variants.items() if k != ref and _num(v.get("val_mIoU_mean")) is not None}
    if ref not in variants or not others:
        raise KeyError(f"variants (needs {ref!r} and at least one other variant)")
    best = max(others, key=lambda k: others[k]["val_mIoU_mean"])
    v = others[best]
    stage = Step(name, notebook, best, v["val_mIoU_mean"], _num(v.get("val_mIoU_std")), len(v.get("seeds") or []) or 1,
                  runs=list(v.get("run_names") or []), per_class_iou=v.get("per_class_iou"))
    stage.seeds = min(stage.seeds, len(variants[ref].get("seeds") or []) or 1)
    _step(stage, ref, variants[ref].get("val_mIoU_mean"), variants[ref].get("val_mIoU_std"), None)
    return _recorded(stage, v)


def _recorded(stage: Step, record: dict) -> Step:
    """The notebook's own contrast, where its record has one (`compare.Contrast.as_dict`: verdict, delta_ci,
    mde, noise): its verdict, and its interval and MDE in the note."""
    read = recorded(record)
    if read is not None and stage.delta is not None:
        stage.verdict, stage.ci, stage.mde = read
        stage.note = f"95% interval [{stage.ci[0]:+.3f}, {stage.ci[1]:+.3f}], MDE {stage.mde:.3f} " \
                     f"(noise: {record.get('noise', 'seeds')})"
    return stage


def _ensemble_steps(m: dict, noise) -> list[Step]:
    """05's stages: the first a level, each other a step against the stage it is `built_on` (else the one
    before), with 05's own verdict when it recorded one (its noise: the best single run's seeds)."""
    out: list[Step] = []
    for i, s in enumerate(m["stages"]):
        stage = Step(str(s["name"]), NOTEBOOKS[4], str(s["name"]), _num(s["val_mIoU"]), _num(s.get("val_mIoU_std")),
                      int(s.get("seeds") or 1), runs=list(s.get("runs") or []), per_class_iou=s.get("per_class_iou"))
        if i == 0:
            stage.verdict = "level"
            out.append(stage)
            continue
        ref = next((o for o in out if o.name == s.get("built_on")), out[-1])
        _step(stage, ref.name, ref.value, ref.spread, noise)
        if s.get("verdict") in ("gain", "loss", "tie", "one seed") and stage.delta is not None:
            stage.verdict, stage.note = s["verdict"], "verdict from 05 (noise: its best run's seeds)"
            stage.ci = stage.mde = None  # 02's noise gave these; 05's own, where recorded, follow
        out.append(_recorded(stage, s))
    return out


def _submission(m: dict) -> Step:
    """07: the submitted run or 05 stage (its recipe's members are the runs), its val mIoU, and the test mIoU."""
    members = (m.get("recipe") or {}).get("members") if isinstance(m.get("recipe"), dict) else None
    runs = list(members or ([m["run"]] if m.get("run") else []))
    stage = Step("submission", NOTEBOOKS[6], m.get("stage") or m.get("run") or "", _num(m.get("val_mIoU")),
                  verdict="level", runs=runs)
    test = _num(m.get("test_mIoU"))
    notes = [f"test mIoU {test:.3f}" if test is not None else "test labels hidden: no test mIoU"]
    notes += [f"val mIoU from {m['val_mIoU_from']}"] if m.get("val_mIoU_from") else []
    stage.note = "; ".join(notes)
    return stage


def baseline_noise(metrics: dict) -> tuple[float, int] | None:
    """(spread, seeds) of 02's baseline over its seeds: the noise of steps without a spread of their own."""
    base = metrics.get(NOTEBOOKS[1]) or {}
    seeds = base.get("seeds") if isinstance(base.get("seeds"), list) else []
    spread = _num(base.get("val_mIoU_std"))
    return (spread, len(seeds)) if spread and len(seeds) > 1 else None


def collect_steps(metrics: dict) -> list[Step]:
    """The stages from each notebook's metrics (`metrics[notebook]` = its dict, or None when it has not run)."""
    noise = baseline_noise(metrics)
    plan = [(NOTEBOOKS[1], "baseline", lambda m: [_baseline(m)]),
            (NOTEBOOKS[2], "best backbone", lambda m: [_backbones(m, noise)]),
            (NOTEBOOKS[3], "copy-paste", lambda m: [_variants(m, "copy-paste", NOTEBOOKS[3])]),
            (NOTEBOOKS[4], "ensemble / CRF / overwrite", lambda m: _ensemble_steps(m, noise)),
            (NOTEBOOKS[5], "pseudo labels", lambda m: [_variants(m, "pseudo labels", NOTEBOOKS[5])]),
            (NOTEBOOKS[6], "submission", lambda m: [_submission(m)])]
    stages = []
    for notebook, name, read in plan:
        m = metrics.get(notebook)
        if not m:
            stages.append(Step(name, notebook, note="not run"))
            continue
        try:
            stages += read(m)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            stages.append(Step(name, notebook, verdict="unreadable",
                                note=f"metrics/{notebook}.json: {type(e).__name__} {e}"))
    return stages


def stages_frame(stages: list[Step]) -> pd.DataFrame:
    """The stages as a table: stage, notebook, what, val mIoU, ± spread, seeds, reference, Δ, verdict, note."""
    return pd.DataFrame([{"stage": s.name, "notebook": s.notebook, "what": s.what, "val mIoU": s.value,
                          "± spread": s.spread, "seeds": s.seeds, "reference": s.reference, "Δ": s.delta,
                          "verdict": s.verdict, "note": s.note} for s in stages])


def plot_waterfall(stages: list[Step]):
    """Levels as bars, steps as floating bars from their reference (green gain, red loss, grey tie); returns the figure."""
    fig, ax = plt.subplots(figsize=(max(7, 1.25 * len(stages)), 4.2))
    values = [v for s in stages for v in (s.value, s.reference_value) if v is not None]
    low = max(0.0, min(values) - 0.05) if values else 0.0
    for x, s in enumerate(stages):
        if s.value is None:
            ax.text(x, low, s.verdict, ha="center", va="bottom", rotation=90, fontsize=8, color="grey")
            continue
        start = s.reference_value if s.delta is not None else low
        colour = COLOURS.get(s.verdict, COLOURS["tie"])
        ax.bar(x, s.value - start, bottom=start, color=colour, width=0.6, edgecolor="black", lw=0.5)
        if s.spread:
            ax.errorbar(x, s.value, yerr=s.spread, color="black", capsize=4, lw=1)
        if s.delta is not None:
            ax.hlines(start, x - 0.4, x + 0.4, colors="black", linestyles=":", lw=1)
            ax.annotate(f"{s.delta:+.3f}\n{s.verdict}", (x, max(s.value, start) + (s.spread or 0)), ha="center",
                        va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        else:
            ax.annotate(f"{s.value:.3f}", (x, s.value + (s.spread or 0)), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(stages)), [f"{s.name}\n({s.notebook[:2]})" for s in stages], fontsize=8)
    top = max(values) + 0.04 if values else 1.0
    ax.set(ylim=(low, top), ylabel="val mIoU",
           title="val mIoU through the stages: levels (blue), steps from their paired reference (dotted)")
    sns.despine(ax=ax)
    fig.tight_layout()
    return fig


def plot_stage_classes(stages: list[Step]):
    """Heat map of per-class IoU (rows: stages that recorded it); None when no stage did."""
    rows = {s.label: [_num((s.per_class_iou or {}).get(c)) for c in CLASS_NAMES]
            for s in stages if isinstance(s.per_class_iou, dict)}
    if not rows:
        return None
    frame = pd.DataFrame(rows, index=CLASS_NAMES).T.astype(float)
    fig, ax = plt.subplots(figsize=(12, 0.55 * len(frame) + 1.6))
    sns.heatmap(frame, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, mask=np.isnan(frame.values), ax=ax,
                cbar_kws={"label": "IoU"})
    ax.set(title="per-class val IoU at each stage (blank: class absent)", ylabel="")
    fig.tight_layout()
    return fig
