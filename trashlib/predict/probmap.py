"""One stored probability map: a compressed .npz that proves itself (written and read here, indexed by probs).

The .npz holds `probs`, the image's (C, H, W) probabilities quantised to uint8 with largest-remainder
rounding (each pixel's values sum to exactly 255: error < 1/255, no renormalisation drift) or float16,
beside `file_name`, the image's file name, and `store`, the `store_id` of the store it belongs to: both
plain numpy unicode arrays, so nothing is ever unpickled. `read_map` checks the name, the shape, the
dtype, the store and the sha1 of the file's bytes that the store's index recorded, reading the array's
header before its data, so a damaged, truncated, swapped or foreign file is a ValueError naming it
(a missing one a FileNotFoundError), never a wrong map. Measured on 512x512 maps of 11 classes: uint8
0.06-0.7 MB and 60 ms to compress, float16 1.3-4.3 MB and 260 ms; the sha1 about 1 ms per MB, and the
checks add about 5% to a load (mostly decompression and the conversion to float32).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from trashlib.io import atomic_open

DTYPES = ("uint8", "float16")


def quantize_probs(probs):
    """uint8 probabilities summing to exactly 255 per pixel (largest-remainder rounding).

    Each value is floor(255 p) plus one unit for the classes with the largest remainders, as many as
    the floors fall short of 255: error < 1/255 and no renormalisation drift. Runs on the tensor's
    device (a GPU then ships a quarter of the bytes); numpy in, numpy out.

    Shape:
        probs: (..., C, H, W) float summing to 1 over C; returns the same shape, uint8
    """
    as_numpy = isinstance(probs, np.ndarray)
    scaled = torch.as_tensor(probs).float().clamp(0, 1) * 255
    q = scaled.floor()
    deficit = (255 - q.sum(dim=-3, keepdim=True)).round().movedim(-3, -1)
    remainder = (scaled - q).movedim(-3, -1)  # classes last: sorting a strided axis cost twice as much
    order = remainder.argsort(dim=-1, descending=True, stable=True)  # ties: the lower class first
    gets = (torch.arange(remainder.shape[-1]) < deficit).to(torch.uint8)  # one unit for the first `deficit`
    q = q.to(torch.uint8) + torch.empty_like(gets).scatter_(-1, order, gets).movedim(-1, -3)
    return q.numpy() if as_numpy else q


def store_id(settings) -> str:
    """A short digest of a store's settings, recorded in each of its maps: a map knows which store it is of."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def save_probs(path: Path, probs: np.ndarray, *, file_name: str, store: str | None = None,
               quantize: bool = True) -> str:
    """Write one image's (C, H, W) probabilities, its file name and its `store_id` atomically; returns the
    file's sha1. uint8 maps are stored as given, floats quantised (or float16 when `quantize` is False).
    """
    probs = np.asarray(probs)
    if probs.dtype != np.uint8:
        probs = quantize_probs(probs) if quantize else probs.astype(np.float16)
    texts = {"file_name": np.array(str(file_name))} | ({} if store is None else {"store": np.array(store)})
    buf = io.BytesIO()
    np.savez_compressed(buf, probs=probs, **texts)  # the texts are unicode arrays: no pickle
    data = buf.getvalue()
    with atomic_open(path, "wb") as f:
        f.write(data)
    return hashlib.sha1(data).hexdigest()


# -- reading one map, checked ------------------------------------------------------------------------
def _header(f):
    """(shape, fortran_order, dtype) of an .npy stream, read without touching its data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version}")


def _text(z: zipfile.ZipFile, member: str) -> str:
    """The text of a 0-d unicode (or UTF-8 bytes) array in an open .npz, read without pickle."""
    with z.open(member) as f:
        shape, _, dtype = _header(f)
        if shape != () or dtype.kind not in "US" or not 0 < dtype.itemsize <= 1 << 16:
            raise TypeError(f"its {member[:-4]!r} is a {dtype} array of shape {shape}, not text")
        raw = f.read(dtype.itemsize + 1)
        if len(raw) != dtype.itemsize:
            raise EOFError(f"its {member[:-4]!r} is cut short")
    value = np.frombuffer(raw, dtype)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _parse(raw: bytes, shape: tuple | None, dtype: str | None, data: bool):
    """(stored name, store id or None, shape, dtype, array or None) of an .npz's bytes; the array is read
    only when its header matches `shape` and `dtype` (None: any), so a damaged header never allocates."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        members = set(z.namelist())
        if "probs.npy" not in members:
            raise KeyError("it holds no 'probs' array")
        if "file_name.npy" not in members:
            raise LookupError("it records no image name (written before version 3 of the store)")
        name = _text(z, "file_name.npy")
        store = _text(z, "store.npy") if "store.npy" in members else None
        with z.open("probs.npy") as f:
            got_shape, fortran, got_dtype = _header(f)
            if fortran or got_dtype.hasobject or got_dtype.name not in DTYPES or len(got_shape) != 3:
                raise TypeError(f"its 'probs' is a {got_dtype} array of shape {got_shape}, not (C, H, W) "
                                f"{' or '.join(DTYPES)}")
            array = None
            if data and (shape is None or got_shape == shape) and (dtype is None or got_dtype.name == dtype):
                nbytes = math.prod(got_shape) * got_dtype.itemsize
                buf = f.read(nbytes + 1)  # to the end: zipfile checks the CRC there
                if len(buf) != nbytes:
                    raise EOFError(f"its 'probs' holds {len(buf)} bytes, not {nbytes}")
                array = np.frombuffer(buf, got_dtype).reshape(got_shape)
    return name, store, got_shape, got_dtype.name, array


def read_map(path: str | os.PathLike, *, file_name: str, shape=None, dtype: str | None = None,
             sha1: str | None = None, store: str | None = None, data: bool = True,
             rebuild: str = "") -> tuple[np.ndarray | None, str]:
    """(stored array or None, sha1 of the file) of one map, after checking it is the map of `file_name`,
    of `shape` and `dtype`, and (when given) of the store `store` (`store_id`) with the recorded `sha1`.

    `data` False checks the name and the header only (with a sha1, that proves the file). A missing file
    is a FileNotFoundError, anything else wrong a ValueError; both name the file and the image, and end
    with `rebuild` (how to make it again).
    """
    path = Path(path)
    shape = None if shape is None else tuple(shape)
    what = f"{path} (image {file_name!r})"
    tail = f"; {rebuild}" if rebuild else ""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: the map is missing{tail}") from None
    except OSError as e:
        raise ValueError(f"{what}: cannot read the map: {e.strerror or e}{tail}") from None
    digest = hashlib.sha1(raw).hexdigest()
    try:
        name, got_store, got_shape, got_dtype, array = _parse(raw, shape, dtype, data)
    except MemoryError:
        raise
    except Exception as e:  # whatever a damaged zip or header raises (BadZipFile, zlib.error, EOFError, ...)
        reason = str(e.args[0]) if isinstance(e, LookupError) and e.args else str(e)
        raise ValueError(f"{what}: not a readable probability map ({type(e).__name__}: {reason}){tail}") from None
    # the specific faults first (a swapped or foreign map), then the checksum that catches any other change
    if name != file_name:
        raise ValueError(f"{what}: holds the map of image {name!r}, not of {file_name!r}{tail}")
    if shape is not None and got_shape != shape:
        raise ValueError(f"{what}: holds a map of shape {got_shape}, but the index records {shape}{tail}")
    if dtype is not None and got_dtype != dtype:
        raise ValueError(f"{what}: holds {got_dtype} probabilities, but the index records {dtype}{tail}")
    if store is not None and got_store != store:
        raise ValueError(f"{what}: a map of another store (its settings differ from this folder's){tail}")
    if sha1 is not None and digest != sha1:
        raise ValueError(f"{what}: damaged or replaced: its sha1 is not the one the index records "
                         f"({len(raw)} bytes){tail}")
    if array is not None and array.dtype != np.uint8 and not (np.isfinite(array).all() and (array >= 0).all()):
        raise ValueError(f"{what}: holds negative or non-finite probabilities{tail}")
    return array, digest


def as_probs(stored: np.ndarray) -> np.ndarray:
    """A stored map (uint8 or float16) as float32 probabilities re-normalised to sum to 1 over C."""
    p = stored.astype(np.float32) / 255 if stored.dtype == np.uint8 else stored.astype(np.float32)
    return p / np.maximum(p.sum(0, keepdims=True), 1e-12)


def load_probs(path: str | os.PathLike, *, file_name: str, shape=None, sha1: str | None = None) -> np.ndarray:
    """(C, H, W) float32 probabilities of one file, checked (`read_map`), re-normalised to sum to 1 over C."""
    return as_probs(read_map(path, file_name=file_name, shape=shape, sha1=sha1)[0])
