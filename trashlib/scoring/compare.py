"""Comparisons over seeds: mean ± spread per variant, and a verdict against a reference that noise cannot fake.

The one rule every comparison of the report follows:
- a variant's result is its val mIoU on each seed; its **spread** is the sample standard deviation
  of those values (ddof=1; 0 with a single seed);
- Δ, the difference from the reference, gets a **95% interval** that combines both sources of noise:
  training noise, from the seeds (paired: an arm and its reference share each seed, so the spread of
  the per-seed differences is the technique's own), and evaluation noise, from a paired bootstrap over
  the val images (every arm is scored on the same images; resampling them, with the same draw for the
  arm and the reference, shows how much the choice of images moves Δ). The two variances add; the
  interval uses Student's t with Welch-Satterthwaite degrees of freedom, so two or three seeds widen it
  as they should;
- Δ is a **gain** or a **loss** when its interval excludes 0, else a **tie**, which reads "no effect
  larger than the MDE": the **minimum detectable effect**, the true Δ the design finds 80% of the time
  at the 5% level, (t_0.975 + t_0.80) x its standard error;
- a variant measured on fewer than 2 seeds gets no verdict but "one seed" (no estimate of training noise).

`Contrast` applies the rule; `contrast` measures one from two `ArmResults`, `image_contrast` from two
sets of predictions of the same images (post-processing, which trains nothing), `Contrast.from_spread`
from a seed spread alone (the comparisons that have nothing else); `compare_table` builds the table and
`variant_record` is what notebooks save to reports/metrics. A run records the confusion matrix of every
val image of its final evaluation (`trashlib.training`), which is what the bootstrap resamples.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from trashlib.classes import CLASS_NAMES
from trashlib.metrics import Scores, class_iou, miou, object_recall

LEVEL = 0.95        # the interval's coverage
POWER = 0.80        # the chance of finding a true effect of the MDE
BOOTSTRAP = 2000    # resamples of the val images


@dataclass
class ArmResults:
    """One arm's scores, one per random seed, with the run folders they came from and, where recorded, each
    seed's confusion matrices per val image (`confusions[k]`: (images, classes, classes), or None) and its
    small objects found and there per val image (`objects[k]`: (images, 2, classes), or None)."""

    scores: list[Scores]
    seeds: list[int] = field(default_factory=list)
    run_names: list[str] = field(default_factory=list)
    confusions: list[np.ndarray | None] = field(default_factory=list)
    image_names: list[str] = field(default_factory=list)
    objects: list[np.ndarray | None] = field(default_factory=list)

    def __post_init__(self):
        if not self.scores:
            raise ValueError("a variant needs the scores of at least one seed")
        if self.seeds and len(self.seeds) != len(self.scores):
            raise ValueError(f"{len(self.scores)} scores but {len(self.seeds)} seeds")
        if self.confusions and len(self.confusions) != len(self.scores):
            raise ValueError(f"{len(self.scores)} scores but {len(self.confusions)} sets of per-image confusions")
        if self.objects and len(self.objects) != len(self.scores):
            raise ValueError(f"{len(self.scores)} scores but {len(self.objects)} sets of per-image small objects")
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
        return _nanmean(np.stack([np.asarray(s.per_class_iou, dtype=np.float64) for s in self.scores]), axis=0)

    @property
    def small_object_recall(self) -> float | None:
        """The share of the val split's small objects found (`metrics.object_recall`), mean over the seeds
        that recorded them; None when none did."""
        recalls = [object_recall(o)[0] for o in self.objects if o is not None]
        recalls = [r for r in recalls if math.isfinite(r)]
        return float(np.mean(recalls)) if recalls else None


def _nanmean(x: np.ndarray, axis) -> np.ndarray:
    with warnings.catch_warnings():  # an all-NaN slice (a class empty everywhere) is NaN, without a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _t(q: float, df: float) -> float:
    return float(stats.norm.ppf(q) if not math.isfinite(df) else stats.t.ppf(q, df))


@dataclass(frozen=True)
class Contrast:
    """Δ of a variant against its reference with the noise it was measured under, and what follows: the
    95% interval, the minimum detectable effect and the verdict (the module's rule).

    `var_train` is the variance of Δ from training (seeds) with `df_train` degrees of freedom, `var_eval`
    its variance from the choice of val images (bootstrap); None where that source was not measured.
    `trained` False marks a contrast in which no training differs (one model scored on two sets of
    images): it has no training noise to miss, so one seed still gets a verdict.
    """

    delta: float
    seeds: int
    var_train: float | None = None
    df_train: float = math.inf
    var_eval: float | None = None
    trained: bool = True

    def __post_init__(self):
        for name in ("delta", "var_train", "var_eval"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v!r}")
            if name != "delta" and v is not None and v < 0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")

    @classmethod
    def from_spread(cls, delta: float, spread: float, *, seeds: int = 2) -> "Contrast":
        """Δ between two means over `seeds` seeds each whose results spread by `spread` (their sample standard
        deviation), without pairing or per-image scores: the training noise of an unpaired difference."""
        if not (math.isfinite(delta) and math.isfinite(spread)):
            raise ValueError(f"delta and spread must be finite, got {delta!r}, {spread!r}")
        if seeds < 2:
            return cls(delta, seeds)
        return cls(delta, seeds, var_train=2 * spread ** 2 / seeds, df_train=2 * (seeds - 1))

    @property
    def noise(self) -> str:
        """Which sources the interval holds: "seeds + images", "seeds", "images" or "none"."""
        return " + ".join(n for n, v in (("seeds", self.var_train), ("images", self.var_eval)) if v is not None) \
            or "none"

    @property
    def se(self) -> float:
        return math.sqrt((self.var_train or 0.0) + (self.var_eval or 0.0))

    @property
    def df(self) -> float:
        """Welch-Satterthwaite degrees of freedom (the bootstrap's variance counts as known exactly)."""
        if not self.var_train:
            return math.inf
        return self.se ** 4 / (self.var_train ** 2 / self.df_train)

    @property
    def ci(self) -> tuple[float, float]:
        half = _t(0.5 + LEVEL / 2, self.df) * self.se
        return self.delta - half, self.delta + half

    @property
    def mde(self) -> float:
        """The smallest true |Δ| this design detects with probability POWER at level 1 - LEVEL."""
        return (_t(0.5 + LEVEL / 2, self.df) + _t(POWER, self.df)) * self.se

    @property
    def verdict(self) -> str:
        if self.trained and self.seeds < 2:
            return "one seed"
        lo, hi = self.ci
        if self.delta == 0 or lo <= 0 <= hi:
            return "tie"
        return "gain" if self.delta > 0 else "loss"

    def as_dict(self) -> dict:
        """What a metrics file records: delta, delta_ci [lo, hi], mde, noise, verdict."""
        return {"delta": self.delta, "delta_ci": list(self.ci), "mde": self.mde, "noise": self.noise,
                "verdict": self.verdict}


def verdict(delta: float, spread: float, *, seeds: int = 2) -> str:
    """"gain", "loss", "tie" or "one seed" for a difference `delta` of two means over `seeds` seeds whose
    spread is `spread` (`Contrast.from_spread`: the rule, with training noise alone)."""
    return Contrast.from_spread(delta, spread, seeds=seeds).verdict


def recorded(record) -> tuple[str, tuple[float, float], float] | None:
    """(verdict, 95% interval, MDE) of what a metrics record holds of a `Contrast` (`Contrast.as_dict`, a dict or
    a record with those fields), or None where it holds no finite interval and MDE (nothing measured)."""
    if record is None:
        return None
    get = record.get if isinstance(record, Mapping) else lambda key: getattr(record, key, None)  # a dict or a record
    ci, mde, verdict_ = get("delta_ci"), get("mde"), get("verdict")
    numbers = [*ci, mde] if isinstance(ci, (list, tuple)) and len(ci) == 2 else []
    if verdict_ not in ("gain", "loss", "tie", "one seed") or not numbers or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        return None
    return verdict_, (float(ci[0]), float(ci[1])), float(mde)


def against_claim(judged: "Contrast | Mapping", claimed: float, *, who: str = "the winning team") -> str:
    """One sentence on what a measured Δ says about a claimed one: whether the claim lies in its 95%
    interval, and, for a tie, whether the design could have seen an effect of the claimed size (its MDE).
    `judged` is a `Contrast` or what a metrics file records of one (`Contrast.as_dict`)."""
    if not math.isfinite(claimed):
        raise ValueError(f"the claimed effect must be finite, got {claimed!r}")
    if isinstance(judged, Contrast):
        measured = judged.verdict != "one seed" and judged.noise != "none"
        delta, (lo, hi), mde, verdict_ = judged.delta, judged.ci, judged.mde, judged.verdict
    else:
        delta, read = judged.get("delta"), recorded(judged)
        measured = read is not None and read[0] != "one seed"
        verdict_, (lo, hi), mde = read if measured else (judged.get("verdict"), (math.nan, math.nan), math.nan)
    if not measured:
        return f"{who} claimed {claimed:+.4f}; measured {delta:+.4f} without an interval: no test of the claim"
    where = "inside" if lo <= claimed <= hi else "outside"
    text = f"{who} claimed {claimed:+.4f}; measured {delta:+.4f} [{lo:+.4f}, {hi:+.4f}], the claim {where} it"
    if verdict_ == "tie":
        if claimed == 0:
            return text + f"; the claim of no effect agrees: no effect larger than the MDE {mde:.4f}"
        if abs(claimed) < mde:
            return text + f"; the claim is below this design's MDE {mde:.4f}, so the tie cannot tell"
        return text + f"; an effect that large would show 80% of the time (MDE {mde:.4f}) and did not"
    same = (delta > 0) == (claimed > 0)
    return text + ("; a " + verdict_ + (" in the claimed direction" if same else " against the claim"))


def _pairs(arm: ArmResults, ref: ArmResults) -> list[tuple[int, int]]:
    """Positions (in arm, in ref) of the runs that share a seed; by position when seeds are not recorded."""
    if arm.seeds and ref.seeds:
        where = {s: k for k, s in enumerate(arm.seeds)}
        return [(where[s], j) for j, s in enumerate(ref.seeds) if s in where]
    return list(zip(range(len(arm.scores)), range(len(ref.scores))))


def _draws(n: int, draws: int, rng) -> np.ndarray:
    """Bootstrap weights: how often each of n images is drawn in each of `draws` resamples, (draws, n)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)


def _resampled(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each resample's summed confusion matrix of a (seeds, images, C, C) stack: (draws, seeds, C, C), one
    matrix product per seed."""
    seeds, n, c = stack.shape[:3]
    flat = weights @ stack.astype(np.float64).reshape(seeds, n, c * c)  # (seeds, draws, C*C)
    return flat.transpose(1, 0, 2).reshape(len(weights), seeds, c, c)


def _boot_variance(arm: np.ndarray, ref: np.ndarray, *, draws: int, seed: int) -> tuple[float, np.ndarray]:
    """Variance of Δ mIoU and of each class's Δ IoU over a paired bootstrap of the images: both stacks
    (seeds, images, C, C) are resampled with the same draws; Δ is the mean over seeds, as measured."""
    weights = _draws(arm.shape[1], draws, np.random.default_rng(seed))

    def resampled(stack: np.ndarray) -> np.ndarray:
        return _resampled(stack, weights)

    iou_a, iou_r = class_iou(resampled(arm)), class_iou(resampled(ref))  # (draws, seeds, C)
    d_miou = (_nanmean(iou_a, axis=-1) - _nanmean(iou_r, axis=-1)).mean(axis=1)
    d_class = _nanmean(iou_a - iou_r, axis=1)  # (draws, C)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(d_miou.var(ddof=1)), np.nanvar(d_class, axis=0, ddof=1)


def contrast(arm: ArmResults, ref: ArmResults, *, classes: Sequence[str] = (), draws: int = BOOTSTRAP,
             seed: int = 0) -> tuple[Contrast, dict[str, Contrast]]:
    """Δ val mIoU of `arm` against `ref` under both sources of noise (the module's rule), and the same for the
    IoU of each class in `classes`.

    Seeds the two share are paired: Δ is the mean of the per-seed differences and their spread is the
    training noise (without a shared seed, the unpaired difference of the means). Where every paired run
    recorded its per-image confusions of the same val images, a paired bootstrap over those images adds
    the evaluation noise.
    """
    pairs = _pairs(arm, ref)
    per_class = [CLASS_NAMES.index(c) for c in classes]
    if not pairs:  # nothing shared: two independent means
        delta, n = arm.mean - ref.mean, min(len(arm.scores), len(ref.scores))
        var = arm.std ** 2 / len(arm.scores) + ref.std ** 2 / len(ref.scores) if n > 1 else None
        main = Contrast(delta, n, var_train=var, df_train=max(1, len(arm.scores) + len(ref.scores) - 2))
        class_delta = arm.per_class_iou - ref.per_class_iou
        return main, {c: Contrast(float(class_delta[i]), n) if math.isfinite(class_delta[i]) else None
                      for c, i in zip(classes, per_class)}
    a, r = [p[0] for p in pairs], [p[1] for p in pairs]
    n = len(pairs)
    d = arm.mious[a] - ref.mious[r]
    d_class = np.stack([np.asarray(arm.scores[i].per_class_iou, float) - np.asarray(ref.scores[j].per_class_iou, float)
                        for i, j in pairs])  # (pairs, C)
    var_train = float(d.var(ddof=1)) / n if n > 1 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        var_class = np.nanvar(d_class, axis=0, ddof=1) / np.sum(np.isfinite(d_class), axis=0) if n > 1 else None
    var_eval = var_eval_class = None
    stacks = [arm.confusions[i] if arm.confusions else None for i in a] + \
             [ref.confusions[j] if ref.confusions else None for j in r]
    if all(c is not None for c in stacks) and len({c.shape for c in stacks}) == 1 \
            and (not arm.image_names or not ref.image_names or arm.image_names == ref.image_names):
        var_eval, var_eval_class = _boot_variance(np.stack(stacks[:n]), np.stack(stacks[n:]), draws=draws, seed=seed)
    main = Contrast(float(d.mean()), n, var_train=var_train, df_train=n - 1, var_eval=var_eval)
    out = {}
    for c, i in zip(classes, per_class):
        delta = _nanmean(d_class[:, i], axis=0)
        finite = lambda v: None if v is None or not math.isfinite(v) else float(v)  # noqa: E731
        out[c] = None if not math.isfinite(delta) else Contrast(
            float(delta), int(np.isfinite(d_class[:, i]).sum()),
            var_train=None if var_class is None else finite(var_class[i]), df_train=max(1, n - 1),
            var_eval=None if var_eval_class is None else finite(var_eval_class[i]))
    return main, out


def image_contrast(arm: np.ndarray, ref: np.ndarray, *, noise: ArmResults | None = None,
                   classes: Sequence[str] = (), draws: int = BOOTSTRAP,
                   seed: int = 0) -> tuple[Contrast, dict[str, Contrast | None]]:
    """Δ val mIoU of one set of predictions against another of the same images (each given as its per-image
    confusion matrices, (images, C, C), in the same order), and the same for the IoU of each class in `classes`.

    For what changes no training, such as post-processing one model's output (05's stages): the evaluation
    noise comes from a paired bootstrap over the images. The training noise cannot be measured by pairing
    here, so `noise`, the seeds of the runs the predictions start from, stands in for it: the variance of a
    difference of two means over those seeds (`Contrast.from_spread`), per class from each class's spread.
    Without `noise` (or with one seed) the verdict is "one seed".
    """
    arm, ref = np.asarray(arm), np.asarray(ref)
    if arm.shape != ref.shape or arm.ndim != 3 or arm.shape[1] != arm.shape[2] or not len(arm):
        raise ValueError(f"two stacks of per-image confusion matrices of the same images are needed, got shapes "
                         f"{arm.shape} and {ref.shape}")
    (m_a, iou_a), (m_r, iou_r) = miou(arm.sum(0)), miou(ref.sum(0))
    var_eval, var_eval_class = _boot_variance(arm[None], ref[None], draws=draws, seed=seed)
    seeds = 1 if noise is None else len(noise.scores)
    trained = noise is not None and seeds > 1

    def judged(d: float, spread: float, var_images: float) -> Contrast:
        var_train = 2 * spread ** 2 / seeds if trained and math.isfinite(spread) else None
        return Contrast(d, seeds, var_train=var_train, df_train=2 * (seeds - 1) if trained else math.inf,
                        var_eval=var_images if math.isfinite(var_images) else None)

    out = {}
    if classes:
        with warnings.catch_warnings():  # a class empty on all but one seed has no spread
            warnings.simplefilter("ignore", RuntimeWarning)
            spreads = np.full(len(iou_a), np.nan) if not trained else np.nanstd(np.stack(
                [np.asarray(s.per_class_iou, np.float64) for s in noise.scores]), axis=0, ddof=1)
        for c in classes:
            i = CLASS_NAMES.index(c)
            d = float(iou_a[i] - iou_r[i])
            out[c] = judged(d, float(spreads[i]), float(var_eval_class[i])) if math.isfinite(d) else None
    return judged(m_a - m_r, noise.std if trained else math.nan, var_eval), out


def split_gap(first: np.ndarray, second: np.ndarray, *, draws: int = BOOTSTRAP, seed: int = 0) -> Contrast:
    """Δ mIoU of one model's predictions on two different sets of images (e.g. its training images against the
    validation images: a gain is a model that scores its training images higher beyond the choice of images),
    each given as per-image confusion matrices (images, C, C). The sets are independent: each is resampled on
    its own and the two variances add. One model, so no training noise (`Contrast.trained` False).
    """
    first, second = np.asarray(first), np.asarray(second)
    for name, stack in (("first", first), ("second", second)):
        if stack.ndim != 3 or stack.shape[1] != stack.shape[2] or not len(stack):
            raise ValueError(f"split_gap needs stacks of per-image confusion matrices, {name} has shape {stack.shape}")
    if first.shape[1] != second.shape[1]:
        raise ValueError(f"split_gap: {first.shape[1]} classes against {second.shape[1]}")
    rng = np.random.default_rng(seed)
    variance = 0.0
    for stack in (first, second):
        resampled = _resampled(stack[None], _draws(len(stack), draws, rng))[:, 0]  # (draws, C, C)
        variance += float(_nanmean(class_iou(resampled), axis=-1).var(ddof=1))
    return Contrast(miou(first.sum(0))[0] - miou(second.sum(0))[0], 1, var_eval=variance, trained=False)


def _as_results(value) -> ArmResults:
    if isinstance(value, ArmResults):
        return value
    if isinstance(value, Scores):
        return ArmResults([value])
    return ArmResults(list(value))


def compare_table(variants: Mapping[str, ArmResults | Sequence[Scores]], *, reference: str | None = None,
                  classes: Sequence[str] | None = None, decimals: int = 3) -> pd.DataFrame:
    """One row per variant: seeds, mean ± spread of val mIoU, Δ against `reference` with its 95% interval,
    the MDE, the noise the interval holds and the verdict (`contrast`); the small-object recall where
    the runs recorded it.

    `reference` (default: the first variant) is the arm the others are judged against, usually
    "none" (the same steps from the same trunk without the technique). `classes` adds, per class name,
    the mean IoU and its Δ with interval. Rows keep the mapping's order.
    """
    results = {name: _as_results(v) for name, v in variants.items()}
    if not results:
        raise ValueError("nothing to compare: no variants")
    reference = next(iter(results)) if reference is None else reference
    if reference not in results:
        raise ValueError(f"reference {reference!r} is not among the variants: {', '.join(results)}")
    ref = results[reference]
    counted = any(r.small_object_recall is not None for r in results.values())
    rows = []
    for name, r in results.items():
        row = {"variant": name, "seeds": len(r.scores), "val mIoU": r.mean, "± spread": r.std,
               "mean ± spread": f"{r.mean:.{decimals}f} ± {r.std:.{decimals}f}"}
        if counted:
            row["small-object recall"] = np.nan if r.small_object_recall is None else r.small_object_recall
        by_class = {}
        if name == reference:
            row.update({"Δ vs " + reference: 0.0, "95% CI": "", "MDE": np.nan, "noise": "", "verdict": "reference"})
        else:
            main, by_class = contrast(r, ref, classes=classes or ())
            lo, hi = main.ci
            measured = main.noise != "none"  # one seed each and no per-image record: no interval to give
            row.update({"Δ vs " + reference: main.delta,
                        "95% CI": f"[{lo:+.{decimals}f}, {hi:+.{decimals}f}]" if measured else "",
                        "MDE": main.mde if measured else np.nan, "noise": main.noise, "verdict": main.verdict})
        for c in classes or ():
            row[f"IoU {c}"] = float(r.per_class_iou[CLASS_NAMES.index(c)])
            k = by_class.get(c)
            row[f"Δ {c}"] = np.nan if k is None else k.delta
            shown = k is not None and k.noise != "none"
            row[f"Δ {c} 95% CI"] = "[{:+.{d}f}, {:+.{d}f}]".format(*k.ci, d=decimals) if shown else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def variant_record(results: ArmResults, reference: ArmResults | None = None, *,
                   classes: Sequence[str] = ()) -> dict:
    """What a notebook saves per variant: {val_mIoU_mean, val_mIoU_std, val_mIoU (per seed), seeds,
    per_class_iou (class name -> mean IoU, None where empty), run_names, small_object_recall (None where
    not recorded)}; against a `reference`, also
    delta, delta_ci, mde, noise and verdict (`Contrast.as_dict`) and per_class_delta (class -> the same
    for each of `classes`, None where the class is empty)."""
    record = {"val_mIoU_mean": results.mean, "val_mIoU_std": results.std,
              "val_mIoU": [float(v) for v in results.mious], "seeds": list(results.seeds),
              "per_class_iou": {n: (None if not math.isfinite(v) else float(v))
                                for n, v in zip(CLASS_NAMES, results.per_class_iou)},
              "run_names": list(results.run_names), "small_object_recall": results.small_object_recall}
    if reference is not None and reference is not results:
        main, by_class = contrast(results, reference, classes=classes)
        record.update(main.as_dict())
        record["per_class_delta"] = {c: None if k is None else k.as_dict() for c, k in by_class.items()}
    return record


def trunk_comparison_record(results: Mapping[str, ArmResults], *, pasting: str | None,
                            classes: Sequence[str] = ()) -> dict:
    """04's record of a trunk trained with and without pasting (`results` keyed "with pasting" and "without
    pasting", one run each): {pasting (the arm whose recipe it used), with_pasting and without_pasting (each:
    run, val_mIoU, per_class_iou, small_object_recall), and the first's contrast against the second as in
    `variant_record` (delta, delta_ci, mde, noise, verdict, per_class_delta)}. Empty `results`: {pasting: None,
    not_run: why}."""
    if not results:
        return {"pasting": None, "not_run": "trunk_comparison is None in this profile (a second trunk)"}
    without = results["without pasting"]
    pasted = variant_record(results["with pasting"], without, classes=classes)

    def side(record: dict) -> dict:
        return {"run": record["run_names"][0], "val_mIoU": record["val_mIoU_mean"],
                "per_class_iou": record["per_class_iou"], "small_object_recall": record["small_object_recall"]}

    return {"pasting": pasting, "with_pasting": side(pasted), "without_pasting": side(variant_record(without)),
            **{k: pasted[k] for k in ("delta", "delta_ci", "mde", "noise", "verdict", "per_class_delta")}}


def run_scores(run) -> Scores:
    """The scores of a finished run's final evaluation (`Run.final_metrics`: the val split at its working
    resolution, of the weights it hands on)."""
    r = run.final_metrics()
    if r is None:
        raise ValueError(f"run {run.name} has no evaluation at its last step {run.config.steps}; "
                         "was it trained with a val_split?")
    per_class = np.array([np.nan if r["per_class_iou"].get(c) is None else r["per_class_iou"][c]
                          for c in CLASS_NAMES], dtype=np.float64)
    return Scores(float(r["mIoU"]), per_class, float(r["pixel_accuracy"]), float(r["mean_class_accuracy"]),
                  float(r["fwIoU"]))


def seed_results(runs) -> ArmResults:
    """`ArmResults` of runs that differ only in their seed (scores from each run's final evaluation)."""
    runs = list(runs)
    recorded = [r.eval_images() for r in runs]
    names = {tuple(e.file_names) for e in recorded if e is not None}
    return ArmResults([run_scores(r) for r in runs], seeds=[r.config.seed for r in runs],
                       run_names=[r.name for r in runs],
                       confusions=[None if e is None or e.step != r.config.steps else e.confusions
                                   for e, r in zip(recorded, runs)],
                       objects=[None if e is None or e.step != r.config.steps else e.objects
                                for e, r in zip(recorded, runs)],
                       image_names=list(next(iter(names))) if len(names) == 1 else [])
