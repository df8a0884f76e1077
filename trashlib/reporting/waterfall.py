"""The stages of this run's story, read from the notebooks' records (reports/metrics/*.json, `records`).

Stages, in order: baseline (02) -> best backbone (03) -> copy-paste (04) -> ensemble, CRF, overwrite
(05, one stage each) -> pseudo labels (06) -> submission (07). A stage is either a **level** (a value
on its own: the baseline, the first 05 stage, the submission) or a **step** against its own paired
reference: 03's best model against the baseline row of its table, 04 and 06's best variant against
their "none" arm, each 05 stage against the one before. A step's verdict follows `trashlib.scoring.compare`:
a tie when its 95% interval holds 0; 04, 05 and 06 record their own (seeds paired, or standing in for
05's post-processing, and the val images resampled), with the interval and MDE; otherwise the interval
comes from the seed spreads. Where a
step has no spread of its own (single-seed models, 05's deterministic post-processing), 02's seed
spread stands in as the noise, and the stage says so.
A notebook without a record gives a stage marked "not run"; one whose record lacks what its stage needs
(05 with no stage, 04 with no arm beside "none") gives "unreadable" with the file and what is missing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from trashlib.classes import CLASS_NAMES
from trashlib.reporting.records import (NOTEBOOKS, ArmRecord, BackbonesRecord, BaselineRecord, CopyPasteRecord,
                                        PseudoRecord, StageRecord, StagesRecord, SubmissionRecord)
from trashlib.scoring.compare import Contrast, recorded


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


def _baseline(m: BaselineRecord) -> Step:
    runs = list(m.run_names) + ([m.trunk_run] if m.trunk_run and m.trunk_run not in m.run_names else [])
    return Step("baseline", NOTEBOOKS[1], m.model, m.val_mIoU_mean, m.val_mIoU_std, m.seed_count,
                verdict="level" if m.val_mIoU_mean is not None else "unreadable", runs=runs,
                per_class_iou=m.per_class_iou or None)


def backbone_rows(m: BackbonesRecord) -> list[tuple]:
    """03's models as (name, mean, spread, seeds, run names, per-class IoU), its reference first."""
    return [(name, v.val_mIoU_mean, v.val_mIoU_std, v.seed_count, list(v.run_names), v.per_class_iou or None)
            for name, v in m.models.items()]


def _backbones(m: BackbonesRecord, noise) -> Step:
    rows = [r for r in backbone_rows(m) if r[1] is not None]
    if not rows:
        raise KeyError("models (no model with a val mIoU)")
    ref = rows[0]  # the step is the best other model against the reference, however they rank
    best = max(rows[1:], key=lambda r: r[1]) if len(rows) > 1 else ref
    stage = Step("best backbone", NOTEBOOKS[2], best[0], best[1], best[2], best[3], runs=best[4],
                 per_class_iou=best[5])
    _step(stage, ref[0], ref[1], ref[2], noise)
    return _recorded(stage, m.models[best[0]]) if best is not ref else stage


def _variants(m: CopyPasteRecord | PseudoRecord, name: str, notebook: str) -> Step:
    variants, ref = m.variants, m.reference
    others = {k: v for k, v in variants.items() if k != ref and v.val_mIoU_mean is not None}
    if ref not in variants or not others:
        raise KeyError(f"variants (needs {ref!r} and at least one other variant)")
    best = max(others, key=lambda k: others[k].val_mIoU_mean)
    v = others[best]
    stage = Step(name, notebook, best, v.val_mIoU_mean, v.val_mIoU_std, v.seed_count, runs=list(v.run_names),
                 per_class_iou=v.per_class_iou or None)
    stage.seeds = min(stage.seeds, variants[ref].seed_count)
    _step(stage, ref, variants[ref].val_mIoU_mean, variants[ref].val_mIoU_std, None)
    return _recorded(stage, v)


def _recorded(stage: Step, record: ArmRecord | StageRecord) -> Step:
    """The notebook's own contrast, where its record has one (`compare.Contrast.as_dict`: verdict, delta_ci,
    mde, noise): its verdict, and its interval and MDE in the note."""
    read = recorded(record)
    if read is not None and stage.delta is not None:
        stage.verdict, stage.ci, stage.mde = read
        stage.note = f"95% interval [{stage.ci[0]:+.3f}, {stage.ci[1]:+.3f}], MDE {stage.mde:.3f} " \
                     f"(noise: {record.noise or 'seeds'})"
    return stage


def _ensemble_steps(m: StagesRecord, noise) -> list[Step]:
    """05's stages: the first a level, each other a step against the stage it is `built_on` (else the one
    before), with 05's own verdict when it recorded one (its noise: the best single run's seeds)."""
    if not m.stages:
        raise KeyError("stages (none recorded)")
    out: list[Step] = []
    for i, s in enumerate(m.stages):
        stage = Step(s.name, NOTEBOOKS[4], s.name, s.val_mIoU, s.val_mIoU_std, s.seeds, runs=list(s.runs),
                     per_class_iou=s.per_class_iou or None)
        if i == 0:
            stage.verdict = "level"
            out.append(stage)
            continue
        ref = next((o for o in out if o.name == s.built_on), out[-1])
        _step(stage, ref.name, ref.value, ref.spread, noise)
        if s.verdict in ("gain", "loss", "tie", "one seed") and stage.delta is not None:
            stage.verdict, stage.note = s.verdict, "verdict from 05 (noise: its best run's seeds)"
            stage.ci = stage.mde = None  # 02's noise gave these; 05's own, where recorded, follow
        out.append(_recorded(stage, s))
    return out


def _submission(m: SubmissionRecord) -> Step:
    """07: the submitted run or 05 stage (its recipe's members are the runs), its val mIoU, and the test mIoU."""
    runs = list(m.recipe.get("members") or ([m.run] if m.run else []))
    stage = Step("submission", NOTEBOOKS[6], m.stage or m.run or "", m.val_mIoU, verdict="level", runs=runs)
    notes = [f"test mIoU {m.test_mIoU:.3f}" if m.test_mIoU is not None else "test labels hidden: no test mIoU"]
    notes += [f"val mIoU from {m.val_mIoU_from}"] if m.val_mIoU_from else []
    stage.note = "; ".join(notes)
    return stage


def baseline_noise(metrics: dict) -> tuple[float, int] | None:
    """(spread, seeds) of 02's baseline over its seeds: the noise of steps without a spread of their own."""
    base = metrics.get(NOTEBOOKS[1])
    if base is None:
        return None
    return (base.val_mIoU_std, len(base.seeds)) if base.val_mIoU_std and len(base.seeds) > 1 else None


def collect_steps(metrics: dict) -> list[Step]:
    """The stages from each notebook's record (`metrics[notebook]`, or None when it has not run)."""
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
        if m is None:
            stages.append(Step(name, notebook, note="not run"))
            continue
        try:
            stages += read(m)
        except KeyError as e:
            stages.append(Step(name, notebook, verdict="unreadable",
                               note=f"metrics/{notebook}.json: {type(e).__name__} {e}"))
    return stages


def stages_frame(stages: list[Step]) -> pd.DataFrame:
    """The stages as a table: stage, notebook, what, val mIoU, ± spread, seeds, reference, Δ, verdict, note."""
    return pd.DataFrame([{"stage": s.name, "notebook": s.notebook, "what": s.what, "val mIoU": s.value,
                          "± spread": s.spread, "seeds": s.seeds, "reference": s.reference, "Δ": s.delta,
                          "verdict": s.verdict, "note": s.note} for s in stages])


def class_frame(stages: list[Step]) -> pd.DataFrame | None:
    """Per-class IoU, one row per stage that recorded it (NaN: class absent); None when no stage did."""
    rows = {s.label: [_num((s.per_class_iou or {}).get(c)) for c in CLASS_NAMES]
            for s in stages if isinstance(s.per_class_iou, dict)}
    return pd.DataFrame(rows, index=CLASS_NAMES).T.astype(float) if rows else None
