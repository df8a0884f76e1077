"""Post-processing stages compared on one val set: the runs they start from, the stage table, what each stage did.

Notebook 05 scores a chain of stages (best single run -> soft vote -> weighted -> hard vote -> + CRF ->
+ overwrite) on one val set, each a `trashlib.recipe.Recipe`. `collect_runs` finds the runs that the
training notebooks reported, grouped so that seeds share a group; `rank_runs` orders them by their own
recorded evaluation. `stage_table` gives each stage's mIoU, its change against the stage it builds on
and the verdict of `trashlib.compare` (the noise: the spread over the seeds of the best single run's
group); `class_deltas` does the same per class, `crf_changes` finds the images a step helps or hurts
most, and `lessons` writes the closing sentences from the numbers. (`trashlib.recipe.pick_stage` chooses the
stage notebook 07 submits from what 05 saved.)
"""
from __future__ import annotations

import dataclasses
import math
import re
import warnings
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from trashlib.classes import CLASS_NAMES
from trashlib.compare import Contrast, verdict
from trashlib.crf import CRFParams, crf_preset
from trashlib.data import resolve_data_root
from trashlib.evaluation import Evaluation, evaluate_index
from trashlib.inference import TTA
from trashlib.metrics import Scores
from trashlib.probs import ProbIndex
from trashlib.recipe import Recipe, apply_recipe
from trashlib.report import reported_run_groups
from trashlib.runs import Run, find_runs, runs_dir

REPORTING_NOTEBOOKS = ("02_baseline_mask2former", "03_backbones_dinat_semask", "04_copy_paste")
VERDICT_COLOURS = {"gain": "tab:green", "loss": "tab:red", "tie": "tab:gray", "one seed": "tab:blue",
                   "reference": "tab:olive"}


# -- the inputs ------------------------------------------------------------------------------------
def collect_runs(data_root=None, notebooks=REPORTING_NOTEBOOKS) -> dict[str, list[Run]]:
    """Finished runs on `data_root` that the notebooks reported, by group ("02 seeds": [...]).

    Notebooks that have not run are skipped, reported runs missing here are left out with a warning;
    when no reported run is found, every finished run on the data root is taken, grouped by name
    with the seed suffix (_s1, _s2) removed.
    """
    root = resolve_data_root(data_root)
    groups = reported_run_groups(notebooks)
    names = [n for g in groups.values() for n in g]
    present = {r.name: r for r in find_runs(data_root=root, names=names)} if names else {}
    missing = [n for n in names if n not in present]
    if missing:
        warnings.warn(f"{len(missing)} reported runs are not finished runs on {root} in {runs_dir()} "
                      f"(e.g. {missing[0]}); left out", stacklevel=2)
    found = {label: [present[n] for n in g if n in present] for label, g in groups.items()}
    found = {label: runs for label, runs in found.items() if runs}
    if not found:
        for run in find_runs(data_root=root):
            found.setdefault(re.sub(r"_s\d+$", "", run.name), []).append(run)
    return found


def rank_runs(groups: dict[str, list[Run]]) -> pd.DataFrame:
    """One row per run (run, group, recorded val mIoU: its best evaluation), the best first, never-evaluated last."""
    rows = [{"run": run.name, "group": label, "recorded val mIoU": (run.best_metrics() or {}).get("mIoU", np.nan)}
            for label, runs in groups.items() for run in runs]
    table = pd.DataFrame(rows, columns=["run", "group", "recorded val mIoU"])
    return table.sort_values("recorded val mIoU", ascending=False, na_position="last", kind="stable",
                             ignore_index=True)


def spread_group(groups: dict[str, list[Run]], best: str) -> list[Run]:
    """The runs whose seeds measure the noise: the group of run `best` when it has several, else the
    largest group that has (else run `best` alone: no spread)."""
    mine = next((runs for runs in groups.values() if any(r.name == best for r in runs)), None)
    if mine is None:
        raise ValueError(f"run {best!r} is in none of the groups: {', '.join(groups)}")
    if len(mine) > 1:
        return mine
    seeded = [runs for runs in groups.values() if len(runs) > 1]
    return max(seeded, key=len) if seeded else mine


def sweep_grid(presets, *, sxy_scales=(1,), iters: int | None = None) -> list[CRFParams]:
    """CRF settings from preset names, each with its sxy (both pair terms) times every scale and `iters`
    iterations (None: the preset's); repeats dropped."""
    grid = []
    for name in presets:
        base = crf_preset(name)
        for s in sxy_scales:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
                raise ValueError(f"sxy scales must be positive numbers, got {s!r}")
            p = dataclasses.replace(base, sxy_gaussian=base.sxy_gaussian * s, sxy_bilateral=base.sxy_bilateral * s,
                                    iters=base.iters if iters is None else iters)
            if p not in grid:
                grid.append(p)
    return grid


# -- scoring stages --------------------------------------------------------------------------------
@dataclass
class Stage:
    """One scored stage: its recipe, its stored probabilities of the val set, and their evaluation."""

    recipe: Recipe
    index: ProbIndex
    evaluation: Evaluation

    @property
    def scores(self) -> Scores:
        return self.evaluation.scores


def evaluate_stage(recipe: Recipe, data_root=None, split: str = "val", *, max_images: int | None = None,
                   workers: int | None = None, progress: bool = False) -> Stage:
    """`apply_recipe` on a labelled split, scored; `max_images` asks for its first images only (a subset
    on purpose: the evaluation's `coverage` says "N of M images")."""
    index = apply_recipe(recipe, data_root, split, max_images=max_images, workers=workers, progress=progress)
    return Stage(recipe, index, evaluate_index(index, data_root, split, subset=max_images is not None))


def evaluate_runs(names, data_root=None, split: str = "val", *, tta: TTA = TTA(hflip=True),
                  max_images: int | None = None) -> dict[str, Evaluation]:
    """Each run's predictions of a labelled split with `tta` (stored; made when missing), scored: {run name: Evaluation}."""
    return {name: evaluate_stage(Recipe((name,), tta=tta), data_root, split, max_images=max_images).evaluation
            for name in names}


def _scores(value) -> Scores:
    return value.scores if isinstance(value, Stage) else value


# -- the stage table -------------------------------------------------------------------------------
def stage_table(stages: dict, built_on: dict, *, spread: float, seeds: int) -> pd.DataFrame:
    """One row per stage, in order: val mIoU, the stage it builds on, Δ against it, Δ against the first
    stage, and its 95% interval, MDE and verdict under the noise `spread` measured over `seeds` seeds
    (`compare.Contrast.from_spread`), and the share of the small objects it finds (NaN for bare Scores).

    `stages` maps stage names to `Stage`s (or `metrics.Scores`); `built_on` maps a stage to the stage
    it changes (None or absent: a reference, normally the first).
    """
    scores = {name: _scores(v) for name, v in stages.items()}
    if not scores:
        raise ValueError("no stages to tabulate")
    bad = [name for name, s in scores.items() if not math.isfinite(s.miou)]
    if bad:
        raise ValueError(f"stages with a non-finite mIoU: {bad}")
    first = next(iter(scores))
    rows = []
    for name, s in scores.items():
        base = built_on.get(name)
        if base is not None and base not in scores:
            raise ValueError(f"stage {name!r} builds on {base!r}, which is not a stage: {', '.join(scores)}")
        delta = np.nan if base is None else s.miou - scores[base].miou
        judged = None if base is None else Contrast.from_spread(delta, spread, seeds=seeds)
        recall = stages[name].evaluation.small_object_recall if isinstance(stages[name], Stage) else None
        rows.append({"stage": name, "val mIoU": s.miou, "built on": base or "-", "Δ": delta,
                     "95% CI": "" if judged is None or seeds < 2 else "[{:+.4f}, {:+.4f}]".format(*judged.ci),
                     "MDE": np.nan if judged is None or seeds < 2 else judged.mde,
                     f"Δ vs {first}": s.miou - scores[first].miou,
                     "verdict": "reference" if judged is None else judged.verdict,
                     "small-object recall": np.nan if recall is None else recall})
    table = pd.DataFrame(rows).set_index("stage")
    table.attrs["seeds"] = seeds
    return table


def class_deltas(stages: dict, built_on: dict) -> pd.DataFrame:
    """Per-class IoU change of each stage against the stage it builds on (stages x classes; NaN where a class is empty)."""
    scores = {name: _scores(v) for name, v in stages.items()}
    rows = {name: np.asarray(s.per_class_iou, float) - np.asarray(scores[built_on[name]].per_class_iou, float)
            for name, s in scores.items() if built_on.get(name) is not None}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(CLASS_NAMES[:len(next(iter(scores.values()))
                                                                                   .per_class_iou)]))


def crf_changes(before, after, *, n: int = 2) -> tuple[list[str], list[str]]:
    """File names of the `n` images a step helped most and the `n` it hurt most (per-image mIoU of two
    `evaluation.Evaluation`s of the same images; only real gains and losses)."""
    a = before.per_image.set_index("file_name")["mIoU"]
    b = after.per_image.set_index("file_name")["mIoU"]
    if set(a.index) != set(b.index):
        raise ValueError("the two evaluations cover different images")
    change = (b - a.reindex(b.index)).dropna().sort_values(kind="stable")
    return list(change[change > 0].index[::-1][:n]), list(change[change < 0].index[:n])


def plot_stages(table: pd.DataFrame, *, mean: float | None = None, spread: float = 0.0, title: str = ""):
    """Bars of val mIoU per stage coloured by verdict (each against the stage it builds on); the first
    stage's seed mean ± spread as a dot with whiskers, and the band of a tie around the first stage (the 95%
    interval of a difference under that seed noise, `compare.Contrast.from_spread`: a stage inside it is
    within noise of the first)."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(table)), 3.8))
    x = np.arange(len(table))
    ax.bar(x, table["val mIoU"], color=[VERDICT_COLOURS.get(v, "tab:blue") for v in table["verdict"]])
    first = table["val mIoU"].iloc[0]
    seeds = int(table.attrs.get("seeds", 2))
    if spread > 0 and seeds > 1:
        half = Contrast.from_spread(0.0, spread, seeds=seeds).ci[1]
        ax.axhspan(first - half, first + half, color="0.85", zorder=0,
                   label=f"{table.index[0]} ± 95% interval of a difference ({seeds} seeds)")
    if mean is not None:
        ax.errorbar([0], [mean], yerr=[spread], fmt="o", color="black", capsize=4, label="seeds: mean ± spread")
    for xi, (v, verdict_) in enumerate(zip(table["val mIoU"], table["verdict"])):
        ax.text(xi, v, f"{v:.3f}\n{verdict_}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, table.index, rotation=20, ha="right")
    low = min(table["val mIoU"].min(), mean if mean is not None else first) - 3 * max(spread, 0.01)
    ax.set_ylim(max(0.0, low), table["val mIoU"].max() + 4 * max(spread, 0.01))
    ax.set_ylabel("val mIoU"), ax.set_title(title)
    if spread > 0 or mean is not None:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def stage_records(stages: dict, table: pd.DataFrame, *, noise=None) -> list[dict]:
    """The `stages` list of the metrics file: name, val_mIoU, per_class_iou, small_object_recall, built_on,
    delta, verdict, runs, recipe (what rebuilds the stage on another split) and index (its folder of the
    val set). `noise`, the `compare.SeedResults` of the first stage's seeds, adds its val_mIoU_std and seeds
    to the first record."""
    records = [{"name": name, "val_mIoU": s.scores.miou, "per_class_iou": s.scores.as_dict()["per_class_iou"],
                "small_object_recall": s.evaluation.small_object_recall,
                "built_on": None if table.loc[name, "built on"] == "-" else table.loc[name, "built on"],
                "delta": table.loc[name, "Δ"], "verdict": table.loc[name, "verdict"], "runs": list(s.recipe.members),
                "recipe": s.recipe.as_dict(), "index": str(s.index.path)} for name, s in stages.items()]
    if noise is not None and records:
        records[0].update(val_mIoU_std=noise.std, seeds=len(noise.scores), seed_runs=list(noise.run_names))
    return records


def best_ensemble(stages: dict) -> dict | None:
    """The best-scoring stage with a vote, as `trashlib.teacher` reads it: {name, runs (best first), weights,
    vote, crf (CRFParams fields or None), overwrite ({k, max_area} or None), tta}; None without one."""
    voted = [name for name, s in stages.items() if s.recipe.vote is not None]
    if not voted:
        return None
    name = max(voted, key=lambda n: stages[n].scores.miou)
    r = stages[name].recipe
    return {"name": name, "runs": list(r.members), "weights": None if r.weights is None else list(r.weights),
            "vote": r.vote, "crf": None if r.crf is None else r.crf.as_dict(), "tta": r.tta.as_dict(),
            "overwrite": None if r.overwrite is None else {"k": r.overwrite, "max_area": r.max_area}}


def lessons(table: pd.DataFrame, *, spread: float, seeds: int) -> list[str]:
    """The closing sentences, written from the numbers: each stage's change and verdict, the noise, the winner."""
    first = table.index[0]
    noise = Contrast.from_spread(0.0, spread, seeds=seeds)
    out = [f"Noise: the spread over {seeds} seeds is {spread:.4f}, so a change within ±{noise.ci[1]:.4f} is a tie "
           f"(the 95% interval of a difference), and the smallest change this design detects is {noise.mde:.4f}."
           if seeds > 1 else
           "Noise: only one seed of the best single run, so no change can be called a gain or a loss here."]
    for name, row in table.iloc[1:].iterrows():
        word = {"gain": "a gain", "loss": "a loss", "tie": "a tie (within noise)"}.get(row["verdict"],
                                                                                    "no verdict (one seed)")
        out.append(f"{name}: val mIoU {row['val mIoU']:.4f}, {row['Δ']:+.4f} against {row['built on']} - {word}.")
    best = table["val mIoU"].idxmax()
    delta = table.loc[best, "val mIoU"] - table.loc[first, "val mIoU"]
    judged = verdict(delta, spread, seeds=seeds) if best != first else "reference"
    out.append(f"Best on val: {best} ({table.loc[best, 'val mIoU']:.4f}, {delta:+.4f} against {first}"
               + ("" if best == first else f", {judged}") + ").")
    return out
