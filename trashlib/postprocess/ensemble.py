"""Ensembles of stored probabilities: soft (weighted mean) and hard (majority) votes, streamed per image.

Inputs are `ProbIndex` objects (a run's predictions, or another ensemble), aligned by file name; they
must cover the same images. `ensemble` writes a new index under
data/interim/probs/ensemble-<name>/<data>_<split>-<vote>-<hash>/, whose settings record the inputs'
folders and settings and the weights, so an identical ensemble is found and reused. Only one image's
maps are in memory at a time: peak memory does not grow with the number of images (the peers' soft
vote preallocated a dataset-sized array, about 4.7 GB in float16 for 819 images at 512).
`fit_weights` searches soft-vote weights that maximise mIoU on a labelled split, also streamed;
`disagreement` measures how different the members are.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trashlib.classes import NUM_CLASSES
from trashlib.data import TrashDataset
from trashlib.io import check_writable
from trashlib.metrics import confusion_matrix, miou
from trashlib.predict.probs import ProbIndex, ProbWriter, store_dir, stored_index
from trashlib.progress import shown

VOTES = ("soft", "hard")
HARD_OUTPUTS = ("onehot", "share")


# -- alignment --------------------------------------------------------------------------------------
def aligned_items(indices) -> list[dict]:
    """The first index's items (split order), after checking that every index covers the same images
    with maps of the same shapes (as their index.json records them; loading checks each map)."""
    if not indices:
        raise ValueError("an ensemble needs at least one probability index")
    first, names = indices[0], set(indices[0].file_names)
    for other in indices[1:]:
        theirs = set(other.file_names)
        if theirs != names:
            missing, extra = sorted(names - theirs), sorted(theirs - names)
            example = (f"{missing[0]!r} is in {first.path} but not in {other.path}" if missing
                       else f"{extra[0]!r} is in {other.path} but not in {first.path}")
            raise ValueError(f"the probability indices cover different images: {example} "
                             f"({len(missing)} missing, {len(extra)} extra)")
        where = {name: i for i, name in enumerate(other.file_names)}
        for j, it in enumerate(first.items):
            k = where[it["file_name"]]
            if other.items[k]["shape"] != it["shape"]:
                raise ValueError(f"{it['file_name']}: maps of shape {tuple(other.items[k]['shape'])} in "
                                 f"{other.map_path(k)}, {tuple(it['shape'])} in {first.map_path(j)}")
    return [{k: it[k] for k in ("image_id", "file_name", "shape")} for it in first.items]


def positions(indices, items) -> list[list[int]]:
    """positions[m][j]: where image j of `items` sits in index m."""
    names = [it["file_name"] for it in items]
    out = []
    for index in indices:
        where = {name: i for i, name in enumerate(index.file_names)}
        out.append([where[n] for n in names])
    return out


def disagreement(indices, names=None, *, progress: bool | None = None) -> pd.DataFrame:
    """How different the members are: for each pair, the share of pixels of their common images where
    their labels (argmax) differ; (members x members), 0 on the diagonal. Members that never disagree add
    nothing to a vote; the winning team's members were different architectures."""
    items = aligned_items(indices)
    where = positions(indices, items)
    names = [str(index.path.name) for index in indices] if names is None else list(names)
    if len(names) != len(indices):
        raise ValueError(f"{len(indices)} members but {len(names)} names")
    n = len(indices)
    differ, pixels = np.zeros((n, n), np.int64), 0
    for j in tqdm(range(len(items)), desc="disagreement", unit="img", disable=not shown(progress)):
        labels = [index.argmax(where[m][j]) for m, index in enumerate(indices)]
        pixels += labels[0].size
        for a in range(n):
            for b in range(a + 1, n):
                differ[a, b] = differ[b, a] = differ[a, b] + int((labels[a] != labels[b]).sum())
    return pd.DataFrame(differ / max(pixels, 1), index=names, columns=names)


# -- votes on arrays --------------------------------------------------------------------------------
def normalize_weights(weights, n: int) -> np.ndarray:
    """Weights as float64 summing to one (equal when None); non-negative, finite, not all zero."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.size != n:
        raise ValueError(f"{w.size} weights for {n} inputs; give one weight per input")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
    return w / w.sum()


def soft_vote(probs, weights=None) -> np.ndarray:
    """Weighted mean of n probability maps (weights normalised to sum to one; equal by default).

    `probs` may be a generator: maps are added one at a time, never stacked.

    Shape:
        probs: n maps (C, H, W) float, each summing to 1 over C; weights: (n,)
        returns: (C, H, W) float32 summing to 1 over C
    """
    if weights is None:
        probs = list(probs)  # equal weights need the count
    w = normalize_weights(weights, len(probs) if weights is None else np.size(weights))
    total, count = None, 0
    for wi, p in zip(w, probs):
        term = np.float32(wi) * np.asarray(p, dtype=np.float32)
        total = term if total is None else total.__iadd__(term)
        count += 1
    if count != len(w):
        raise ValueError(f"{len(w)} weights for {count} maps")
    return total / np.maximum(total.sum(0, keepdims=True), 1e-12)  # against float drift


def vote_counts(preds, *, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Per-pixel number of label maps voting for each class.

    Shape:
        preds: n label maps (H, W) int; returns: (num_classes, H, W) int32
    """
    shape = preds[0].shape
    counts = np.zeros((num_classes, shape[0] * shape[1]), np.int32)
    pixels = np.arange(counts.shape[1])
    for p in preds:  # one vote per pixel per map: (label, pixel) pairs are unique, so += is exact
        counts[p.ravel(), pixels] += 1
    return counts.reshape(num_classes, *shape)


def hard_vote(preds, *, num_classes: int = NUM_CLASSES, best: int = 0) -> np.ndarray:
    """Per-pixel majority of n label maps; ties go to the best model.

    A tie is broken by the first model, in the order `best` then the others as given, whose own
    label is among the tied classes (so with two tied classes the best model's vote decides when it
    voted for one of them).

    Shape:
        preds: n label maps (H, W) int; returns: (H, W) uint8
    """
    counts = vote_counts(preds, num_classes=num_classes).reshape(num_classes, -1)
    top, pixels = counts.max(0), np.arange(counts.shape[1])
    order = [best] + [m for m in range(len(preds)) if m != best]
    winner = np.zeros(counts.shape[1], np.uint8)
    for m in reversed(order):  # higher priority last, so it overwrites
        p = preds[m].ravel()
        hit = counts[p, pixels] == top
        winner[hit] = p[hit]
    return winner.reshape(preds[0].shape)


def vote_probs(preds, winner, *, num_classes: int = NUM_CLASSES, output: str = "onehot") -> np.ndarray:
    """A hard vote as "probabilities": one-hot of the winner, or the vote share.

    "share" is (counts + 0.5 * onehot(winner)) / (n + 0.5): each class's share of the n votes, with
    half a vote added to the winner so that argmax returns the tie-broken winner.

    Shape:
        preds: n label maps (H, W); winner: (H, W); returns: (num_classes, H, W) float32 summing to 1
    """
    if output not in HARD_OUTPUTS:
        raise ValueError(f"unknown hard-vote output {output!r}; valid: {', '.join(HARD_OUTPUTS)}")
    onehot = (np.arange(num_classes, dtype=np.uint8)[:, None, None] == winner[None]).astype(np.float32)
    if output == "onehot":
        return onehot
    counts = vote_counts(preds, num_classes=num_classes).astype(np.float32)
    return (counts + np.float32(0.5) * onehot) / np.float32(len(preds) + 0.5)


# -- the streamed index ---------------------------------------------------------------------------
def _describe(index) -> dict:
    return {"folder": str(Path(index.path).resolve()), "settings": index.settings}


def _folder(indices, settings: dict, name: str | None, out_dir) -> Path:
    first = indices[0].settings
    data_root, split = first.get("data_root") or "data", first.get("split") or "split"
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    if name is None:
        name = "__".join(Path(ix.path).parent.name for ix in indices)  # store_dir keeps only [A-Za-z0-9._-]
        name = name if len(name) <= 60 else f"{name[:51]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    folder = store_dir(f"ensemble-{name}", data_root, split, f"{settings['vote']}-{digest}")
    return folder if out_dir is None else Path(out_dir) / folder.name


def ensemble(indices, *, weights=None, vote: str = "soft", best: int = 0, hard_output: str = "onehot",
             name: str | None = None, out_dir=None, force: bool = False, progress: bool | None = None) -> ProbIndex:
    """Write the soft or hard vote of probability indices as a new index, one image at a time.

    Soft: `soft_vote` with `weights` (equal by default). Hard: `hard_vote` with ties to input `best`,
    stored as `vote_probs(output=hard_output)`. An identical ensemble already stored is returned.
    """
    if vote not in VOTES:
        raise ValueError(f"unknown vote {vote!r}; valid: {', '.join(VOTES)}")
    if hard_output not in HARD_OUTPUTS:
        raise ValueError(f"unknown hard-vote output {hard_output!r}; valid: {', '.join(HARD_OUTPUTS)}")
    indices = list(indices)
    items = aligned_items(indices)
    if not 0 <= best < len(indices):
        raise ValueError(f"best={best} is not one of the {len(indices)} inputs (0..{len(indices) - 1})")
    w = normalize_weights(weights, len(indices)) if vote == "soft" else None
    first = indices[0].settings
    settings = {"kind": "ensemble", "vote": vote, "split": first.get("split"), "data_root": first.get("data_root"),
                "inputs": [_describe(ix) for ix in indices], "weights": None if w is None else w.round(6).tolist(),
                "best": best if vote == "hard" else None, "hard_output": hard_output if vote == "hard" else None}
    folder = _folder(indices, settings, name, out_dir)
    done = None if force else stored_index(folder, settings)
    if done is not None:
        return done
    check_writable(folder, what=f"the ensemble to {folder}")
    where = positions(indices, items)
    writer = ProbWriter(folder, items, settings, force=force)
    for j in tqdm(writer.todo, disable=not shown(progress), desc=f"{vote} vote"):
        if vote == "soft":
            writer.write(j, soft_vote((ix.load(where[m][j]) for m, ix in enumerate(indices)), w))
        else:
            preds = [ix.argmax(where[m][j]) for m, ix in enumerate(indices)]
            num_classes = items[j]["shape"][0]
            winner = hard_vote(preds, num_classes=num_classes, best=best)
            writer.write(j, vote_probs(preds, winner, num_classes=num_classes, output=hard_output))
    return writer.close()


# -- fitting soft-vote weights ----------------------------------------------------------------------
@dataclass
class WeightSearch:
    """The fitted weights, their mIoU on the fitting split and every candidate scored (`table`)."""

    weights: tuple[float, ...]
    miou: float
    table: pd.DataFrame  # round, step, weights, mIoU


def _candidates(w: np.ndarray, step: float) -> list[np.ndarray]:
    """Moves of `step` weight from one input to another, staying on the simplex."""
    out = []
    for i in range(len(w)):
        for j in range(len(w)):
            if i != j and w[i] >= step - 1e-9:
                c = w.copy()
                c[i] -= step
                c[j] += step
                out.append(np.clip(c, 0, 1))
    return out


def _score(indices, items, where, dataset, candidates, *, stride: int, progress: bool, desc: str) -> list[float]:
    """mIoU of each candidate weight vector, in one streamed pass over the images."""
    by_name = {n: i for i, n in enumerate(dataset.file_names)}
    cms = np.zeros((len(candidates), NUM_CLASSES, NUM_CLASSES), np.int64)
    for j in tqdm(range(len(items)), disable=not shown(progress), desc=desc):
        name = items[j]["file_name"]
        maps = [ix.load(where[m][j])[:, ::stride, ::stride] for m, ix in enumerate(indices)]
        mask = dataset.load_mask(by_name[name])[::stride, ::stride]
        for c, w in enumerate(candidates):
            cms[c] += confusion_matrix(soft_vote(maps, w).argmax(0), mask)
    return [miou(cm)[0] for cm in cms]


def fit_weights(indices, data_root=None, split: str = "val", *, step: float = 0.2, min_step: float = 0.05,
                rounds: int = 12, stride: int = 2, subset: bool = False, progress: bool | None = None) -> WeightSearch:
    """Soft-vote weights maximising mIoU on a labelled split, by coordinate search on the simplex.

    From equal weights, each round scores every move of `step` weight from one input to another (one
    streamed pass over the split); the best strict improvement is taken, otherwise `step` halves.
    Stops after `rounds` passes or when `step` falls below `min_step`. Pixels are scored on every
    `stride`-th row and column (2: the pixels a 512 -> 256 submission keeps). Indices that miss images of
    the split are refused unless `subset` asks for a part of it on purpose.
    """
    indices = list(indices)
    items = aligned_items(indices)
    dataset = TrashDataset(data_root, split=split)
    if not dataset.has_masks:
        raise ValueError(f"{dataset.path}: split {split!r} has no annotations to fit weights on")
    indices[0].check_split(dataset, subset=subset)  # the others hold the same images and shapes
    where = positions(indices, items)
    w = normalize_weights(None, len(indices))
    best = _score(indices, items, where, dataset, [w], stride=stride, progress=progress, desc="weights: equal")[0]
    rows = [{"round": 0, "step": 0.0, "weights": tuple(w.round(4)), "mIoU": best}]
    for r in range(1, rounds + 1):
        if len(indices) == 1 or step < min_step - 1e-12:
            break
        cands = _candidates(w, step)
        if not cands:  # every weight is below the step
            step /= 2
            continue
        scores = _score(indices, items, where, dataset, cands, stride=stride, progress=progress,
                        desc=f"weights: round {r}, step {step:g}")
        rows += [{"round": r, "step": step, "weights": tuple(c.round(4)), "mIoU": s} for c, s in zip(cands, scores)]
        k = int(np.argmax(scores))
        if scores[k] > best:
            w, best = cands[k], scores[k]
        else:
            step /= 2
    return WeightSearch(tuple(float(v) for v in w), best, pd.DataFrame(rows))
