"""Pictures of images and label maps: colour masks, overlays, a class legend, galleries, run plots.

Every notebook draws with these, so they take arrays (never a dataset) and return a figure or an
image; saving is `trashlib.report.save_figure`'s job. Class colours come from `classes.PALETTE`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from trashlib.classes import CLASS_NAMES, CLASSES, IGNORE_INDEX, NUM_CLASSES, PALETTE


def colorize(mask: np.ndarray, *, palette: np.ndarray = PALETTE) -> np.ndarray:
    """Label map -> RGB image with each class in its palette colour (ignore pixels white).

    Shape:
        mask: (H, W) integer labels in 0..255; returns: (H, W, 3) uint8.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    return np.asarray(palette, dtype=np.uint8)[mask.astype(np.intp) & 255]


def overlay(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.5,
            palette: np.ndarray = PALETTE) -> np.ndarray:
    """Blend class colours over an image; background (0) and ignore pixels keep the image's colours.

    Shape:
        image: (H, W, 3) uint8; mask: (H, W); returns: (H, W, 3) uint8.
    """
    image = np.asarray(image)
    if image.shape[:2] != np.shape(mask):
        raise ValueError(f"image shape {image.shape} does not match mask shape {np.shape(mask)}")
    out = image.copy()
    fg = (mask != 0) & (mask != IGNORE_INDEX)
    if fg.any():
        colours = colorize(mask, palette=palette)[fg].astype(np.float32)
        out[fg] = np.clip((1 - alpha) * image[fg] + alpha * colours + 0.5, 0, 255).astype(np.uint8)
    return out


def present_classes(*masks: np.ndarray) -> list[int]:
    """Sorted class ids (without background and ignore) that occur in any of the masks."""
    ids = set()
    for m in masks:
        if m is not None:
            ids.update(int(v) for v in np.unique(m))
    return sorted(i for i in ids if 0 < i < NUM_CLASSES)


def legend_handles(class_ids: Sequence[int] | None = None) -> list:
    """Matplotlib patches (colour + name) for the given classes, all foreground classes by default."""
    ids = range(1, NUM_CLASSES) if class_ids is None else class_ids
    return [Patch(facecolor=np.array(CLASSES[i].color) / 255, edgecolor="0.3", label=CLASSES[i].name) for i in ids]


def add_class_legend(fig, class_ids: Sequence[int] | None = None, *, ncol: int | None = None,
                     loc: str = "lower center", fontsize: float = 9):
    """A class legend under (or wherever `loc` says in) a figure; returns the legend."""
    handles = legend_handles(class_ids)
    ncol = ncol or min(len(handles), 5) or 1
    return fig.legend(handles=handles, loc=loc, ncol=ncol, fontsize=fontsize, frameon=False,
                      bbox_to_anchor=(0.5, 0.0) if loc == "lower center" else None)


def show_gallery(images: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None = None, *,
                 titles: Sequence[str] | None = None, mode: str = "overlay", ncols: int = 4,
                 alpha: float = 0.5, panel_size: float = 3.0, legend: bool = True):
    """A grid of images with their masks; returns the figure.

    mode: "overlay" (one panel per image), "side_by_side" (image, then colour mask) or "image".
    """
    if mode not in ("overlay", "side_by_side", "image"):
        raise ValueError(f"mode must be 'overlay', 'side_by_side' or 'image', got {mode!r}")
    n = len(images)
    if n == 0:
        raise ValueError("show_gallery needs at least one image")
    masks = list(masks) if masks is not None else [None] * n
    per_item = 2 if mode == "side_by_side" else 1
    cols = max(per_item, (max(1, ncols // per_item)) * per_item)
    nrows = -(-n * per_item // cols)
    row_height = panel_size + (0.3 if titles is not None else 0)       # room for the titles
    fig, axes = plt.subplots(nrows, cols, figsize=(panel_size * cols, row_height * nrows + (0.5 if legend else 0)),
                             squeeze=False)
    panels = []
    for img, m in zip(images, masks):
        if mode == "overlay":
            panels.append(overlay(img, m, alpha=alpha) if m is not None else img)
        elif mode == "side_by_side":
            panels += [img, colorize(m) if m is not None else np.zeros_like(img)]
        else:
            panels.append(img)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(panels):
            ax.imshow(panels[k])
            if titles is not None and k % per_item == 0:
                ax.set_title(titles[k // per_item], fontsize=9)
    if legend:
        ids = present_classes(*[m for m in masks if m is not None])
        if ids:
            add_class_legend(fig, ids, ncol=min(len(ids), cols + 1))
    fig.tight_layout(rect=(0, 0.06 if legend else 0, 1, 1))
    return fig


def show_annotations(image: np.ndarray, polygons: Sequence, category_ids: Sequence[int], *,
                     labels: Sequence[str] | None = None, ax=None, linewidth: float = 2.0):
    """An image with polygon outlines in their class colours (COCO flat [x0, y0, x1, ...] lists)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(image)
    halo = [pe.Stroke(linewidth=linewidth + 2, foreground="white"), pe.Normal()]
    for k, (poly, c) in enumerate(zip(polygons, category_ids)):
        pts = np.asarray(poly, float).reshape(-1, 2)
        colour = np.array(CLASSES[c].color) / 255
        ax.plot(np.r_[pts[:, 0], pts[0, 0]], np.r_[pts[:, 1], pts[0, 1]], color=colour, lw=linewidth,
                path_effects=halo)
        if labels is not None and labels[k]:
            ax.text(pts[:, 0].mean(), pts[:, 1].mean(), labels[k], fontsize=8, ha="center", va="center",
                    color="black", bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=colour, alpha=0.85))
    ax.axis("off")
    return ax.figure


def plot_class_distributions(samples: dict[int, np.ndarray], *, ylabel: str = "", log: bool = False,
                             ax=None, max_points: int = 5000, seed: int = 0):
    """One violin per class (class colours) of a 1-D quantity, e.g. hue or area share; empty classes skipped."""
    rng = np.random.default_rng(seed)
    ids = [c for c, v in samples.items() if len(v) > 1 and np.ptp(np.asarray(v, float)) > 0]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(samples)), 3.4))
    data = []
    for c in ids:
        v = np.asarray(samples[c], float)
        v = v[rng.choice(len(v), max_points, replace=False)] if len(v) > max_points else v
        data.append(np.log10(v) if log else v)
    if data:
        parts = ax.violinplot(data, positions=range(len(ids)), showmedians=True, widths=0.8)
        for body, c in zip(parts["bodies"], ids):
            body.set_facecolor(np.array(CLASSES[c].color) / 255), body.set_edgecolor("0.2"), body.set_alpha(0.8)
        for key in ("cbars", "cmins", "cmaxes", "cmedians"):
            parts[key].set_color("0.25"), parts[key].set_linewidth(1.0)
    ax.set_xticks(range(len(ids)), [CLASSES[c].name for c in ids], rotation=35, ha="right")
    ax.set_ylabel(f"log10 {ylabel}" if log else ylabel)
    ax.grid(axis="y", alpha=0.3)
    return ax.figure


def plot_annotation_crops(crops: Sequence[np.ndarray], *, outlines: Sequence[np.ndarray | None] | None = None,
                          titles: Sequence[str] | None = None, edgecolors: Sequence | None = None,
                          ncols: int = 5, panel_size: float = 2.4):
    """Thumbnails (e.g. object crops) with an optional polygon outline and a coloured frame each.

    outlines: per crop a (K, 2) array of x, y points in crop coordinates, or None.
    """
    n = len(crops)
    if n == 0:
        raise ValueError("plot_annotation_crops needs at least one crop")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, (panel_size + 0.35) * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        ax.imshow(crops[k])
        if outlines is not None and outlines[k] is not None and len(outlines[k]):
            pts = np.asarray(outlines[k])
            ax.plot(np.r_[pts[:, 0], pts[0, 0]], np.r_[pts[:, 1], pts[0, 1]], color="yellow", lw=1.2)
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
        if edgecolors is not None and edgecolors[k] is not None:
            for s in ax.spines.values():
                s.set_edgecolor(edgecolors[k]), s.set_linewidth(3)
    fig.tight_layout()
    return fig


def plot_class_bars(values: dict[str, Sequence[float]], *, class_names: Sequence[str], log: bool = False,
                    ylabel: str = "", title: str = "", ax=None):
    """Grouped bars: one group per class, one bar per series (e.g. this dataset vs the competition)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(class_names)), 3.6))
    width = 0.8 / max(1, len(values))
    x = np.arange(len(class_names))
    for k, (label, v) in enumerate(values.items()):
        ax.bar(x + (k - (len(values) - 1) / 2) * width, np.asarray(v, dtype=float), width, label=label)
    ax.set_xticks(x, class_names, rotation=35, ha="right")
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))   # 100, not 10^2 or 6x10^0
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(ylabel), ax.set_title(title)
    if len(values) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def _is_history(value) -> bool:
    """A whole history (a mapping or a DataFrame of series), not one series."""
    return isinstance(value, Mapping) or hasattr(value, "columns")


def plot_training_curves(history, *, x: str | None = None, groups: dict[str, Sequence[str]] | None = None,
                         logy: Sequence[str] = ("loss",), relative: bool = False,
                         figsize: tuple[float, float] | None = None):
    """Training curves: one panel per group of series (default: one panel per series but x).

    history: {"step": [...], "train_loss": [...], "val_mIoU": [...]}; series may be shorter than x
    (e.g. validated every k steps) and may hold None/NaN where not measured. Several runs:
    {run label: history} (mappings or DataFrames, each with its own x), one line per run and series.
    `relative` divides each line by its first measured value (losses of different scales side by side).
    A panel whose title contains a word in `logy` uses a log y-axis.
    """
    several = isinstance(history, Mapping) and history and all(_is_history(h) for h in history.values())
    runs = history if several else {"": history}
    names = [k for k in next(iter(runs.values())).keys() if k != x]
    groups = groups or {k: [k] for k in names}
    fig, axes = plt.subplots(1, len(groups), figsize=figsize or (4.2 * len(groups), 3.2), squeeze=False)
    for ax, (title, series) in zip(axes.flat, groups.items()):
        lines = 0
        for label, h in runs.items():
            xs = np.asarray(h[x], dtype=float) if x else None
            for name in series:
                y = np.asarray([np.nan if v is None else v for v in h[name]], dtype=float)
                xv = xs[: len(y)] if xs is not None and len(xs) >= len(y) else np.arange(len(y))
                ok = np.isfinite(y)
                if relative and ok.any():
                    y = y / y[ok][0]
                ax.plot(xv[ok], y[ok], marker="o" if ok.sum() < 30 else None, ms=3,
                        label=" ".join(filter(None, [label, name if len(series) > 1 or not label else ""])))
                lines += 1
        ax.set_title(title), ax.set_xlabel(x or "step"), ax.grid(alpha=0.3)
        if relative:
            ax.set_ylabel("relative to the first value")
        if any(w in title.lower() for w in logy):
            ax.set_yscale("log")
        if lines > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(confusion: np.ndarray, *, class_names: Sequence[str] = CLASS_NAMES,
                          normalize: str | None = "true", title: str = "", annotate: bool = True):
    """Heatmap of a confusion matrix (rows ground truth); normalize "true" shows recall per row."""
    cm = np.asarray(confusion, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not match {len(class_names)} class names")
    if normalize == "true":
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    elif normalize == "all":
        cm = cm / max(cm.sum(), 1)
    elif normalize is not None:
        raise ValueError(f"normalize must be 'true', 'all' or None, got {normalize!r}")
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(0.6 * n + 2.5, 0.6 * n + 1.5))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right"), ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted"), ax.set_ylabel("ground truth"), ax.set_title(title)
    if annotate:
        top = np.nanmax(cm) if cm.size else 0
        for i in range(n):
            for j in range(n):
                text = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > 0.6 * top else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_learning_curve(step, minutes, miou, *, lines: dict[str, float] | None = None, title: str = ""):
    """Val mIoU against optimizer steps (left) and wall-clock minutes (right), with horizontal reference
    `lines` such as {"colour-only floor": 0.15, "target": 0.30}."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    for ax, xs, label in zip(axes, (step, minutes), ("optimizer step", "training minutes (2 CPU cores)")):
        ax.plot(np.asarray(xs, float), np.asarray(miou, float), marker="o", ms=4, label="val mIoU")
        for i, (name, value) in enumerate((lines or {}).items()):
            ax.axhline(value, ls="--", lw=1, color=f"C{i + 1}", label=name)
        ax.set_xlabel(label), ax.grid(alpha=0.3)
    axes[0].set_ylabel("val mIoU (whole split)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_learning_curves(curves, *, x: str = "train seconds", lines: Mapping[str, float] | None = None,
                         title: str = ""):
    """Val mIoU of several models against `x` (a column of `evaluation.learning_curves`: train seconds, step
    or images seen), one line per model, with horizontal reference `lines` such as {"colour-only floor": 0.14}."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for i, (model, curve) in enumerate(curves.groupby("model", sort=False)):
        ax.plot(curve[x].to_numpy(float), curve["val mIoU"].to_numpy(float), marker="o", ms=4, color=f"C{i}",
                label=model)
    for (name, value), style in zip((lines or {}).items(), ("--", ":", "-.")):
        ax.axhline(value, ls=style, lw=1, color="0.3", label=name)
    ax.set_xlabel(x + (" (2 CPU cores)" if x == "train seconds" else "")), ax.set_ylabel("val mIoU")
    ax.grid(alpha=0.3), ax.legend(fontsize=8, loc="best"), ax.set_title(title)
    fig.tight_layout()
    return fig
