"""The consensus overwrite: after CRF, give back the objects the non-CRF inputs agree on.

CRF cleans noise but erases small objects; the team's final "Ensemble-ALL" overwrote its CRF output
with the pixels of objects that the models without CRF commonly detected. `overwrite` is that rule on
label maps (see its docstring), `overwrite_index` applies it to every image of a CRF index, and
`sweep_overwrite` scores choices of k and the area threshold on a labelled split.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trashlib.classes import NUM_CLASSES
from trashlib.data import TrashDataset
from trashlib.io import check_writable
from trashlib.metrics import confusion_matrix, miou
from trashlib.postprocess.ensemble import aligned_items, positions
from trashlib.predict.probs import ProbIndex, ProbWriter, derived_dir, stored_index
from trashlib.progress import shown


def _check_overwrite(k: int, n: int, max_area) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"overwrite k must lie in 1..{n} (the number of non-CRF inputs), got {k}")
    if max_area is not None and max_area < 1:
        raise ValueError(f"overwrite max_area must be a positive number of pixels or None, got {max_area}")


def overwrite(crf_pred, input_preds, *, k: int, max_area: int | None = None, background: int = 0) -> np.ndarray:
    """Give back the objects the non-CRF inputs agree on: the CRF's labels, overwritten by consensus regions.

    The rule: for each class c other than `background`, the agreement mask holds the pixels where at
    least `k` of the n input label maps say c. Each 8-connected region R of that mask (cv2
    connected components) with |R| <= `max_area` pixels (any size when None) is restored: all its
    pixels take class c, whatever the CRF said. Where restored regions of different classes overlap
    (possible only when 2k <= n) the smaller region wins, ties to the lower class id. Every other
    pixel keeps the CRF's label; background is never restored. k = n is the winning team's "commonly detected".

    Shape:
        crf_pred: (H, W) int; input_preds: n maps (H, W) int; returns: (H, W) uint8
    """
    _check_overwrite(k, len(input_preds), max_area)
    out = np.asarray(crf_pred).astype(np.uint8)
    claim = np.full(out.shape, np.inf)  # area of the region that set each pixel (smaller wins)
    for c in np.unique(np.concatenate([np.unique(p) for p in input_preds])):
        if c == background:
            continue
        agree = sum((p == c).astype(np.uint16) for p in input_preds) >= k
        if not agree.any():
            continue
        _, labels, stats, _ = cv2.connectedComponentsWithStats(agree.astype(np.uint8), connectivity=8)
        area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
        area[0] = np.inf  # label 0: outside the agreement mask
        if max_area is not None:
            area[area > max_area] = np.inf
        region_area = area[labels]
        take = region_area < claim  # classes ascend, so a tie keeps the lower class id
        out[take], claim[take] = c, region_area[take]
    return out


def overwrite_probs(probs, pred) -> np.ndarray:
    """The CRF probabilities with the overwritten pixels (where `pred` differs from their argmax) one-hot.

    Shape:
        probs: (C, H, W); pred: (H, W); returns: (C, H, W) float32
    """
    probs = np.array(probs, dtype=np.float32)
    ys, xs = np.nonzero(pred != probs.argmax(0))
    probs[:, ys, xs] = 0
    probs[pred[ys, xs], ys, xs] = 1
    return probs


def overwrite_index(crf, inputs, *, k: int, max_area: int | None = None, out_dir=None, force: bool = False,
                    progress: bool | None = None) -> ProbIndex:
    """`overwrite` on every image of a CRF index with the argmaxes of the non-CRF `inputs`, as a new index.

    Stored beside the CRF index as <its folder>_ow-k<k>[-a<max_area>]; the overwritten pixels are one-hot.
    """
    inputs = list(inputs)
    items = aligned_items([crf] + inputs)
    settings = {"kind": "overwrite", "split": crf.settings.get("split"), "data_root": crf.settings.get("data_root"),
                "crf": {"folder": str(Path(crf.path).resolve()), "settings": crf.settings},
                "inputs": [str(Path(ix.path).resolve()) for ix in inputs], "k": k, "max_area": max_area}
    _check_overwrite(k, len(inputs), max_area)
    folder = derived_dir(crf, f"ow-k{k}" + (f"-a{max_area}" if max_area is not None else ""), out_dir)
    done = None if force else stored_index(folder, settings)
    if done is not None:
        return done
    check_writable(folder, what=f"the overwritten CRF output to {folder}")
    where = positions([crf] + inputs, items)
    writer = ProbWriter(folder, items, settings, force=force)
    for j in tqdm(writer.todo, disable=not shown(progress), desc=f"overwrite k={k}"):
        probs = crf.load(where[0][j])
        preds = [ix.argmax(where[m + 1][j]) for m, ix in enumerate(inputs)]
        writer.write(j, overwrite_probs(probs, overwrite(probs.argmax(0), preds, k=k, max_area=max_area)))
    return writer.close()


def sweep_overwrite(crf, inputs, data_root=None, split: str = "val", *, ks=None, max_areas=(None,),
                    subset: bool = False, progress: bool | None = None) -> pd.DataFrame:
    """mIoU on a labelled split of the CRF index ("k" 0) and of `overwrite` for every k x max_area, one pass.

    Indices that miss images of the split are refused unless `subset` asks for a part of it on purpose.
    """
    inputs = list(inputs)
    items = aligned_items([crf] + inputs)
    ks = list(ks) if ks is not None else list(range(1, len(inputs) + 1))
    combos = [(k, a) for k in ks for a in max_areas]
    dataset = TrashDataset(data_root, split=split)
    if not dataset.has_masks:
        raise ValueError(f"{dataset.path}: split {split!r} has no annotations to sweep on")
    crf.check_split(dataset, subset=subset)  # the inputs hold the same images and shapes (aligned_items)
    by_name = {n: i for i, n in enumerate(dataset.file_names)}
    where = positions([crf] + inputs, items)
    cms = np.zeros((len(combos) + 1, NUM_CLASSES, NUM_CLASSES), np.int64)
    for j in tqdm(range(len(items)), disable=not shown(progress), desc="overwrite sweep"):
        mask = dataset.load_mask(by_name[items[j]["file_name"]])
        crf_pred = crf.argmax(where[0][j])
        preds = [ix.argmax(where[m + 1][j]) for m, ix in enumerate(inputs)]
        cms[0] += confusion_matrix(crf_pred, mask)
        for s, (k, a) in enumerate(combos, start=1):
            cms[s] += confusion_matrix(overwrite(crf_pred, preds, k=k, max_area=a), mask)
    rows = [{"k": 0, "max_area": None, "val_mIoU": miou(cms[0])[0]}]
    rows += [{"k": k, "max_area": a, "val_mIoU": miou(cm)[0]} for (k, a), cm in zip(combos, cms[1:])]
    return pd.DataFrame(rows)
