"""The teacher of pseudo labels: notebook 05's best ensemble if it recorded one, else the best single run.

05's best ensemble is the stage with a vote that scored best on val, read from 05's saved stages by the one
reader of them, `trashlib.postprocess.recipe.pick_stage(metrics, "best-ensemble")`. `choose_teacher`
rebuilds that stage on the unlabelled splits with `trashlib.postprocess.recipe.apply_recipe` (members predict
with the stage's TTA, then the same vote, CRF and overwrite, each stored), or, without it, takes the finished
run with the best validation mIoU among those 02 recorded (`run_names`, `trunk_run`, `run`) and any given.
Round 2 re-labels with `with_student`: the soft vote of the round-1 teacher and a round-1 student.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from trashlib.postprocess.ensemble import ensemble
from trashlib.postprocess.recipe import apply_recipe, pick_stage
from trashlib.predict.inference import DEFAULT_TTA, TTA, predict
from trashlib.reporting.store import load_metrics
from trashlib.runs import Run, best_run, resolve_run

ENSEMBLE_NOTEBOOK, BASELINE_NOTEBOOK = "05_crf_ensemble", "02_baseline_mask2former"


@dataclass
class Teacher:
    """The teacher's probabilities, one ProbIndex per unlabelled split, and what made them."""

    indices: list
    source: str                      # "05 best ensemble", "best 02 run", "round 1 + student"
    description: str
    runs: list[str] = field(default_factory=list)


def _baseline_runs(runs) -> list[Run]:
    m = load_metrics(BASELINE_NOTEBOOK)
    names = [] if m is None else list(m.run_names) + ([m.trunk_run] if m.trunk_run else [])
    found = []
    for name in names:
        try:
            found.append(resolve_run(name))
        except ValueError:  # 02 ran with another runs folder: its runs are not here
            continue
    return [r for r in found + list(runs) if r.finished]


def choose_teacher(splits=("test",), *, data_root=None, runs=(), tta: TTA = DEFAULT_TTA,
                   max_images: int | None = None, progress: bool | None = None) -> Teacher:
    """The teacher's probabilities on `splits`: 05's best ensemble, else the best of 02's runs and `runs`.

    `tta` is the single run's test-time augmentation (an ensemble keeps its own); `max_images` labels
    only the first images of each split (the smoke run).
    """
    stage = pick_stage(load_metrics(ENSEMBLE_NOTEBOOK), "best-ensemble", data_root=data_root)
    if stage is not None:
        recipe = stage["recipe"]
        indices = [apply_recipe(recipe, data_root, s, max_images=max_images, progress=progress) for s in splits]
        return Teacher(indices, "05 best ensemble", f"{stage['name']}: {recipe.describe()}", list(recipe.members))
    best = best_run(_baseline_runs(runs))
    if best is None:
        raise RuntimeError("no teacher: 05 recorded no stage with a vote and no finished 02 run was found or given")
    indices = [predict(best, data_root, s, tta=tta, max_images=max_images, progress=progress) for s in splits]
    return Teacher(indices, "best 02 run", f"{best.name} (val mIoU {best.final_metrics()['mIoU']:.3f}), "
                   "since 05 recorded no best ensemble", [best.name])


def with_student(teacher: Teacher, student: Run, *, data_root=None, tta: TTA = DEFAULT_TTA,
                 max_images: int | None = None, progress: bool | None = None) -> Teacher:
    """Round 2's teacher: per split, the equal soft vote of the round-1 teacher and `student`'s predictions."""
    indices = []
    for index in teacher.indices:
        mine = predict(student, data_root, index.settings["split"], tta=tta, max_images=max_images, progress=progress)
        indices.append(ensemble([index, mine], vote="soft", name="teacher-round2", progress=progress))
    return Teacher(indices, "round 1 + student", f"soft vote of the round-1 teacher and {student.name}",
                   teacher.runs + [student.name])
