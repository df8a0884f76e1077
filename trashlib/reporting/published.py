"""The winning team's published experiment table, regenerated with this run's numbers beside it.

"The winning team" (identifiers: `winners_...`) is the team that won the private leaderboard; "seed" always
means a random seed.

The winning team's numbers are public-leaderboard mIoU of the real competition (3272 images, Swin-L, DiNAT-L
and SeMask models fine-tuned at 512 px from ImageNet/ADE20K checkpoints). This run's are val mIoU of
the models and data it trained, so the levels are not comparable; the sign and size of each step are.
Every number of "this run" is read from the notebooks' metrics; a notebook that has not run leaves
its rows empty, and one whose metrics file is unreadable marks them "unreadable".
"""
from __future__ import annotations

import pandas as pd

from trashlib.reporting.records import NOTEBOOKS, CopyPasteRecord, PseudoRecord, StagesRecord
from trashlib.reporting.waterfall import backbone_rows, baseline_noise
from trashlib.scoring.compare import Contrast, against_claim, recorded

# (experiment, seed's model, before, after, note): the winning team's report and the issues quoting it
WINNERS_RESULTS = (
    ("best single model", "DiNAT-L / SeMask", None, 0.783, ""),
    ("DenseCRF on the ensemble", "DiNAT + SeMask", 0.783, 0.7895, "best single -> CRF on the ensemble"),
    ("Ensemble-ALL (CRF + overwrite)", "all models", None, 0.7989, "public; 0.7831 private"),
    ("pseudo labels (hard, every test pixel)", "SeMask", 0.774, 0.787, ""),
    ("pseudo labels (hard, every test pixel)", "SeMask-FAPN", 0.7724, 0.7842, ""),
    ("pseudo labels (hard, every test pixel)", "DiNAT-L", 0.7763, 0.7838, ""),
    ("pseudo labels (hard, every test pixel)", "Swin-L", 0.7718, 0.75, "the one that lost"),
    ("copy-paste, offline", "-", 0.77, 0.72, ""),
    ("copy-paste, online, class-targeted", "-", 0.77, 0.77, "images with Plastic, Clothing or Paper pack"),
)

# The winning team's model table (public-leaderboard mIoU, their report); SegViT was tried without a number given
WINNERS_MODELS = {
    "UperNet Swin-B": 0.60, "UperNet Swin-L": 0.70, "MaskDINO Swin-L": 0.74, "Mask2Former Swin-B": 0.7210,
    "Mask2Former Swin-L": 0.7718, "SeMask-FaPN Swin-L": 0.7724, "Mask2Former DiNAT-L": 0.7763, "SeMask Swin-L": 0.783,
}

# The published cost of the winning team's large models, as their report quotes it: (GFLOPs, millions of parameters).
# Papers count a multiply-add as one FLOP, half of trashlib.models.cost's count.
WINNERS_COSTS = {"Mask2Former Swin-L": (630, 215), "Mask2Former DiNAT-L": (510, 220), "SeMask Swin-L": (643, 223)}

# trashlib's model names -> the winning team's large model of the same architecture in WINNERS_MODELS
WINNERS_MODEL_OF = {"mask2former-swin": "Mask2Former Swin-L", "mask2former-dinat": "Mask2Former DiNAT-L",
                 "semask-swin": "SeMask Swin-L", "upernet-swin": "UperNet Swin-L",
                 "semask-fapn": "SeMask-FaPN Swin-L", "maskdino": "MaskDINO Swin-L"}


def winners_score(model: str) -> float | None:
    """The winning team's public-LB mIoU of the large version of a trashlib model, None where they give none."""
    return WINNERS_MODELS.get(WINNERS_MODEL_OF.get(model, ""))


def winners_cost(model: str) -> tuple[float, float] | tuple[None, None]:
    """The published (GFLOPs counting a multiply-add once, millions of parameters) of the large version of a
    trashlib model as the winning team's report quotes them, (None, None) where it quotes none."""
    return WINNERS_COSTS.get(WINNERS_MODEL_OF.get(model, ""), (None, None))


def winners_delta(experiment: str, model: str | None = None) -> float:
    """The winning team's Δ (after - before) of one experiment of `WINNERS_RESULTS` (its first row, or `model`'s)."""
    for name, who, before, after, _ in WINNERS_RESULTS:
        if name == experiment and before is not None and (model is None or who == model):
            return after - before
    known = sorted({r[0] for r in WINNERS_RESULTS if r[2] is not None})
    raise KeyError(f"no seed result with a before and after for {experiment!r}"
                   + (f" ({model})" if model else "") + f"; known: {', '.join(known)}")


# Which arm of 04 and 06 stands for each of the winning team's experiments, read from what the notebooks recorded of
# each arm (04's copy-paste `fields`, 06's `pseudo_sets` recipes and rounds), never from the words of its name
OFFLINE = ("04", lambda f, _: f.get("copy_paste") == "offline")
CLASS_TARGETED = ("04", lambda f, _: f.get("copy_paste") == "online" and f.get("cp_donors") == "classes")
HARD = ("06", lambda r, rnd: r.get("kind") == "hard" and rnd == 1)
GLOBAL = ("06", lambda r, rnd: r.get("kind") == "global" and rnd == 1)
PER_CLASS = ("06", lambda r, rnd: r.get("kind") == "per_class" and rnd == 1)
ROUND_TWO = ("06", lambda r, rnd: rnd == 2)


def _pick(m: CopyPasteRecord | PseudoRecord, which) -> str | None:
    """The first arm of 04's or 06's record that `which` (one of the tuples above) describes."""
    notebook, test = which
    if notebook == "04":
        described = {name: (f, None) for name, f in m.fields.items()}
    else:
        described = {name: (s.recipe, s.round) for name, s in m.pseudo_sets.items()}
    return next((name for name, (record, rnd) in described.items() if test(record, rnd)), None)


def _variant_step(m: CopyPasteRecord | PseudoRecord | None, which) -> dict:
    """{before, after, spread, seeds, verdict, what} of the arm `which` describes against its reference arm, or {}
    if absent."""
    if m is None:
        return {}
    variants, ref = m.variants, m.reference
    name = _pick(m, which)
    name = None if name == ref else name
    if name is None or ref not in variants:
        return {}
    a, b = variants[ref], variants[name]
    before, after = a.val_mIoU_mean, b.val_mIoU_mean
    if before is None or after is None:
        return {}
    spread = max(a.val_mIoU_std or 0.0, b.val_mIoU_std or 0.0)
    seeds = min(a.seed_count, b.seed_count)
    # 04: a trunk that already pasted makes "none" a stop, not a never
    pasted = m.trunk_copy_paste if isinstance(m, CopyPasteRecord) else None
    what = f"{ref} -> {name}" + (f" (from a trunk trained with {pasted})" if pasted and pasted != "none" else "")
    return {"before": before, "after": after, "spread": spread, "seeds": seeds, "what": what,
            **_judged(b, after - before, spread, seeds)}


def _judged(record, delta: float, spread: float, seeds: int) -> dict:
    """{verdict, ci, mde} of a step: the notebook's own contrast where it recorded one (seeds paired, images
    resampled: `compare.Contrast.as_dict`), else the rule on the seed spread alone."""
    read = recorded(record)
    if read is not None and read[0] != "one seed":
        return dict(zip(("verdict", "ci", "mde"), read))
    judged = Contrast.from_spread(delta, spread, seeds=seeds)
    measured = seeds > 1
    return {"verdict": judged.verdict, "ci": judged.ci if measured else None, "mde": judged.mde if measured else None}


def _crf_step(m: StagesRecord | None, noise) -> dict:
    """05's first stage whose recipe applies DenseCRF, against 05's first stage (the best single model); judged
    by 05's own contrast of the two where it recorded one, else against 02's seed spread, as the waterfall
    judges 05's steps."""
    stages = m.stages if m is not None else []
    hit = next((s for s in stages if s.recipe.get("crf") is not None), None)
    if hit is None or hit.val_mIoU is None or stages[0].val_mIoU is None:
        return {}
    first = stages[0]
    before, after = first.val_mIoU, hit.val_mIoU
    own = m.against_first.get(hit.name)  # 05's contrast of the two, if recorded
    judged = {"verdict": ""} if noise is None and own is None else \
        _judged(own, after - before, 0.0 if noise is None else noise[0], 1 if noise is None else noise[1])
    return {"before": before, "after": after, "spread": None if noise is None else noise[0],
            "seeds": 1 if noise is None else noise[1], "what": f"{first.name} -> {hit.name}", **judged}


def _best_single(metrics: dict) -> dict:
    m3, m2 = metrics.get(NOTEBOOKS[2]), metrics.get(NOTEBOOKS[1])
    rows = [r for r in backbone_rows(m3) if r[1] is not None] if m3 is not None else []
    if rows:
        best = max(rows, key=lambda r: r[1])
        return {"after": best[1], "what": best[0], "verdict": ""}
    if m2 is None or m2.val_mIoU_mean is None:
        return {}
    return {"after": m2.val_mIoU_mean, "what": m2.model or "baseline", "verdict": ""}


def winners_table(metrics: dict, *, unreadable: frozenset | set = frozenset()) -> pd.DataFrame:
    """The winning team's rows with this run's matching numbers: before, after, Δ (± spread), what, verdict.

    `unreadable`: notebooks whose metrics file could not be read; their rows say so instead of a number.
    """
    m4, m5, m6 = (metrics.get(NOTEBOOKS[i]) for i in (3, 4, 5))
    last = m5.stages[-1] if m5 is not None and m5.stages else None
    ensemble_all = {"after": last.val_mIoU, "what": last.name, "verdict": ""} \
        if last is not None and last.val_mIoU is not None else {}
    ours = [_best_single(metrics), _crf_step(m5, baseline_noise(metrics)), ensemble_all,
            _variant_step(m6, HARD), None, None, None, _variant_step(m4, OFFLINE), _variant_step(m4, CLASS_TARGETED)]
    # the notebook each row of ours is read from (best single: 03's table, else 02's baseline)
    best_from = NOTEBOOKS[2] if metrics.get(NOTEBOOKS[2]) is not None or NOTEBOOKS[2] in unreadable else NOTEBOOKS[1]
    sources = (best_from, NOTEBOOKS[4], NOTEBOOKS[4], NOTEBOOKS[5], None, None, None, NOTEBOOKS[3], NOTEBOOKS[3])
    rows = []
    for (experiment, model, before, after, note), mine, source in zip(WINNERS_RESULTS, ours, sources):
        if source in unreadable:
            mine = {"what": f"unreadable (metrics/{source}.json)"}
        if mine is None:  # the winning team's other models of the same experiment: one row of ours covers them
            rows.append({"experiment": experiment, "winners model": model, "winners before": before,
                         "winners after": after, "winners Δ": after - before, "winners note": note,
                         "this run": "(as above)"})
            continue
        delta = None if mine.get("before") is None or mine.get("after") is None else mine["after"] - mine["before"]
        ci = mine.get("ci")
        rows.append({"experiment": experiment, "winners model": model, "winners before": before,
                     "winners after": after, "winners Δ": None if before is None else after - before, "winners note": note,
                     "this run": mine.get("what", "" if mine else "not run"), "before": mine.get("before"),
                     "after": mine.get("after"), "Δ": delta, "± spread": mine.get("spread"),
                     "CI low": None if ci is None else ci[0], "CI high": None if ci is None else ci[1],
                     "MDE": mine.get("mde"), "verdict": mine.get("verdict", "")})
    # this run's pseudo-label variants the winning team never tried, so the comparison shows them too
    for which in (GLOBAL, PER_CLASS, ROUND_TWO):
        mine = _variant_step(m6, which)
        if mine:
            ci = mine.get("ci")
            rows.append({"experiment": "pseudo labels (this project's variants)", "winners model": "not tried",
                         "this run": mine["what"], "before": mine["before"], "after": mine["after"],
                         "Δ": mine["after"] - mine["before"], "± spread": mine["spread"],
                         "CI low": None if ci is None else ci[0], "CI high": None if ci is None else ci[1],
                         "MDE": mine.get("mde"), "verdict": mine["verdict"]})
    return pd.DataFrame(rows)


def winners_claims(table: pd.DataFrame) -> list[str]:
    """Sentences on whether the winning team's steps held here, for rows this run measured: their Δ against
    this run's interval and MDE (`compare.against_claim`), or the sign alone where this run has no interval."""
    lines = []
    for _, r in table.iterrows():
        if pd.isna(r.get("winners Δ")) or pd.isna(r.get("Δ")):
            continue
        head = f"{r['experiment']} ({r['winners model']}), here {r['this run']}: "
        if pd.notna(r.get("CI low")) and pd.notna(r.get("MDE")) and r.get("verdict") in ("gain", "loss", "tie"):
            judged = {"delta": r["Δ"], "delta_ci": [r["CI low"], r["CI high"]], "mde": r["MDE"],
                      "verdict": r["verdict"]}
            lines.append(head + against_claim(judged, r["winners Δ"]) + ".")
            continue
        winners_sign = "gained" if r["winners Δ"] > 0 else "lost" if r["winners Δ"] < 0 else "did not change"
        lines.append(head + f"the winning team {winners_sign} {r['winners Δ']:+.3f}; measured {r['Δ']:+.3f}"
                     + (f" ({r['verdict']})." if r["verdict"] else " without an interval."))
    return lines
