"""Charts over the classes: per-class distributions, grouped bars, and the confusion matrix."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, NullFormatter

from trashlib.classes import CLASS_NAMES, CLASSES


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
