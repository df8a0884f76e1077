"""Pictures of images and label maps: colour masks, overlays, a class legend, galleries, annotation crops.

They take arrays (never a dataset) and return a figure or an image; saving is `write_png`'s job (the
notebooks call it through `reporting.store.save_figure`). Class colours come from `classes.PALETTE`.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from trashlib.classes import CLASSES, IGNORE_INDEX, NUM_CLASSES, PALETTE


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
