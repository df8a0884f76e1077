"""A lazily filled on-disk array cache: fixed-size uint8 records in one memory-mapped file.

Layout: magic, one ready flag per record, padding to a page, then the records back to back. A
record is written, flushed, and only then flagged ready, so a crash (or a killed DataLoader worker)
leaves at worst an unflagged record that is recomputed. Workers share the file through the page
cache; two workers filling the same record write the same bytes. The file is created under a
temporary name and linked into place, so a reader never sees a half-created file.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

_MAGIC = b"TRASHLIB-FLATCACHE-1\n"
_PAGE = mmap.ALLOCATIONGRANULARITY


class FlatCache:
    """`get(i)` returns a copy of record i (None until `put(i, array)` stored it); sizes in bytes."""

    def __init__(self, path: str | os.PathLike, sizes: Sequence[int]):
        self.path = Path(path)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        header = -(-(len(_MAGIC) + len(self.sizes)) // _PAGE) * _PAGE
        self.offsets = header + np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.nbytes = int(header + self.sizes.sum())
        self._buf: np.ndarray | None = None

    def __getstate__(self):  # DataLoader workers (spawn) reopen the mapping themselves
        return {k: v for k, v in self.__dict__.items() if k not in ("_buf", "_mmap")} | {"_buf": None}

    def _create(self) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the cache from other users of the project
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC)
                f.truncate(self.nbytes)  # sparse: unwritten records take no disk space
            try:  # link, not replace: a concurrent creator's file (maybe filled already) wins
                os.link(tmp, self.path)
            except FileExistsError:
                pass
            except OSError:  # file systems without hard links
                os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _open(self) -> np.ndarray:
        if self._buf is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for attempt in range(2):
                if not self.path.exists():
                    self._create()
                with open(self.path, "r+b") as f:
                    ok = os.fstat(f.fileno()).st_size == self.nbytes and f.read(len(_MAGIC)) == _MAGIC
                    if ok:
                        self._mmap = mmap.mmap(f.fileno(), self.nbytes)
                        self._buf = np.frombuffer(self._mmap, dtype=np.uint8)
                        break
                # damaged (e.g. truncated by a full disk): start over under the same name
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            else:
                raise OSError(f"cannot create the cache file {self.path}")
        return self._buf

    def __len__(self) -> int:
        return len(self.sizes)

    def ready(self, i: int) -> bool:
        """Whether record i has been stored."""
        return bool(self._open()[len(_MAGIC) + i])

    def get(self, i: int) -> np.ndarray | None:
        """A private copy of record i as flat uint8, or None when not stored yet."""
        buf = self._open()
        if not buf[len(_MAGIC) + i]:
            return None
        start = self.offsets[i]
        return buf[start:start + self.sizes[i]].copy()

    def put(self, i: int, record: np.ndarray) -> None:
        """Store record i (any array of exactly sizes[i] bytes), durably, then flag it ready."""
        data = np.ascontiguousarray(record).view(np.uint8).reshape(-1)
        if data.size != self.sizes[i]:
            raise ValueError(f"record {i} has {data.size} bytes, the cache expects {self.sizes[i]}")
        buf = self._open()
        start = int(self.offsets[i])
        buf[start:start + data.size] = data
        page = start // _PAGE * _PAGE
        self._mmap.flush(page, start + data.size - page)
        buf[len(_MAGIC) + i] = 1
