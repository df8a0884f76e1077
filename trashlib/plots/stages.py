"""05's stages as bars: val mIoU per stage, coloured by its verdict against the stage it builds on."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from trashlib.plots.verdicts import verdict_colour
from trashlib.scoring.compare import Contrast


def plot_stages(table: pd.DataFrame, *, mean: float | None = None, spread: float = 0.0, title: str = ""):
    """Bars of val mIoU per stage coloured by verdict (each against the stage it builds on); the first
    stage's seed mean ± spread as a dot with whiskers, and the band of a tie around the first stage (the 95%
    interval of a difference under that seed noise, `compare.Contrast.from_spread`: a stage inside it is
    within noise of the first)."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(table)), 3.8))
    x = np.arange(len(table))
    ax.bar(x, table["val mIoU"], color=[verdict_colour(v) for v in table["verdict"]])
    first = table["val mIoU"].iloc[0]
    seeds = int(table.attrs.get("seeds", 2))
    if spread > 0 and seeds > 1:
        half = Contrast.from_spread(0.0, spread, seeds=seeds).ci[1]
        ax.axhspan(first - half, first + half, color="0.85", zorder=0,
                   label=f"{table.index[0]} ± 95% interval of a difference ({seeds} seeds)")
    if mean is not None:
        ax.errorbar([0], [mean], yerr=[spread], fmt="o", color="black", capsize=4, label="seeds: mean ± spread")
    for xi, (v, verdict_) in enumerate(zip(table["val mIoU"], table["verdict"])):
        ax.text(xi, v, f"{v:.3f}\n{verdict_}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, table.index, rotation=20, ha="right")
    low = min(table["val mIoU"].min(), mean if mean is not None else first) - 3 * max(spread, 0.01)
    ax.set_ylim(max(0.0, low), table["val mIoU"].max() + 4 * max(spread, 0.01))
    ax.set_ylabel("val mIoU"), ax.set_title(title)
    if spread > 0 or mean is not None:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig
