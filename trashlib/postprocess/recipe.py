"""Recipes: how a post-processing stage's probabilities are made from trained runs, on any split.

A `StageRecipe` names its member runs (best first), the test-time augmentation they predict with, and the
steps after that: a soft or hard vote (with soft-vote weights), DenseCRF with one setting, and the
consensus overwrite with k and an area threshold. `apply_recipe` rebuilds the stage on a split through
the probability store, so notebook 05 scores a stage on val and notebook 07 submits the same stage on
test from the recipe 05 saved (`pick_stage` reads it); every step reuses an identical stored result.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path

from trashlib import paths
from trashlib.data import resolve_data_root
from trashlib.postprocess.consensus import overwrite_index
from trashlib.postprocess.crf import CRFParams, crf_index
from trashlib.postprocess.ensemble import VOTES, ensemble, normalize_weights
from trashlib.predict.inference import DEFAULT_TTA, TTA, predict
from trashlib.predict.probs import ProbIndex
from trashlib.reporting.records import StagesRecord
from trashlib.runs import resolve_run

RECIPE_KEYS = ("members", "tta", "vote", "weights", "crf", "overwrite", "max_area")
SOURCES = ("best-run", "ensemble", "best-on-val", "best-ensemble")  # what 07 submits; 06's teacher: best-ensemble


def _whole(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        raise ValueError(f"recipe {what} must be a whole number, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class StageRecipe:
    """One stage: `members` (run names, best first: a hard vote's ties go to the first), their `tta`,
    then `vote` (None for a single run, "soft" with optional `weights`, "hard"), `crf` (a CRFParams
    or None) and `overwrite` (k of the members, after CRF) with `max_area` (pixels, None: any size)."""

    members: tuple[str, ...]
    tta: TTA = DEFAULT_TTA
    vote: str | None = None
    weights: tuple[float, ...] | None = None
    crf: CRFParams | None = None
    overwrite: int | None = None
    max_area: int | None = None

    def __post_init__(self):
        members = (self.members,) if isinstance(self.members, str) else tuple(self.members)
        if not members or not all(isinstance(m, str) and m for m in members) or len(set(members)) != len(members):
            raise ValueError(f"recipe members must be distinct run names, at least one, got {self.members!r}")
        object.__setattr__(self, "members", members)
        if isinstance(self.tta, dict):
            object.__setattr__(self, "tta", TTA(**self.tta))
        if self.vote is None and len(members) > 1:
            raise ValueError(f"{len(members)} members need a vote ({', '.join(VOTES)}); a single run has none")
        if self.vote is not None and self.vote not in VOTES:
            raise ValueError(f"unknown recipe vote {self.vote!r}; valid: {', '.join(VOTES)} or None")
        if self.weights is not None:
            if self.vote != "soft":
                raise ValueError("recipe weights apply to the soft vote only")
            w = normalize_weights(self.weights, len(members))  # one per member, finite, non-negative, not all zero
            object.__setattr__(self, "weights", tuple(float(v) for v in w))
        if isinstance(self.crf, dict):
            object.__setattr__(self, "crf", CRFParams(**self.crf))
        if self.overwrite is not None:
            k = _whole(self.overwrite, "overwrite k")
            if self.crf is None or not 1 <= k <= len(members):
                raise ValueError(f"recipe overwrite k={self.overwrite!r} needs crf and 1 <= k <= {len(members)} "
                                 "(the number of members)")
            object.__setattr__(self, "overwrite", k)
        if self.max_area is not None:
            if self.overwrite is None or _whole(self.max_area, "max_area") < 1:
                raise ValueError(f"recipe max_area={self.max_area!r} needs overwrite and a positive number of pixels")
            object.__setattr__(self, "max_area", int(self.max_area))

    def replace(self, **changes) -> "StageRecipe":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """JSON-ready: what `from_dict` reads back."""
        return {"members": list(self.members), "tta": self.tta.as_dict(), "vote": self.vote,
                "weights": None if self.weights is None else list(self.weights),
                "crf": None if self.crf is None else self.crf.as_dict(), "overwrite": self.overwrite,
                "max_area": self.max_area}

    @classmethod
    def from_dict(cls, d, *, where: str = "recipe") -> "StageRecipe":
        """A recipe from `as_dict` output; an unknown key or a bad value is a ValueError naming `where`."""
        if not isinstance(d, dict):
            raise ValueError(f"{where} must be a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(RECIPE_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown} (valid: {', '.join(RECIPE_KEYS)})")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None

    def describe(self) -> str:
        """One line, e.g. "3 runs, soft vote (0.5/0.3/0.2) + CRF g3-3_b10-50-5_i5 + overwrite k=3"."""
        text = self.members[0] if self.vote is None else f"{len(self.members)} runs, {self.vote} vote"
        if self.weights is not None:
            text += " (" + "/".join(f"{w:.2f}" for w in self.weights) + ")"
        if self.crf is not None:
            text += f" + CRF {self.crf.tag}"
        if self.overwrite is not None:
            text += f" + overwrite k={self.overwrite}" + (f", area <= {self.max_area}" if self.max_area else "")
        return text


def member_indices(recipe: StageRecipe, data_root=None, split: str = "val", *, max_images: int | None = None,
                   progress: bool | None = None) -> list[ProbIndex]:
    """The members' stored predictions of a split with the recipe's TTA (predicted when not stored yet)."""
    return [predict(resolve_run(name), data_root, split, tta=recipe.tta, max_images=max_images, progress=progress)
            for name in recipe.members]


def apply_recipe(recipe: StageRecipe, data_root=None, split: str = "val", *, max_images: int | None = None,
                 workers: int | None = None, progress: bool | None = None) -> ProbIndex:
    """The stage's probabilities on a split: members' predictions -> vote -> CRF -> overwrite, each stored.

    `max_images` restricts to the split's first images (a val subset; never for a submission);
    `workers` is the CRF's process pool (default every core).
    """
    indices = member_indices(recipe, data_root, split, max_images=max_images, progress=progress)
    stages = chain(indices, data_root, split, vote=recipe.vote, weights=recipe.weights, crf=recipe.crf,
                   overwrite=recipe.overwrite, max_area=recipe.max_area, workers=workers, progress=progress)
    return stages[-1][1] if stages else indices[0]


def chain(indices: list[ProbIndex], data_root=None, split: str = "val", *, vote: str | None = "soft", weights=None,
          crf: CRFParams | None = None, overwrite: int | None = None, max_area: int | None = None,
          workers: int | None = None, name: str | None = None, force: bool = False,
          progress: bool | None = None) -> list[tuple[str, ProbIndex]]:
    """The post-processing of the members' stored predictions, each stage stored: the vote (of two or more
    members; ties of a hard vote go to the first), DenseCRF, the consensus overwrite. Returns the stages made,
    as (title, index) in order; the last is the result (none made: the one member is).
    """
    stages, out = [], indices[0]
    if vote is not None and len(indices) > 1:
        out = ensemble(indices, weights=weights, vote=vote, best=0, name=name, force=force, progress=progress)
        stages.append((f"{vote} vote", out))
    if crf is not None:
        out = crf_index(out, data_root, split, crf, workers=workers, force=force, progress=progress)
        stages.append((f"+ CRF {crf.tag}", out))
    if overwrite is not None:
        out = overwrite_index(out, indices, k=overwrite, max_area=max_area, force=force, progress=progress)
        stages.append((f"+ overwrite k={overwrite}", out))
    return stages


# -- the stage notebook 07 submits ------------------------------------------------------------------
def pick_stage(metrics: StagesRecord | None, source: str, *, data_root=None) -> dict | None:
    """One of 05's stages, as {name, val_mIoU, recipe (a `StageRecipe`), slug}, for notebook 07 to submit and 06's
    teacher to label with: None for "best-run"; for "ensemble" the last of the chain 05 saved (+ CRF,
    + overwrite as 05 chose); for "best-on-val" the stage with the highest val mIoU (None when 05 has not
    run: then the best run); for "best-ensemble" the highest among the stages with a vote (None when 05
    has not run or made none). The one reader of 05's stages."""
    if source not in SOURCES:
        raise ValueError(f"unknown submission source {source!r}; valid: {', '.join(SOURCES)}")
    where = paths.REPORTS_DIR / "metrics" / "05_crf_ensemble.json"
    if source == "best-run" or (metrics is None and source in ("best-on-val", "best-ensemble")):
        return None
    if metrics is None:
        raise FileNotFoundError(f"source 'ensemble' needs notebook 05's metrics ({where}): run 05 first, "
                                "or use source 'best-run'")
    stages = metrics.stages
    if not stages:
        raise ValueError(f"{where}: 'stages' must be a non-empty list of records with a recipe")
    made_on = metrics.data_root
    root = resolve_data_root(data_root)
    if made_on is not None and Path(str(made_on)).resolve() != Path(root).resolve():
        raise ValueError(f"{where}: notebook 05 ran on {made_on}, not on {root}; run 05 on this data root")
    if source == "ensemble":
        i = len(stages) - 1
    else:
        voted = source == "best-ensemble"
        scored = [(s.val_mIoU, i) for i, s in enumerate(stages)
                  if s.val_mIoU is not None and (not voted or s.recipe.get("vote") is not None)]
        if not scored:
            if voted:
                return None
            raise ValueError(f"{where}: no stage has a finite val_mIoU")
        i = max(scored, key=lambda t: (t[0], -t[1]))[1]  # a tie goes to the earlier, simpler stage
    chosen = stages[i]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", chosen.name).strip("-")
    return {"name": chosen.name, "val_mIoU": chosen.val_mIoU, "slug": f"05-{slug}",
            "recipe": StageRecipe.from_dict(chosen.recipe, where=f"{where}: stages[{i}].recipe")}
