"""Which data root to use, and the embedded generated dataset made on first use (as d2l's `download`)."""
from __future__ import annotations

import os
from pathlib import Path

from trashlib import paths
from trashlib.synth import generate_dataset


def resolve_data_root(data_root: str | os.PathLike | None = None, *, generate: bool = True) -> Path:
    """The data root: the argument, else `$TRASHLIB_DATA`, else the embedded generated dataset.

    The embedded dataset (data/raw/trash-synth) is generated on first use, in well under a minute,
    when `generate` is true; `make data` does the same ahead of time.
    """
    if data_root not in (None, ""):
        root = Path(data_root).expanduser().resolve()
    elif os.environ.get("TRASHLIB_DATA"):
        root = Path(os.environ["TRASHLIB_DATA"]).expanduser().resolve()
    else:
        root = paths.SYNTH_DIR
        if generate and not (root / "train_all.json").exists():
            generate_dataset(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} does not exist (from argument or TRASHLIB_DATA)")
    return root
