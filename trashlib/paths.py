"""Every path the project uses, derived from the package location or one environment variable.

Only paths: nothing here reads or makes data (`trashlib.data.resolve_data_root` picks the data root).
Never from the working directory: nbval starts kernels in the notebook's folder, papermill in the
caller's. `TRASHLIB_DATA` names a data root (the competition layout); without it the embedded,
generated dataset is used. `TRASHLIB_HOME` moves the writable folders (data/, reports/, runs/) as a
whole, for installs where the package's own folder is read-only; `TRASHLIB_REPORTS` and `TRASHLIB_RUNS`
move one of them (the test suite sends notebook outputs to a scratch folder this way).
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = Path(os.environ.get("TRASHLIB_HOME", PACKAGE_DIR.parent)).resolve()
NOTEBOOKS_DIR = PACKAGE_DIR.parent / "notebooks"
DATA_DIR = PROJECT_DIR / "data"
RAW_DIR = DATA_DIR / "raw"
INTERIM_DIR = DATA_DIR / "interim"
PROBS_DIR = INTERIM_DIR / "probs"              # stored probability maps (predictions, ensembles, CRF)
LABEL_MAPS_DIR = INTERIM_DIR / "label-maps"    # label-map training sets (offline copy-paste, pseudo labels)
REPORTS_DIR = Path(os.environ.get("TRASHLIB_REPORTS", PROJECT_DIR / "reports")).resolve()
FIGURES_DIR = REPORTS_DIR / "figures"
METRICS_DIR = REPORTS_DIR / "metrics"
RUNS_DIR = Path(os.environ.get("TRASHLIB_RUNS", PROJECT_DIR / "runs")).resolve()
SYNTH_DIR = RAW_DIR / "trash-synth"
SHARED_TACO_DIR = PACKAGE_DIR.parent.parent / "shared" / "data" / "taco-trash"
SHARED_TACO_RAW_DIR = PACKAGE_DIR.parent.parent / "shared" / "data" / "taco-raw"  # TACO's own files (tests)


def cache_dir(*parts: str) -> Path:
    """A folder under data/interim/ for derived files (created on demand)."""
    path = INTERIM_DIR.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def shown(path) -> str:
    """A path as a page or a message shows it: under the reports, runs or project folder relative to it
    ("runs/<name>", "data/raw/trash-synth"), under the home folder with "~", else whole. A rendered report
    thus names its files without saying where this machine keeps the project."""
    p = Path(path).absolute()
    for base, label in ((REPORTS_DIR, "reports"), (RUNS_DIR, "runs"), (PROJECT_DIR, ""), (Path.home(), "~")):
        try:
            rel = p.relative_to(base)
        except ValueError:
            continue
        return (Path(label) / rel).as_posix() if label else rel.as_posix() or "."
    return p.as_posix()
