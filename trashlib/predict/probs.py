"""The probability store: per-image class probabilities on disk, written once, read by every consumer.

Predictions of a run (`inference.predict`), ensembles and CRF output (notebook 05) are all stored
the same way, under data/interim/probs/<source>/<data>_<split>-<tag>/: one compressed NNNNN.npz per
image, `settings.json` (what made them) first and `index.json` (the items) last, so a folder with an
index is complete. `ProbIndex` reads one: len, iteration of (file_name, probs), load(i), argmax(i);
evaluation, submission and notebook 07 read any index alike.

Each map proves itself (`trashlib.predict.probmap`: the file format): its .npz holds the image's file name and
the store's `store_id` beside the probabilities, and index.json records each map's shape and the sha1
of its bytes. Loading a map checks them, so a damaged, truncated, swapped or foreign file is an error
naming the file, its image and how to rebuild the store (`rebuild_hint`), never a wrong number; a
complete store is reused only when every map checks out, and a writer that resumes reads every map it
keeps and makes a damaged one again. An index is scored against a split only where it covers the split
(`ProbIndex.check_split`), unless the caller asks for a subset.
"""
from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trashlib import paths
from trashlib.io import read_json, write_json
from trashlib.predict.probmap import DTYPES, as_probs, read_map, save_probs, store_id

INDEX_FILE, SETTINGS_FILE = "index.json", "settings.json"
VERSION = 3  # 3: maps hold their image's name, index.json their sha1 (2 had neither)
_MAP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\.npz")  # one name inside the folder: no "/", "..", "/abs"
_SHA1 = re.compile(r"[0-9a-f]{40}")
_MAX_VALUES = 1 << 31  # classes x height x width of one map (11 x 512 x 512 is 2.9 M)


# -- how to rebuild a store ----------------------------------------------------------------------------
def _predict_command(settings: dict) -> str | None:
    """The `python -m trashlib predict` command that made a run's predictions, or None when none can."""
    model, tta = settings.get("model"), settings.get("tta")
    if not isinstance(model, dict) or not isinstance(model.get("run"), str) or not isinstance(tta, dict):
        return None
    if settings.get("max_images") is not None or not all(isinstance(settings.get(k), str)
                                                          for k in ("data_root", "split")):
        return None
    run = Path(paths.RUNS_DIR) / model["run"]
    if not (run / "config.yaml").is_file():  # a run kept elsewhere: its folder is not known
        return None
    args = ["python", "-m", "trashlib", "predict", str(run),
            "--data", settings["data_root"], "--split", settings["split"]]
    if not tta.get("hflip"):
        args += ["--tta", "none"]
    scales = tta.get("scales")
    if isinstance(scales, list) and scales != [1.0]:
        args += ["--scales", *(f"{s:g}" if isinstance(s, (int, float)) else str(s) for s in scales)]
    if isinstance(tta.get("window"), list):
        args += ["--window", *(str(v) for v in tta["window"])]
    if "best" in str(model.get("checkpoint", "")):
        args += ["--which", "best"]
    if settings.get("quantize") is False:
        args.append("--float16")
    return shlex.join([*args, "--force"])


def rebuild_hint(folder: str | os.PathLike, settings) -> str:
    """How to rebuild the store in `folder`, composed from its settings where they say what made it."""
    settings = settings if isinstance(settings, dict) else {}
    command = _predict_command(settings)
    if command is not None:
        return f"rebuild it with `{command}`"
    kind, model = settings.get("kind"), settings.get("model")
    if kind in ("ensemble", "crf", "overwrite"):
        inputs = settings.get("inputs") if isinstance(settings.get("inputs"), list) else []
        inputs = [settings.get("input"), settings.get("crf"), *inputs]  # crf: "input"; overwrite: "crf", "inputs"
        folders = [str(x["folder"] if isinstance(x, dict) else x) for x in inputs
                   if isinstance(x, str) or isinstance(x, dict) and "folder" in x]
        made = {"ensemble": "the ensemble", "crf": "DenseCRF", "overwrite": "the consensus overwrite"}[kind]
        what = f"{made} of {', '.join(folders)}" if folders else made
    elif isinstance(model, dict) and model.get("run"):
        what = f"predict() of run {model['run']}" + (f" with max_images={settings['max_images']}"
                                                     if settings.get("max_images") is not None else "")
    elif isinstance(model, dict) and model.get("name"):
        what = f"predict() of model {model['name']}"
    else:
        what = None
    return f"delete {folder} and rerun the command that made it" + (f" ({what})" if what else "")


# -- the index --------------------------------------------------------------------------------------
def store_dir(source: str, data_root: str | os.PathLike, split: str, tag: str) -> Path:
    """Where the maps of `source` (a run name, an ensemble name) for one split of a data root live."""
    name = f"{Path(data_root).name}_{split}-{tag}"
    return Path(paths.PROBS_DIR) / re.sub(r"[^A-Za-z0-9._-]+", "-", source) / re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def stored_index(folder: str | os.PathLike, settings: dict) -> "ProbIndex | None":
    """The complete index in `folder` if it was made with `settings` and every map checks out, else None.

    Each map's sha1, image name and shape are checked (its probabilities are not decompressed), so a
    store with a damaged map is made again rather than trusted.
    """
    if not (Path(folder) / INDEX_FILE).is_file():
        return None
    try:
        index = ProbIndex(folder)
        if index.settings != settings:
            return None
        index.verify()
    except (ValueError, FileNotFoundError):
        return None
    return index


def derived_dir(index, suffix: str, out_dir=None) -> Path:
    """The folder of an index derived from `index` (CRF, overwrite): beside it, or under `out_dir`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{Path(index.path).name}_{suffix}")
    return (Path(paths.PROBS_DIR) / Path(index.path).parent.name if out_dir is None else Path(out_dir)) / name


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _item_problem(item) -> str | None:
    """What is wrong with one entry of index.json's items, or None."""
    if not isinstance(item, dict):
        return f"is a {type(item).__name__}, not a mapping"
    name, path, shape, sha1, image_id = (item.get(k) for k in ("file_name", "path", "shape", "sha1", "image_id"))
    if not isinstance(name, str) or not name:
        return f"file_name {name!r} is not a file name"
    if not isinstance(path, str) or not _MAP_NAME.fullmatch(path):
        return f"path {path!r} is not the name of a .npz file in the folder"
    if (not isinstance(shape, list) or len(shape) != 3 or not all(_whole(v) and v >= 1 for v in shape)
            or math.prod(shape) > _MAX_VALUES):
        return f"shape {shape!r} is not [classes, height, width] of positive whole numbers"
    if not isinstance(sha1, str) or not _SHA1.fullmatch(sha1):
        return f"sha1 {sha1!r} is not 40 hexadecimal digits"
    if not (_whole(image_id) or isinstance(image_id, str)):
        return f"image_id {image_id!r} is neither a whole number nor text"
    return None


class ProbIndex:
    """The probability maps of one split: len, iteration of (file_name, probs), load(i), argmax(i).

    Opening checks index.json (version, settings, every item's name, file, shape and sha1); loading a
    map checks the map (`read_map`).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        where = self.path / INDEX_FILE
        if not where.is_file():
            raise FileNotFoundError(f"{self.path} holds no complete probability maps (no {INDEX_FILE})")
        self.meta = read_json(where)
        meta = self.meta if isinstance(self.meta, dict) else {}
        if not isinstance(meta.get("items"), list) or not isinstance(meta.get("settings"), dict):
            raise ValueError(f"{where}: not a probability index (needs 'settings' and an 'items' list)")
        self.settings, self.items = meta["settings"], meta["items"]
        self.rebuild = rebuild_hint(self.path, self.settings)
        version = meta.get("version")
        if not _whole(version) or version != VERSION:
            older = _whole(version) and version < VERSION
            raise ValueError(f"{where}: a probability index of version {version!r}, not {VERSION}"
                             + (" (from before the store checked its maps: each map's image name and sha1)"
                                if older else "") + f"; {self.rebuild}")
        self.dtype = meta.get("dtype")
        if self.dtype not in DTYPES:
            raise ValueError(f"{where}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}; {self.rebuild}")
        for k, item in enumerate(self.items):
            problem = _item_problem(item)
            if problem:
                raise ValueError(f"{where}: items[{k}]: {problem}; {self.rebuild}")
        for key in ("file_name", "path"):
            values = [it[key] for it in self.items]
            if len(set(values)) != len(values):
                twice = next(v for v in values if values.count(v) > 1)
                raise ValueError(f"{where}: {key} {twice!r} appears in several items; {self.rebuild}")

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"ProbIndex({str(self.path)!r}, {len(self)} images, {self.settings.get('split')})"

    @property
    def file_names(self) -> list[str]:
        return [it["file_name"] for it in self.items]

    @property
    def image_ids(self) -> list:
        return [it["image_id"] for it in self.items]

    def map_path(self, i: int) -> Path:
        """The file of image i's map."""
        return self.path / self.items[i]["path"]

    def _read(self, i: int, *, data: bool = True):
        it = self.items[i]
        return read_map(self.path / it["path"], file_name=it["file_name"], shape=it["shape"], dtype=self.dtype,
                        sha1=it["sha1"], data=data, rebuild=self.rebuild)[0]

    def load(self, i: int) -> np.ndarray:
        """Probabilities of image i as (C, H, W) float32 summing to 1 (the map checked first)."""
        return as_probs(self._read(i))

    def argmax(self, i: int) -> np.ndarray:
        """Label map of image i as (H, W) uint8."""
        return self._read(i).argmax(0).astype(np.uint8)

    def verify(self) -> None:
        """Check every map's sha1, image name and shape (without decompressing it); raise on the first fault."""
        for i in range(len(self)):
            self._read(i, data=False)

    def check_split(self, dataset, *, subset: bool = False) -> int:
        """Check this index against a split (a TrashDataset): every image is the split's, every map has its
        image's height and width, and (unless `subset`) every image of the split has a map. Returns the
        split's number of images."""
        infos = {info["file_name"]: info for info in dataset.image_infos}
        for it in self.items:
            info = infos.get(it["file_name"])
            if info is None:
                raise ValueError(f"{self.path}: predictions for images not in the split {dataset.path}, "
                                 f"e.g. {it['file_name']!r}")
            if tuple(it["shape"][1:]) != (info["height"], info["width"]):
                raise ValueError(f"{self.path / it['path']} (image {it['file_name']!r}): a map of shape "
                                 f"{tuple(it['shape'])} for an image of {info['height']}x{info['width']} "
                                 f"in {dataset.path}; {self.rebuild}")
        if not subset and len(self.items) < len(infos):
            have = set(self.file_names)
            missing = next(n for n in infos if n not in have)
            raise ValueError(f"{self.path}: covers {len(have)} of the split's {len(infos)} images; e.g. {missing!r} "
                             f"is missing (score a part of a split only on purpose: subset=True)")
        return len(infos)

    def __iter__(self):
        for i, item in enumerate(self.items):
            yield item["file_name"], self.load(i)


# -- writing ----------------------------------------------------------------------------------------
class ProbWriter:
    """Writes the maps of one index: `todo`, `write(i, probs)`, `close() -> ProbIndex`.

    `items` are {"image_id", "file_name", "shape"} dicts in split order. A folder holding the same
    settings is resumed: every map found there is read and checked first (image name, shape, and the
    sha1 index.json recorded, or the whole map when there is none), and a damaged one is made again.
    Other settings, an index of an older version, or `force` start it afresh - but only a folder this
    class made (it has settings.json) is ever cleared. Compression runs in two background threads
    (zlib releases the GIL), overlapping the caller's next computation; at most a few maps wait in memory.
    Maps that others wrote where the writer expects them (CRF workers) are read and checked by `close`.
    """

    def __init__(self, folder: str | os.PathLike, items: list[dict], settings: dict, *, quantize: bool = True,
                 force: bool = False):
        self.folder, self.settings, self.quantize = Path(folder), settings, quantize
        self.dtype = "uint8" if quantize else "float16"
        self.items = [{k: v for k, v in it.items() if k != "sha1"} | {"path": f"{i:05d}.npz"}
                      for i, it in enumerate(items)]
        names = [it["file_name"] for it in self.items]
        for it in self.items:
            if not isinstance(it.get("shape"), (list, tuple)) or len(it["shape"]) != 3:
                raise ValueError(f"{self.folder}: item {it.get('file_name')!r} needs a shape [classes, height, width]")
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"{self.folder}: two items name the image {twice!r}")
        self.rebuild, self.store = rebuild_hint(self.folder, settings), store_id(settings)
        self._sha1: list[str | None] = [None] * len(self.items)
        saved, index_file = self.folder / SETTINGS_FILE, self.folder / INDEX_FILE
        if self.folder.exists() and any(self.folder.iterdir()):
            if not saved.exists():
                raise FileExistsError(f"{self.folder} holds files trashlib did not write; choose another folder")
            recorded = self._recorded()
            if force or self._read_settings(saved) != settings or recorded is False:
                shutil.rmtree(self.folder)
            else:
                self._resume(recorded or {})
                if all(self._sha1) and recorded and len(recorded) == len(self.items):
                    self.complete, self.todo = True, []
                    return
                index_file.unlink(missing_ok=True)  # the folder is incomplete until close() writes it again
        self.complete = False
        write_json(saved, settings)
        self.todo = [i for i, sha1 in enumerate(self._sha1) if sha1 is None]
        self._pool = ThreadPoolExecutor(max_workers=2)
        self._pending = []

    @staticmethod
    def _read_settings(path: Path):
        try:
            return read_json(path)
        except (ValueError, FileNotFoundError):
            return None  # damaged: not these settings

    def _recorded(self) -> dict | bool | None:
        """{path: sha1} of the items an index.json of this version, settings and items records; False for an
        index of an older version (the folder is cleared); None when there is no usable index."""
        try:
            index = ProbIndex(self.folder)
        except FileNotFoundError:
            return None
        except ValueError:
            meta = self._read_settings(self.folder / INDEX_FILE)
            old = isinstance(meta, dict) and meta.get("version") != VERSION
            return False if old else None
        if index.settings != self.settings or index.dtype != self.dtype:
            return None
        mine = {(it["path"], it["file_name"], tuple(it["shape"])) for it in self.items}
        if any((it["path"], it["file_name"], tuple(it["shape"])) not in mine for it in index.items):
            return None
        return {it["path"]: it["sha1"] for it in index.items}

    def _check(self, i: int, sha1: str | None, problems: list) -> str | None:
        """The sha1 of map i when it exists and checks out (read whole without a recorded sha1), else None
        (a map that does not check out is deleted, and why is added to `problems`)."""
        it = self.items[i]
        path = self.folder / it["path"]
        if not path.exists():
            return None
        try:
            _, digest = read_map(path, file_name=it["file_name"], shape=it["shape"], dtype=self.dtype,
                                 sha1=sha1, store=self.store, data=sha1 is None)
        except (ValueError, FileNotFoundError) as e:
            problems.append(str(e))
            path.unlink(missing_ok=True)
            return None
        return digest

    def _resume(self, recorded: dict) -> None:
        problems = []
        for i, it in enumerate(self.items):
            self._sha1[i] = self._check(i, recorded.get(it["path"]), problems)
        if problems:
            warnings.warn(f"{len(problems)} of the {len(self.items)} maps in {self.folder} did not check out and "
                          f"are made again, e.g. {problems[0]}", stacklevel=3)

    def write(self, i: int, probs) -> None:
        """Store image i's (C, H, W) probabilities (float, or uint8 already quantised)."""
        if self.complete:
            raise RuntimeError(f"{self.folder} is complete; nothing to write")
        it = self.items[i]
        if tuple(np.shape(probs)) != tuple(it["shape"]):
            raise ValueError(f"{self.folder / it['path']} (image {it['file_name']!r}): a map of shape "
                             f"{tuple(np.shape(probs))} for an image recorded as {tuple(it['shape'])}")
        self._sha1[i] = None
        self._pending.append((i, self._pool.submit(save_probs, self.folder / it["path"], probs,
                                                   file_name=it["file_name"], store=self.store,
                                                   quantize=self.quantize)))
        while len(self._pending) > 4:
            self._finish(*self._pending.pop(0))

    def _finish(self, i: int, future) -> None:
        self._sha1[i] = future.result()

    def close(self) -> ProbIndex:
        """Wait for the writes, check maps written by others, then write index.json: the folder is complete."""
        if not self.complete:
            while self._pending:
                self._finish(*self._pending.pop(0))
            self._pool.shutdown()
            for i, it in enumerate(self.items):
                if self._sha1[i] is None and (self.folder / it["path"]).exists():
                    _, self._sha1[i] = read_map(self.folder / it["path"], file_name=it["file_name"],
                                                shape=it["shape"], dtype=self.dtype, store=self.store,
                                                rebuild=self.rebuild)
            missing = [it["path"] for i, it in enumerate(self.items) if self._sha1[i] is None]
            if missing:
                raise RuntimeError(f"{self.folder}: {len(missing)} maps were never written, e.g. {missing[0]}")
            items = [{**it, "sha1": sha1} for it, sha1 in zip(self.items, self._sha1)]
            write_json(self.folder / INDEX_FILE, {"version": VERSION, "settings": self.settings, "dtype": self.dtype,
                                                  "items": items})
            self.complete = True
        return ProbIndex(self.folder)
