"""Writing a figure: a PNG written atomically, so a crash never leaves half a picture under its name."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt

from trashlib.io import atomic_open


def write_png(fig, path: str | os.PathLike, *, dpi: int = 110, close: bool = False) -> None:
    """Save `fig` as a PNG at `path` (atomic), trimmed to its content; `close` frees the figure afterwards."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
