"""06's pseudo-label quality: coverage and accuracy against the confidence threshold."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from trashlib.classes import CLASS_NAMES


def plot_quality_curve(curve: pd.DataFrame, *, marks: dict | None = None, classes=None):
    """Coverage and accuracy against the threshold, one line per class, "all" in black; returns the figure.

    `marks` maps a label to a threshold drawn as a vertical line (a recipe's operating point).
    """
    data = curve[curve["class"].isin(list(classes or CLASS_NAMES))].dropna(subset=["coverage"])
    overall = curve[curve["class"] == "all"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharex=True)
    for ax, what in zip(axes, ("coverage", "accuracy")):
        sns.lineplot(data=data, x="threshold", y=what, hue="class", marker=".", ax=ax, legend=ax is axes[1],
                     palette=sns.color_palette("tab20", data["class"].nunique()))
        ax.plot(overall["threshold"], overall[what], color="black", lw=2.5, label="all pixels")
        for label, t in (marks or {}).items():
            ax.axvline(t, color="grey", ls="--", lw=1)
            ax.text(t, 0.02, f" {label}", rotation=90, va="bottom", fontsize=8, color="grey")
        ax.set(ylim=(0, 1.02), title=f"pseudo-label {what} by true class", ylabel=what)
    axes[1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig
