"""The seed's published experiment table (the winning team's), regenerated with this run's numbers beside it.

The seed's numbers are public-leaderboard mIoU of the real competition (3272 images, Swin-L, DiNAT-L
and SeMask models fine-tuned at 512 px from ImageNet/ADE20K checkpoints). This run's are val mIoU of
the models and data it trained, so the levels are not comparable; the sign and size of each step are.
Every number of "this run" is read from the notebooks' metrics; a notebook that has not run leaves
its rows empty, and one whose metrics file is unreadable marks them "unreadable".
"""
from __future__ import annotations

import pandas as pd

from trashlib.compare import Contrast, against_claim, recorded
from trashlib.reporting.waterfall import NOTEBOOKS, _num, backbone_rows, baseline_noise

# (experiment, seed's model, before, after, note): the seed's report and the issues quoting it
SEED_RESULTS = (
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

# The seed's model table (public-leaderboard mIoU, their report); SegViT was tried without a number given
SEED_MODELS = {
    "UperNet Swin-B": 0.60, "UperNet Swin-L": 0.70, "MaskDINO Swin-L": 0.74, "Mask2Former Swin-B": 0.7210,
    "Mask2Former Swin-L": 0.7718, "SeMask-FaPN Swin-L": 0.7724, "Mask2Former DiNAT-L": 0.7763, "SeMask Swin-L": 0.783,
}

# The published cost of the seed's large models, as their report quotes it: (GFLOPs, millions of parameters).
# Papers count a multiply-add as one FLOP, half of trashlib.models.cost's count.
SEED_COSTS = {"Mask2Former Swin-L": (630, 215), "Mask2Former DiNAT-L": (510, 220), "SeMask Swin-L": (643, 223)}

# trashlib's model names -> the seed's large model of the same architecture in SEED_MODELS
SEED_MODEL_OF = {"mask2former-swin": "Mask2Former Swin-L", "mask2former-dinat": "Mask2Former DiNAT-L",
                 "semask-swin": "SeMask Swin-L", "upernet-swin": "UperNet Swin-L",
                 "semask-fapn": "SeMask-FaPN Swin-L", "maskdino": "MaskDINO Swin-L"}


def seed_score(model: str) -> float | None:
    """The seed's public-LB mIoU of the large version of a trashlib model, None where they give none."""
    return SEED_MODELS.get(SEED_MODEL_OF.get(model, ""))


def seed_cost(model: str) -> tuple[float, float] | tuple[None, None]:
    """The published (GFLOPs counting a multiply-add once, millions of parameters) of the large version of a
    trashlib model as the seed's report quotes them, (None, None) where it quotes none."""
    return SEED_COSTS.get(SEED_MODEL_OF.get(model, ""), (None, None))


def seed_delta(experiment: str, model: str | None = None) -> float:
    """The seed's Δ (after - before) of one experiment of `SEED_RESULTS` (its first row, or `model`'s)."""
    for name, who, before, after, _ in SEED_RESULTS:
        if name == experiment and before is not None and (model is None or who == model):
            return after - before
    known = sorted({r[0] for r in SEED_RESULTS if r[2] is not None})
    raise KeyError(f"no seed result with a before and after for {experiment!r}"
                   + (f" ({model})" if model else "") + f"; known: {', '.join(known)}")


# Which arm of 04 and 06 stands for each of the seed's experiments, read from what the notebooks recorded of
# each arm (04's copy-paste `fields`, 06's `pseudo_sets` recipes), never from the words of its name
OFFLINE = ("04", lambda f, _: f.get("copy_paste") == "offline")
CLASS_TARGETED = ("04", lambda f, _: f.get("copy_paste") == "online" and f.get("cp_donors") == "classes")
HARD = ("06", lambda r, rnd: r.get("kind") == "hard" and rnd == 1)
GLOBAL = ("06", lambda r, rnd: r.get("kind") == "global" and rnd == 1)
PER_CLASS = ("06", lambda r, rnd: r.get("kind") == "per_class" and rnd == 1)
ROUND_TWO = ("06", lambda r, rnd: rnd == 2)


def _pick(m: dict, which) -> str | None:
    """The first arm of a 04 or 06 metrics record that `which` (one of the tuples above) describes."""
    notebook, test = which
    if notebook == "04":
        described = {name: (f if isinstance(f, dict) else {}, None) for name, f in (m.get("fields") or {}).items()}
    else:
        described = {name: ((s or {}).get("recipe") or {}, (s or {}).get("round", 1))
                     for name, s in (m.get("pseudo_sets") or {}).items() if isinstance(s, dict)}
    return next((name for name, (record, rnd) in described.items() if test(record, rnd)), None)


def _variant_step(m: dict | None, which) -> dict:
    """{before, after, spread, seeds, verdict, what} of the arm `which` describes against its reference arm, or {}
    if absent."""
    if not m or not isinstance(m.get("variants"), dict):
        return {}
    variants, ref = m["variants"], m.get("reference", "none")
    name = _pick(m, which)
    name = None if name == ref else name
    if name is None or ref not in variants:
        return {}
    a, b = variants[ref], variants[name]
    before, after = _num(a.get("val_mIoU_mean")), _num(b.get("val_mIoU_mean"))
    if before is None or after is None:
        return {}
    spread = max(_num(a.get("val_mIoU_std")) or 0.0, _num(b.get("val_mIoU_std")) or 0.0)
    seeds = min(len(a.get("seeds") or []) or 1, len(b.get("seeds") or []) or 1)
    pasted = m.get("trunk_copy_paste")  # 04: a trunk that already pasted makes "none" a stop, not a never
    what = f"{ref} -> {name}" + (f" (from a trunk trained with {pasted})" if pasted and pasted != "none" else "")
    return {"before": before, "after": after, "spread": spread, "seeds": seeds, "what": what,
            **_judged(b, after - before, spread, seeds)}


def _judged(record: dict | None, delta: float, spread: float, seeds: int) -> dict:
    """{verdict, ci, mde} of a step: the notebook's own contrast where it recorded one (seeds paired, images
    resampled: `compare.Contrast.as_dict`), else the rule on the seed spread alone."""
    read = recorded(record)
    if read is not None and read[0] != "one seed":
        return dict(zip(("verdict", "ci", "mde"), read))
    judged = Contrast.from_spread(delta, spread, seeds=seeds)
    measured = seeds > 1
    return {"verdict": judged.verdict, "ci": judged.ci if measured else None, "mde": judged.mde if measured else None}


def _stage_step(m: dict | None, word: str, noise) -> dict:
    """05's first stage whose name contains `word`, against 05's first stage (the best single model);
    judged against 02's seed spread, as the waterfall judges 05's steps."""
    stages = (m or {}).get("stages") or []
    hit = next((s for s in stages if word in str(s.get("name", "")).lower()), None)
    if not stages or hit is None or _num(hit.get("val_mIoU")) is None:
        return {}
    first = stages[0]
    before, after = _num(first.get("val_mIoU")), _num(hit["val_mIoU"])
    if before is None:
        return {}
    own = ((m or {}).get("against_first") or {}).get(hit.get("name"))  # 05's contrast of the two, if recorded
    judged = {"verdict": ""} if noise is None and not isinstance(own, dict) else \
        _judged(own if isinstance(own, dict) else None, after - before, 0.0 if noise is None else noise[0],
                1 if noise is None else noise[1])
    return {"before": before, "after": after, "spread": None if noise is None else noise[0],
            "seeds": 1 if noise is None else noise[1], "what": f"{first.get('name')} -> {hit.get('name')}", **judged}


def _best_single(metrics: dict) -> dict:
    m3, m2 = metrics.get(NOTEBOOKS[2]) or {}, metrics.get(NOTEBOOKS[1]) or {}
    rows = [r for r in backbone_rows(m3) if r[1] is not None]
    if rows:
        best = max(rows, key=lambda r: r[1])
        return {"after": best[1], "what": best[0], "verdict": ""}
    value = _num(m2.get("val_mIoU_mean", m2.get("val_mIoU")))
    return {"after": value, "what": m2.get("model", "baseline"), "verdict": ""} if value is not None else {}


def seed_table(metrics: dict, *, unreadable: frozenset | set = frozenset()) -> pd.DataFrame:
    """The seed's rows with this run's matching numbers: before, after, Δ (± spread), what, verdict.

    `unreadable`: notebooks whose metrics file could not be read; their rows say so instead of a number.
    """
    m4, m5, m6 = (metrics.get(NOTEBOOKS[i]) for i in (3, 4, 5))
    last = ((m5 or {}).get("stages") or [{}])[-1]
    ensemble_all = {"after": _num(last.get("val_mIoU")), "what": last.get("name", ""), "verdict": ""} \
        if _num(last.get("val_mIoU")) is not None else {}
    ours = [_best_single(metrics), _stage_step(m5, "crf", baseline_noise(metrics)), ensemble_all,
            _variant_step(m6, HARD), None, None, None, _variant_step(m4, OFFLINE), _variant_step(m4, CLASS_TARGETED)]
    # the notebook each row of ours is read from (best single: 03's table, else 02's baseline)
    best_from = NOTEBOOKS[2] if metrics.get(NOTEBOOKS[2]) or NOTEBOOKS[2] in unreadable else NOTEBOOKS[1]
    sources = (best_from, NOTEBOOKS[4], NOTEBOOKS[4], NOTEBOOKS[5], None, None, None, NOTEBOOKS[3], NOTEBOOKS[3])
    rows = []
    for (experiment, model, before, after, note), mine, source in zip(SEED_RESULTS, ours, sources):
        if source in unreadable:
            mine = {"what": f"unreadable (metrics/{source}.json)"}
        if mine is None:  # the seed's other models of the same experiment: one row of ours covers them
            rows.append({"experiment": experiment, "seed model": model, "seed before": before, "seed after": after,
                         "seed Δ": after - before, "seed note": note, "this run": "(as above)"})
            continue
        delta = None if mine.get("before") is None or mine.get("after") is None else mine["after"] - mine["before"]
        ci = mine.get("ci")
        rows.append({"experiment": experiment, "seed model": model, "seed before": before, "seed after": after,
                     "seed Δ": None if before is None else after - before, "seed note": note,
                     "this run": mine.get("what", "" if mine else "not run"), "before": mine.get("before"),
                     "after": mine.get("after"), "Δ": delta, "± spread": mine.get("spread"),
                     "CI low": None if ci is None else ci[0], "CI high": None if ci is None else ci[1],
                     "MDE": mine.get("mde"), "verdict": mine.get("verdict", "")})
    # this run's pseudo-label variants the seed never tried, so the comparison shows them too
    for which in (GLOBAL, PER_CLASS, ROUND_TWO):
        mine = _variant_step(m6, which)
        if mine:
            ci = mine.get("ci")
            rows.append({"experiment": "pseudo labels (this project's variants)", "seed model": "not tried",
                         "this run": mine["what"], "before": mine["before"], "after": mine["after"],
                         "Δ": mine["after"] - mine["before"], "± spread": mine["spread"],
                         "CI low": None if ci is None else ci[0], "CI high": None if ci is None else ci[1],
                         "MDE": mine.get("mde"), "verdict": mine["verdict"]})
    return pd.DataFrame(rows)


def seed_claims(table: pd.DataFrame) -> list[str]:
    """Sentences on whether the seed's steps held here, for rows this run measured: the seed's Δ against this
    run's interval and MDE (`compare.against_claim`), or the sign alone where this run has no interval."""
    lines = []
    for _, r in table.iterrows():
        if pd.isna(r.get("seed Δ")) or pd.isna(r.get("Δ")):
            continue
        head = f"{r['experiment']} ({r['seed model']}), here {r['this run']}: "
        if pd.notna(r.get("CI low")) and pd.notna(r.get("MDE")) and r.get("verdict") in ("gain", "loss", "tie"):
            judged = {"delta": r["Δ"], "delta_ci": [r["CI low"], r["CI high"]], "mde": r["MDE"], "verdict": r["verdict"]}
            lines.append(head + against_claim(judged, r["seed Δ"]) + ".")
            continue
        seed_sign = "gained" if r["seed Δ"] > 0 else "lost" if r["seed Δ"] < 0 else "did not change"
        lines.append(head + f"the seed {seed_sign} {r['seed Δ']:+.3f}; measured {r['Δ']:+.3f}"
                     + (f" ({r['verdict']})." if r["verdict"] else " without an interval."))
    return lines
