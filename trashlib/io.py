"""Atomic file writes (a crash never leaves a half-written file under its final name), and where an
output may be written (`check_output`: never onto an input)."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from trashlib import paths


_UMASK = os.umask(0)
os.umask(_UMASK)

# Folders an output must not land in, known by the files the project writes into them (the names of
# runs.CONFIG_FILE/ENV_FILE, probs.INDEX_FILE/SETTINGS_FILE, labelmaps.MARKER_FILE and a data root's split
# files; this module sits below those that define them). A folder holding every file of one entry is protected.
_PROTECTED_BY = (("a run folder", ("config.yaml", "environment.json")),
                 ("a probability index", ("index.json", "settings.json")),
                 ("a label-map set", ("index.json", ".trashlib-label-maps")),
                 ("a data root", ("test.json", "train.json")),
                 ("a data root", ("test.json", "train_all.json")))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside `path` (its name is `f.name`); rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; the final file gets normal permissions
        os.close(fd)  # reopened by name, so that f.name is the temporary path (a download checks it before the rename)
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 2) -> Path:
    """Write JSON atomically; returns the path (indent=None is compact and uses the fast C encoder)."""
    text = json.dumps(obj, indent=indent)  # one string: json.dump streams through the pure-Python encoder
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def parse_json(raw: bytes, name: str):
    """Decode JSON bytes; ValueError naming `name` and the line and column of a syntax error."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not UTF-8 text (byte {e.start})") from None


def read_json(path: str | os.PathLike):
    """Read a JSON file, with an error that names the file (and the position of a syntax error)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read file: {e.strerror or e}") from None
    return parse_json(raw, str(path))


def check_writable(folder: str | os.PathLike, *, what: str | None = None) -> None:
    """Raise an OSError naming `folder` (or `what`) unless files can be created in it, making it if need be.

    Called before any long computation that ends by writing there. A probe file (unnamed, gone on
    close) is created in the folder, or in the nearest existing one above it, so a read-only disk or a
    root-owned folder is found as well as missing permission bits.
    """
    folder = Path(folder)
    what = what or str(folder)
    existing = folder
    while not existing.is_dir():
        if existing.exists() or existing.is_symlink():
            raise NotADirectoryError(f"cannot write {what}: {existing} is a file, not a folder")
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write {what}: {existing} is not writable ({e.strerror or e})") from None


def _conflict(path: Path, inputs) -> str | None:
    """Why the resolved output `path` lands on an input, or None."""
    for given in inputs:
        folder = Path(given).expanduser().resolve()
        if path == folder or folder in path.parents:
            return f"{'is' if path == folder else 'lies inside'} the input {given}"
    # the runs and reports folders are outputs wherever they were moved (make test puts them under data/interim)
    configured = [Path(getattr(paths, name)).resolve() for name in ("RUNS_DIR", "REPORTS_DIR")]
    for name in ("RAW_DIR", "INTERIM_DIR", "PROBS_DIR"):  # read now: tests and TRASHLIB_HOME move them
        folder = Path(getattr(paths, name)).resolve()
        if any(out == path or out in path.parents for out in configured if folder in out.parents):
            continue
        if path == folder or folder in path.parents:
            return f"lies inside the project's {folder}, which holds its inputs and stored results"
    for folder in path.parents:
        for kind, files in _PROTECTED_BY:
            if all((folder / f).exists() for f in files):
                return f"lies inside {kind}, {folder} (it holds {' and '.join(files)})"
    return None


def check_output_place(path: str | os.PathLike, *, inputs=(), what: str = "the output") -> Path:
    """Refuse an output that would land on an input; returns the path with its symlinks resolved.

    ValueError when `path` is one of `inputs` (files or folders) or lies inside one, inside the
    project's data/raw, data/interim or probability store, or inside any data root, probability
    index, label-map set or run folder.
    """
    resolved = Path(path).expanduser().resolve()
    why = _conflict(resolved, inputs)
    if why is not None:
        where = "" if str(resolved) == str(path) else f" ({resolved})"
        raise ValueError(f"{what} {path}{where} {why}: choose a path outside the inputs, the data and the runs")
    return resolved


def check_output(path: str | os.PathLike, *, inputs=(), what: str = "the output", folder: bool = False) -> Path:
    """`check_output_place`, then IsADirectoryError (NotADirectoryError with `folder`) when an existing
    entry is of the other kind and OSError when it cannot be written; returns the resolved path.

    Called before the work that ends by writing there; whether an existing file may be replaced is
    the caller's rule.
    """
    resolved = check_output_place(path, inputs=inputs, what=what)
    if not folder and resolved.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give the path of a file")
    if folder and resolved.exists() and not resolved.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file, not a folder")
    check_writable(resolved if folder else resolved.parent, what=f"{what} {path}")
    return resolved
