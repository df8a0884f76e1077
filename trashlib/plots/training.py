"""Training curves: loss and mIoU over steps or seconds, one run or several."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np



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
