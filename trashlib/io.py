"""Atomic file writes: a crash never leaves a half-written file under its final name."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; the final file gets normal permissions
        with os.fdopen(fd, mode, **kwargs) as f:
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
