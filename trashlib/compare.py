"""Comparisons over seeds: mean ± spread per variant, and a verdict against a reference that noise cannot fake.

The one rule every comparison table of the report follows:
- a variant's result is its val mIoU on each seed; its **spread** is the sample standard deviation
  of those values (ddof=1; 0 with a single seed, which is then marked as having no spread);
- a difference between two variants is judged against the larger of their two spreads: when
  |Δ| < 2 x spread it is a **tie**, otherwise a **gain** or a **loss**;
- a variant measured on fewer than 2 seeds gets no verdict but "one seed" (no noise estimate).

Paired designs (every variant branched from the same trunk checkpoint, seeds shared) make the spreads
those of the technique alone, not of the initialisation. `compare_table` builds the table, `verdict`
applies the rule, `variant_record` is what notebooks save to reports/metrics.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trashlib.classes import CLASS_NAMES
from trashlib.metrics import Scores

TIE_FACTOR = 2.0  # a difference under TIE_FACTOR x the spread is a tie


@dataclass
class SeedResults:
    """One variant's scores, one per seed, with the run folders they came from."""

    scores: list[Scores]
    seeds: list[int] = field(default_factory=list)
    run_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.scores:
            raise ValueError("a variant needs the scores of at least one seed")
        if self.seeds and len(self.seeds) != len(self.scores):
            raise ValueError(f"{len(self.scores)} scores but {len(self.seeds)} seeds")
        bad = [s.miou for s in self.scores if not math.isfinite(s.miou)]
        if bad:
            raise ValueError(f"non-finite mIoU among the seeds' scores: {bad}")

    @property
    def mious(self) -> np.ndarray:
        return np.array([s.miou for s in self.scores], dtype=np.float64)

    @property
    def mean(self) -> float:
        return float(self.mious.mean())

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return float(self.mious.std(ddof=1)) if len(self.scores) > 1 else 0.0

    @property
    def per_class_iou(self) -> np.ndarray:
        """Mean IoU per class over seeds (NaN where a class was empty on every seed); (num_classes,)."""
        stack = np.stack([np.asarray(s.per_class_iou, dtype=np.float64) for s in self.scores])
        with warnings.catch_warnings():  # a class empty on every seed: NaN, without a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(stack, axis=0)


def verdict(delta: float, spread: float, *, seeds: int = 2) -> str:
    """"gain", "loss" or "tie" for a difference `delta` whose noise is `spread` (the module's rule)."""
    if not (math.isfinite(delta) and math.isfinite(spread)):
        raise ValueError(f"delta and spread must be finite, got {delta!r}, {spread!r}")
    if seeds < 2:
        return "one seed"
    if delta == 0 or abs(delta) < TIE_FACTOR * spread:
        return "tie"
    return "gain" if delta > 0 else "loss"


def _as_results(value) -> SeedResults:
    if isinstance(value, SeedResults):
        return value
    if isinstance(value, Scores):
        return SeedResults([value])
    return SeedResults(list(value))


def compare_table(variants: Mapping[str, SeedResults | Sequence[Scores]], *, reference: str | None = None,
                  classes: Sequence[str] | None = None, decimals: int = 3) -> pd.DataFrame:
    """One row per variant: seeds, mean ± spread of val mIoU, Δ against `reference` and the verdict.

    `reference` (default: the first variant) is the arm the others are judged against, usually
    "none" (the same steps from the same trunk without the technique). `classes` adds mean per-class
    IoU columns for those class names. Rows keep the mapping's order.
    """
    results = {name: _as_results(v) for name, v in variants.items()}
    if not results:
        raise ValueError("nothing to compare: no variants")
    reference = next(iter(results)) if reference is None else reference
    if reference not in results:
        raise ValueError(f"reference {reference!r} is not among the variants: {', '.join(results)}")
    ref = results[reference]
    rows = []
    for name, r in results.items():
        row = {"variant": name, "seeds": len(r.scores), "val mIoU": r.mean, "± spread": r.std,
               "mean ± spread": f"{r.mean:.{decimals}f} ± {r.std:.{decimals}f}"}
        if name == reference:
            row.update({"Δ vs " + reference: 0.0, "verdict": "reference"})
        else:
            delta = r.mean - ref.mean
            row.update({"Δ vs " + reference: delta,
                        "verdict": verdict(delta, max(r.std, ref.std), seeds=min(len(r.scores), len(ref.scores)))})
        for c in classes or ():
            row[f"IoU {c}"] = float(r.per_class_iou[CLASS_NAMES.index(c)])
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def variant_record(results: SeedResults) -> dict:
    """What a notebook saves per variant: {val_mIoU_mean, val_mIoU_std, val_mIoU (per seed), seeds,
    per_class_iou (class name -> mean IoU, None where empty), run_names}."""
    return {"val_mIoU_mean": results.mean, "val_mIoU_std": results.std,
            "val_mIoU": [float(v) for v in results.mious], "seeds": list(results.seeds),
            "per_class_iou": {n: (None if not math.isfinite(v) else float(v))
                              for n, v in zip(CLASS_NAMES, results.per_class_iou)},
            "run_names": list(results.run_names)}


def run_scores(run) -> Scores:
    """The scores of a finished run's final evaluation (the whole val split at its working resolution)."""
    evals = [r for r in run.metrics("eval") if r.get("step") == run.config.steps]
    if not evals:
        raise ValueError(f"run {run.name} has no evaluation at its last step {run.config.steps}; "
                         "was it trained with a val_split?")
    r = evals[-1]
    per_class = np.array([np.nan if r["per_class_iou"].get(c) is None else r["per_class_iou"][c]
                          for c in CLASS_NAMES], dtype=np.float64)
    return Scores(float(r["mIoU"]), per_class, float(r["pixel_accuracy"]), float(r["mean_class_accuracy"]),
                  float(r["fwIoU"]))


def seed_results(runs) -> SeedResults:
    """`SeedResults` of runs that differ only in their seed (scores from each run's final evaluation)."""
    runs = list(runs)
    return SeedResults([run_scores(r) for r in runs], seeds=[r.config.seed for r in runs],
                       run_names=[r.name for r in runs])
