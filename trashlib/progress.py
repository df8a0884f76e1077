"""Whether a progress bar is shown: wherever a person watches, and not in the rendered reports.

Every function that can run longer than a few seconds takes `progress: bool | None = None`. True or
False decide; None (the default, and what the notebooks pass) means `shown()`: on in JupyterLab and
in a terminal, off where TRASHLIB_PROGRESS=0, which `trashlib report` and `make test` set, so a
rendered report holds results rather than finished bars.
"""
from __future__ import annotations

import os

ENV = "TRASHLIB_PROGRESS"


def shown(progress: bool | None = None) -> bool:
    """`progress` when given; otherwise on unless the environment's TRASHLIB_PROGRESS is 0/false/no/off."""
    if progress is not None:
        return bool(progress)
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")
