"""Post-processing stages compared on one val set: the runs they start from, the stage table, what each stage did.

Notebook 05 scores a chain of stages (best single run -> soft vote -> weighted -> hard vote -> + CRF ->
+ overwrite) on one val set, each a `trashlib.postprocess.recipe.StageRecipe`. `collect_runs` finds the runs that the
training notebooks reported, grouped so that seeds share a group; `rank_runs` orders them by their own
recorded evaluation and `choose_members` takes an ensemble's members, one architecture each first.
`judge_stages` judges each stage against the stage it builds on by the rule of `trashlib.scoring.compare` (a
paired bootstrap over the scored images, with the spread over the seeds of the best single run's group
standing in for the training noise); `stage_table` tabulates it, with the rare classes' changes and their
intervals; `class_deltas` gives every class's change, `crf_changes` finds the images a step helps or hurts
most, and `lessons` writes the closing sentences from the numbers. (`trashlib.postprocess.recipe.pick_stage` chooses
the stage notebook 07 submits from what 05 saved.)
"""
from __future__ import annotations

import dataclasses
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trashlib.classes import CLASS_NAMES
from trashlib.data import resolve_data_root
from trashlib.metrics import Scores
from trashlib.postprocess.crf import CRFParams, crf_preset
from trashlib.postprocess.recipe import StageRecipe, apply_recipe
from trashlib.predict.inference import DEFAULT_TTA, TTA
from trashlib.predict.probs import ProbIndex
from trashlib.reporting.findings import verdict_phrase
from trashlib.reporting.store import reported_run_groups
from trashlib.runs import Run, find_runs, runs_dir
from trashlib.scoring.compare import Contrast, ArmResults, image_contrast
from trashlib.scoring.evaluation import Evaluation, evaluate_index

REPORTING_NOTEBOOKS = ("02_baseline_mask2former", "03_backbones_dinat_semask", "04_copy_paste")


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
    """One row per run (run, group, model, recorded val mIoU: its final evaluation, `Run.final_metrics`), the
    best first, never-evaluated last."""
    rows = [{"run": run.name, "group": label, "model": run.config.model,
             "recorded val mIoU": (run.final_metrics() or {}).get("mIoU", np.nan)}
            for label, runs in groups.items() for run in runs]
    table = pd.DataFrame(rows, columns=["run", "group", "model", "recorded val mIoU"])
    return table.sort_values("recorded val mIoU", ascending=False, na_position="last", kind="stable",
                             ignore_index=True)


def choose_members(ranked: pd.DataFrame, k: int, *, floor: float | None = None, diverse: bool = True) -> list[str]:
    """The `k` runs an ensemble takes from `rank_runs`' table: with `diverse`, the best run of each
    architecture first (the winning team ensembled different architectures), then the best of the rest; only runs
    above the colour-only `floor` when any is (a model below it adds noise to a vote, not a view)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"an ensemble needs at least one member, got {k!r}")
    pool = ranked.dropna(subset=["recorded val mIoU"])
    if floor is not None and (pool["recorded val mIoU"] > floor).any():
        pool = pool[pool["recorded val mIoU"] > floor]
    if pool.empty:
        pool = ranked
    chosen = pool.drop_duplicates("model")["run"].tolist()[:k] if diverse else []
    return chosen + [r for r in pool["run"] if r not in chosen][:k - len(chosen)]


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

    recipe: StageRecipe
    index: ProbIndex
    evaluation: Evaluation

    @property
    def scores(self) -> Scores:
        return self.evaluation.scores


def evaluate_stage(recipe: StageRecipe, data_root=None, split: str = "val", *, max_images: int | None = None,
                   workers: int | None = None, progress: bool | None = None) -> Stage:
    """`apply_recipe` on a labelled split, scored; `max_images` asks for its first images only (a subset
    on purpose: the evaluation's `coverage` says "N of M images")."""
    index = apply_recipe(recipe, data_root, split, max_images=max_images, workers=workers, progress=progress)
    return Stage(recipe, index, evaluate_index(index, data_root, split, subset=max_images is not None))


def evaluate_runs(names, data_root=None, split: str = "val", *, tta: TTA = DEFAULT_TTA,
                  max_images: int | None = None) -> dict[str, Evaluation]:
    """Each run's predictions of a labelled split with `tta` (stored; made when missing), scored: {run name: Evaluation}."""
    return {name: evaluate_stage(StageRecipe((name,), tta=tta), data_root, split, max_images=max_images).evaluation
            for name in names}


def _scores(value) -> Scores:
    return value.scores if isinstance(value, Stage) else value


# -- the stage table -------------------------------------------------------------------------------
def _confusions(value) -> np.ndarray | None:
    return value.evaluation.confusions if isinstance(value, Stage) else None


def judge_stages(stages: dict, built_on: dict, *, noise: ArmResults | None = None,
                 classes=()) -> dict[str, tuple[Contrast, dict[str, Contrast | None]]]:
    """Each stage that builds on another, judged against it by the rule of `trashlib.scoring.compare`: {stage:
    (Contrast of Δ val mIoU, {class: Contrast of its Δ IoU})}.

    Two stages scored image by image on the same images get both sources of noise
    (`compare.image_contrast`: a paired bootstrap over the images, and the seeds of `noise` standing in
    for the training noise); bare `metrics.Scores` get the seeds' alone (`Contrast.from_spread`).
    """
    scores = {name: _scores(v) for name, v in stages.items()}
    seeds = 1 if noise is None else len(noise.scores)
    out = {}
    for name, value in stages.items():
        base = built_on.get(name)
        if base is None:
            continue
        if base not in stages:
            raise ValueError(f"stage {name!r} builds on {base!r}, which is not a stage: {', '.join(stages)}")
        mine, theirs = _confusions(value), _confusions(stages[base])
        if mine is not None and theirs is not None and mine.shape == theirs.shape and len(mine):
            out[name] = image_contrast(mine, theirs, noise=noise, classes=classes)
        else:
            delta = scores[name].miou - scores[base].miou
            out[name] = (Contrast.from_spread(delta, 0.0 if noise is None else noise.std, seeds=seeds),
                         {c: None for c in classes})
    return out


def stage_table(stages: dict, built_on: dict, *, noise: ArmResults | None = None, classes=()) -> pd.DataFrame:
    """One row per stage, in order: val mIoU, the stage it builds on, Δ against it with its 95% interval,
    MDE, the noise the interval holds and the verdict (`judge_stages`), Δ against the first stage, the
    share of the small objects it finds (NaN for bare Scores), and for each of `classes` its IoU and Δ IoU
    with interval.

    `stages` maps stage names to `Stage`s (or `metrics.Scores`); `built_on` maps a stage to the stage
    it changes (None or absent: a reference, normally the first); `noise` is the seeds of the runs the
    stages start from (None: one seed, no verdicts).
    """
    scores = {name: _scores(v) for name, v in stages.items()}
    if not scores:
        raise ValueError("no stages to tabulate")
    bad = [name for name, s in scores.items() if not math.isfinite(s.miou)]
    if bad:
        raise ValueError(f"stages with a non-finite mIoU: {bad}")
    judged = judge_stages(stages, built_on, noise=noise, classes=classes)
    first = next(iter(scores))
    rows = []
    for name, s in scores.items():
        main, by_class = judged.get(name, (None, {}))
        shown = main is not None and main.noise != "none"
        recall = stages[name].evaluation.small_object_recall if isinstance(stages[name], Stage) else None
        row = {"stage": name, "val mIoU": s.miou, "built on": built_on.get(name) or "-",
               "Δ": np.nan if main is None else main.delta,
               "95% CI": "[{:+.4f}, {:+.4f}]".format(*main.ci) if shown else "",
               "MDE": main.mde if shown else np.nan, "noise": "" if main is None else main.noise,
               "verdict": "reference" if main is None else main.verdict,
               f"Δ vs {first}": s.miou - scores[first].miou,
               "small-object recall": np.nan if recall is None else recall}
        for c in classes:
            k = by_class.get(c)
            row[f"IoU {c}"] = float(s.per_class_iou[CLASS_NAMES.index(c)])
            row[f"Δ {c}"] = np.nan if k is None else k.delta
            row[f"Δ {c} 95% CI"] = "[{:+.3f}, {:+.3f}]".format(*k.ci) if k is not None and k.noise != "none" else ""
        rows.append(row)
    table = pd.DataFrame(rows).set_index("stage")
    table.attrs["seeds"] = 1 if noise is None else len(noise.scores)
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


def stage_records(stages: dict, table: pd.DataFrame, *, noise: ArmResults | None = None, classes=()) -> list[dict]:
    """The `stages` list of the metrics file: name, val_mIoU, per_class_iou, small_object_recall, built_on,
    runs, recipe (what rebuilds the stage on another split) and index (its folder of the val set); for a
    stage that builds on another, delta, delta_ci, mde, noise and verdict (`compare.Contrast.as_dict`) and
    per_class_delta (each of `classes`: the same, None where the class is empty), as `table` judged them
    under `noise`; else delta None and verdict "reference". `noise`, the `compare.ArmResults` of the
    first stage's seeds, also adds its val_mIoU_std, seeds and seed_runs to the first record."""
    built_on = {name: None if table.loc[name, "built on"] == "-" else table.loc[name, "built on"] for name in stages}
    judged = judge_stages(stages, built_on, noise=noise, classes=classes)
    records = []
    for name, s in stages.items():
        record = {"name": name, "val_mIoU": s.scores.miou, "per_class_iou": s.scores.as_dict()["per_class_iou"],
                  "small_object_recall": s.evaluation.small_object_recall, "built_on": built_on[name],
                  "delta": None, "verdict": "reference", "runs": list(s.recipe.members),
                  "recipe": s.recipe.as_dict(), "index": str(s.index.path)}
        if name in judged:
            main, by_class = judged[name]
            record.update(main.as_dict())
            record["per_class_delta"] = {c: None if k is None else k.as_dict() for c, k in by_class.items()}
        records.append(record)
    if noise is not None and records:
        records[0].update(val_mIoU_std=noise.std, seeds=len(noise.scores), seed_runs=list(noise.run_names))
    return records


def lessons(stages: dict, table: pd.DataFrame, *, noise: ArmResults | None = None) -> list[str]:
    """The closing sentences, written from the numbers: the noise, each stage's change with its interval and
    verdict (a tie as "no effect larger than" its MDE), and the best stage judged against the first."""
    first, seeds = table.index[0], int(table.attrs.get("seeds", 1))
    out = [f"Noise: each change's 95% interval holds the choice of the scored images (a paired bootstrap) and "
           f"the spread over {seeds} seeds of the runs the stages start from; the MDE is the smallest change "
           f"each comparison finds 80% of the time." if seeds > 1 else
           "Noise: only one seed of the runs the stages start from, so no change can be called a gain or a loss here."]

    for name, row in table.iloc[1:].iterrows():
        ci = f" {row['95% CI']}" if row["95% CI"] else ""
        out.append(f"{name}: val mIoU {row['val mIoU']:.4f}, {row['Δ']:+.4f}{ci} against {row['built on']} - "
                   f"{verdict_phrase(row['verdict'], row['MDE'], fmt='.4f')}.")
    best = table["val mIoU"].idxmax()
    delta = table.loc[best, "val mIoU"] - table.loc[first, "val mIoU"]
    if best == first:
        out.append(f"Best on val: {best} ({table.loc[best, 'val mIoU']:.4f}).")
    else:
        main, _ = judge_stages({first: stages[first], best: stages[best]}, {best: first}, noise=noise)[best]
        ci = "" if main.noise == "none" else " [{:+.4f}, {:+.4f}]".format(*main.ci)
        out.append(f"Best on val: {best} ({table.loc[best, 'val mIoU']:.4f}, {delta:+.4f}{ci} against {first}, "
                   f"{verdict_phrase(main.verdict, main.mde, fmt='.4f')}).")
    return out
