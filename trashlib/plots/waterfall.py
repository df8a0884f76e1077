"""The wrap-up page's charts: the waterfall of val mIoU through the stages, and per-class IoU at each stage."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from trashlib.plots.verdicts import verdict_colour


def plot_waterfall(stages: list):
    """The steps (`reporting.waterfall.Step`): levels as bars, steps as floating bars from their reference
    (green gain, red loss, grey tie); returns the figure."""
    fig, ax = plt.subplots(figsize=(max(7, 1.25 * len(stages)), 4.2))
    values = [v for s in stages for v in (s.value, s.reference_value) if v is not None]
    low = max(0.0, min(values) - 0.05) if values else 0.0
    for x, s in enumerate(stages):
        if s.value is None:
            ax.text(x, low, s.verdict, ha="center", va="bottom", rotation=90, fontsize=8, color="grey")
            continue
        start = s.reference_value if s.delta is not None else low
        colour = verdict_colour(s.verdict)
        ax.bar(x, s.value - start, bottom=start, color=colour, width=0.6, edgecolor="black", lw=0.5)
        if s.spread:
            ax.errorbar(x, s.value, yerr=s.spread, color="black", capsize=4, lw=1)
        if s.delta is not None:
            ax.hlines(start, x - 0.4, x + 0.4, colors="black", linestyles=":", lw=1)
            ax.annotate(f"{s.delta:+.3f}\n{s.verdict}", (x, max(s.value, start) + (s.spread or 0)), ha="center",
                        va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        else:
            ax.annotate(f"{s.value:.3f}", (x, s.value + (s.spread or 0)), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(stages)), [f"{s.name}\n({s.notebook[:2]})" for s in stages], fontsize=8)
    top = max(values) + 0.04 if values else 1.0
    ax.set(ylim=(low, top), ylabel="val mIoU",
           title="val mIoU through the stages: levels (blue), steps from their paired reference (dotted)")
    sns.despine(ax=ax)
    fig.tight_layout()
    return fig


def plot_stage_classes(frame: pd.DataFrame):
    """Heat map of per-class IoU, one row per stage (`reporting.waterfall.class_frame`), NaN blank; None when
    the frame is None (no stage recorded per-class IoU)."""
    if frame is None:
        return None
    fig, ax = plt.subplots(figsize=(12, 0.55 * len(frame) + 1.6))
    sns.heatmap(frame, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, mask=np.isnan(frame.values), ax=ax,
                cbar_kws={"label": "IoU"})
    ax.set(title="per-class val IoU at each stage (blank: class absent)", ylabel="")
    fig.tight_layout()
    return fig
