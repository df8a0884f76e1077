"""Mislabel candidates: annotations whose appearance says another class than their label.

Each annotation is described by an appearance vector (FEATURE_NAMES: Lab colour, hue, highlights,
gradient and orientation texture from the pixels it shows; size, visibility and rotation-invariant
shape from its polygon). Labels are scored by leave-one-out k-nearest neighbours in a Fisher (LDA)
projection of the standardised features, so every annotation is judged by the others only:
score = 1 - P(given label), the estimated probability that the label is wrong. numpy/scipy/cv2 only.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.linalg import eigh

from trashlib.classes import CLASS_NAMES, NUM_CLASSES
from trashlib.io import read_json

FEATURE_NAMES = (
    "L_mean", "a_mean", "b_mean", "L_std", "a_std", "b_std", "L_p10", "L_p90",
    "hue_cos", "hue_sin", *(f"hue_bin{k}" for k in range(6)), "grey_share",
    "sat_mean", "sat_std", "val_mean", "highlight_share", "dark_share",
    "grad_mean", "grad_std", "coarse_grad", "edge_share", "coherence", "local_std", "laplace_mean",
    "log_area", "visible_share", "bag_cover",
    "log_elongation", "rectangularity", "solidity", "compactness", "log_vertices",
)


def image_feature_maps(image: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel maps region_features reads: Lab, HSV, gradients, orientation coherence, contrast.

    Shape:
        image: (H, W, 3) uint8 RGB; every map is (H, W) or (H, W, C) float32.
    """
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {None if image is None else image.shape}")
    rgb = image.astype(np.float32) / 255
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)                      # L 0..100, a/b about -128..127
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)                      # h degrees, s/v 0..1
    L = lab[..., 0]
    gx, gy = cv2.Sobel(L, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(L, cv2.CV_32F, 0, 1, ksize=3)
    blurred = cv2.GaussianBlur(L, (0, 0), 2.5)
    coarse = cv2.magnitude(cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3))
    # structure tensor: coherent (text lines, stripes, folds) vs isotropic (foam, fabric) texture
    jxx, jyy, jxy = (cv2.GaussianBlur(v, (0, 0), 3.0) for v in (gx * gx, gy * gy, gx * gy))
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-3)
    mean = cv2.blur(L, (7, 7))
    local_std = np.sqrt(np.maximum(cv2.blur(L * L, (7, 7)) - mean * mean, 0))
    lap = np.abs(cv2.Laplacian(cv2.GaussianBlur(L, (0, 0), 1.0), cv2.CV_32F))
    hue = np.deg2rad(hsv[..., 0])
    return {"lab": lab, "hsv": hsv, "hue_xy": np.stack([np.cos(hue), np.sin(hue)], -1) * hsv[..., 1:2],
            "grad": cv2.magnitude(gx, gy), "coarse": coarse, "coherence": coherence,
            "local_std": local_std, "lap": lap}


def shape_features(points: np.ndarray, *, image_area: float) -> list[float]:
    """Rotation-invariant shape of a polygon (K, 2): log area, elongation, rectangularity, solidity,
    compactness, log vertex count."""
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    area = abs(float(cv2.contourArea(pts)))
    if len(pts) < 3 or area <= 0:
        return [np.nan] * 6
    (_, _), (rw, rh), _ = cv2.minAreaRect(pts)
    hull = abs(float(cv2.contourArea(cv2.convexHull(pts))))
    perimeter = float(cv2.arcLength(pts, True))
    return [np.log(area / image_area), np.log(max(rw, rh, 1.0) / max(min(rw, rh), 1.0)),
            area / max(rw * rh, 1e-6), area / max(hull, 1e-6), 4 * np.pi * area / max(perimeter ** 2, 1e-6),
            np.log(len(pts))]


def _outline(region: np.ndarray) -> np.ndarray:
    """The largest outer contour of a bool mask, as polygon points (for RLE annotations)."""
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return max(contours, key=cv2.contourArea)[:, 0, :] if contours else np.zeros((0, 2))


def region_features(maps: dict[str, np.ndarray], region: np.ndarray, *, window=None, polygon=None,
                    visible_share: float = 1.0, bag_cover: float = 0.0, max_pixels: int = 4096) -> np.ndarray:
    """The appearance vector (FEATURE_NAMES) of the pixels in `region`.

    region: bool mask over the maps, or over `window` = (y0, y1, x0, x1) of them (cheaper for small
    objects); polygon: the object's outline as (K, 2) points or a flat COCO list in image coordinates
    (default: the region's contour); visible_share: how much of the object the region shows; bag_cover:
    how much of it lies under a plastic bag (seen through the bag, it takes the bag's look). Large
    regions are read at `max_pixels` evenly spaced pixels: the statistics barely move, the cost does.
    """
    wy, wx = (window[0], window[2]) if window is not None else (0, 0)
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return np.full(len(FEATURE_NAMES), np.nan, np.float32)
    if len(ys) > max_pixels:
        step = len(ys) / max_pixels
        keep = (np.arange(max_pixels) * step).astype(int)
        ys, xs = ys[keep], xs[keep]
    ys, xs = ys + wy, xs + wx
    pick = lambda name: maps[name][ys, xs]   # noqa: E731
    lab, hsv, grad = pick("lab"), pick("hsv"), pick("grad")
    hue = pick("hue_xy").mean(0)
    sat = hsv[:, 1]
    hue_bins = np.bincount(np.minimum((hsv[:, 0] / 60).astype(int), 5), weights=sat, minlength=6)[:6] / len(sat)
    L = lab[:, 0]
    if polygon is None:
        points = _outline(region) + np.float32([wx, wy])
    else:
        points = np.asarray(polygon, np.float32).reshape(-1, 2)
    log_area, *shape = shape_features(points, image_area=maps["grad"].size)
    return np.array([
        *lab.mean(0), *lab.std(0), np.percentile(L, 10), np.percentile(L, 90),
        *hue, *hue_bins, np.mean(sat < 0.15),
        sat.mean(), sat.std(), hsv[:, 2].mean(),
        np.mean((hsv[:, 2] > 0.92) & (sat < 0.2)), np.mean(hsv[:, 2] < 0.12),
        grad.mean(), grad.std(), pick("coarse").mean(), np.mean(grad > 20), pick("coherence").mean(),
        pick("local_std").mean(), pick("lap").mean(),
        log_area, visible_share, bag_cover, *shape,
    ], np.float32)


def standardize(x: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance columns; NaN (a region with no pixels) becomes the column mean."""
    x = np.asarray(x, np.float64)
    mean = np.nanmean(x, 0) if len(x) else np.zeros(x.shape[1])
    x = np.where(np.isfinite(x), x, mean)
    std = x.std(0)
    return (x - mean) / np.where(std > 1e-9, std, 1.0)


def lda_projection(x: np.ndarray, labels: np.ndarray, *, shrinkage: float = 0.05) -> np.ndarray:
    """Fisher discriminant directions (columns) of standardised features, most separating first.

    Shape:
        x: (N, F); labels: (N,); returns: (F, min(F, n_classes - 1)).
    """
    classes = np.unique(labels)
    mean = x.mean(0)
    sw = np.zeros((x.shape[1], x.shape[1]))
    sb = np.zeros_like(sw)
    for c in classes:
        xc = x[labels == c]
        d = xc - xc.mean(0)
        sw += d.T @ d
        m = (xc.mean(0) - mean)[:, None]
        sb += len(xc) * (m @ m.T)
    sw /= len(x)
    sb /= len(x)
    # shrink towards the identity so rare classes and near-constant features cannot blow up
    sw = (1 - shrinkage) * sw + shrinkage * np.eye(len(sw)) * np.trace(sw) / len(sw)
    vals, vecs = eigh(sb, sw)
    keep = min(x.shape[1], max(1, len(classes) - 1))
    return vecs[:, np.argsort(vals)[::-1][:keep]]


def knn_probs(x: np.ndarray, labels: np.ndarray, *, k: int = 15, num_classes: int = NUM_CLASSES,
              chunk: int = 1024) -> np.ndarray:
    """Leave-one-out k-NN class probabilities: each row is voted by its k nearest OTHER rows.

    Votes are Gaussian-weighted by distance (bandwidth = the k-th distance) and smoothed so no
    class gets exactly 0 or 1. Shape: x (N, D), labels (N,); returns (N, num_classes).
    """
    n = len(x)
    probs = np.zeros((n, num_classes))
    if n < 2:
        return np.full((n, num_classes), 1.0 / num_classes)
    k = min(k, n - 1)
    sq = (x ** 2).sum(1)
    for s in range(0, n, chunk):
        d2 = sq[s:s + chunk, None] + sq[None] - 2 * x[s:s + chunk] @ x.T
        d2[np.arange(len(d2)), np.arange(s, s + len(d2))] = np.inf          # leave self out
        nn = np.argpartition(d2, k - 1, axis=1)[:, :k]
        dn = np.take_along_axis(d2, nn, 1).clip(min=0)
        bw = dn.max(1, keepdims=True) + 1e-9
        wts = np.exp(-dn / bw)
        np.add.at(probs, (np.repeat(np.arange(s, s + len(d2)), k), labels[nn].ravel()), wts.ravel())
    probs += 0.5 / num_classes                                           # Laplace-style smoothing
    return probs / probs.sum(1, keepdims=True)


def label_probs(features: np.ndarray, labels, *, k: int = 25, views: tuple[str, ...] = ("standardized", "lda"),
                num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Leave-one-out class probabilities of every annotation: the mean of k-NN votes in each view.

    "standardized": the features scaled to unit variance (every feature counts the same);
    "lda": their Fisher projection (the features that separate classes count most). The two err on
    different annotations, so their mean ranks wrong labels better than either (measured on two
    generated datasets). Shape: features (N, F), labels (N,); returns (N, num_classes).
    """
    labels = np.asarray(labels, int)
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    unknown = set(views) - {"standardized", "lda"}
    if unknown or not views:
        raise ValueError(f"views must be a non-empty subset of ('standardized', 'lda'), got {views}")
    x = standardize(features)
    spaces = [x if v == "standardized" or len(np.unique(labels)) < 2 else x @ lda_projection(x, labels) for v in views]
    return np.mean([knn_probs(z, labels, k=k, num_classes=num_classes) for z in spaces], axis=0)


def rank_mislabels(features: np.ndarray, labels, annotation_ids=None, *, k: int = 25,
                   views: tuple[str, ...] = ("standardized", "lda")) -> pd.DataFrame:
    """Annotations ranked by score = 1 - P(given label), most suspicious first (see label_probs).

    Columns: annotation_id, given, predicted, p_given, p_predicted, score, given_name, predicted_name.
    """
    labels = np.asarray(labels, int)
    probs = label_probs(features, labels, k=k, views=views)
    pred = probs[:, 1:].argmax(1) + 1                                     # an object is never background
    rows = np.arange(len(labels))
    table = pd.DataFrame({"annotation_id": annotation_ids if annotation_ids is not None else rows,
                          "given": labels, "predicted": pred, "p_given": probs[rows, labels],
                          "p_predicted": probs[rows, pred]})
    table["score"] = 1 - table["p_given"]
    table["given_name"] = [CLASS_NAMES[c] for c in labels]
    table["predicted_name"] = [CLASS_NAMES[c] for c in pred]
    # among equally doubtful labels, the one whose alternative is clearest comes first
    return table.sort_values(["score", "p_predicted"], ascending=False, kind="stable").reset_index(drop=True)


def load_known_mislabels(data_root) -> pd.DataFrame | None:
    """The deliberately wrong labels a generated dataset records in synth_meta.json (None if absent)."""
    path = Path(data_root) / "synth_meta.json"
    if not path.exists():
        return None
    meta = read_json(path)
    if "mislabels" not in meta:
        return None
    return pd.DataFrame(meta["mislabels"], columns=["annotation_id", "image_id", "file_name",
                                                    "true_category_id", "label_category_id"])


def ranking_quality(ranked_ids, known_ids, *, k: int) -> dict:
    """precision@k and recall@k of a ranking against known wrong labels, with the random baseline (k * rate)."""
    ranked_ids = list(ranked_ids)
    known = set(known_ids).intersection(ranked_ids)       # wrong labels outside the analysed subset do not count
    n = len(ranked_ids)
    k = min(k, n)
    hits = len(known.intersection(ranked_ids[:k]))
    rate = len(known) / n if n else float("nan")
    return {"k": k, "hits_at_k": hits, "precision_at_k": hits / k if k else float("nan"),
            "recall_at_k": hits / len(known) if known else float("nan"),
            "mislabel_rate": rate, "random_hits_at_k": k * rate}


def crop_annotation(image: np.ndarray, bbox, *, polygon=None, margin: float = 0.3,
                    min_side: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
    """A crop around a COCO bbox (x, y, w, h) with a margin, and the polygon in crop coordinates."""
    h, w = image.shape[:2]
    x, y, bw, bh = (float(v) for v in bbox)
    side = max(bw, bh, min_side) * (1 + 2 * margin)
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    outline = None
    if polygon is not None and len(polygon) >= 6:
        outline = np.asarray(polygon, float).reshape(-1, 2) - (x0, y0)
    return image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)], outline


def candidate_crops(dataset, ranking: pd.DataFrame, annotations: pd.DataFrame, *, top_k: int = 10,
                    known_ids=None) -> dict:
    """The top-k candidates as `plots.plot_annotation_crops` draws them: {crops, outlines, titles, edgecolors}.

    Each title gives the rank, the annotation, its label and the label its appearance says; an edge colour
    marks a known wrong label red and a label known to be right grey (only when `known_ids` is given).
    """
    top = ranking.head(top_k).merge(annotations[["annotation_id", "index"]], on="annotation_id", how="left")
    known = None if known_ids is None else set(known_ids)
    crops, outlines, titles, edges = [], [], [], []
    for rank, row in enumerate(top.itertuples(), 1):
        ann = next(a for a in dataset.annotations(int(row.index)) if a["id"] == row.annotation_id)
        seg = ann["segmentation"]
        polygon = seg[0] if isinstance(seg, list) and seg else None
        crop, outline = crop_annotation(dataset.load_image(int(row.index)), ann["bbox"], polygon=polygon)
        crops.append(crop), outlines.append(outline)
        titles.append(f"#{rank} ann {row.annotation_id}\nlabel: {row.given_name} (p {row.p_given:.3f})\n"
                      f"looks: {row.predicted_name} (p {row.p_predicted:.2f})")
        edges.append(None if known is None else ("red" if row.annotation_id in known else "0.6"))
    return {"crops": crops, "outlines": outlines, "titles": titles, "edgecolors": edges}
