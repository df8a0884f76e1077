"""DenseCRF on stored probabilities.

`dense_crf` runs pydensecrf's fully connected CRF (Gaussian + bilateral pair terms) on one image's
soft probabilities at full resolution; `crf_index` applies it to every image of an index with a
process pool on every core and writes a new index; `sweep_crf` scores parameter settings on a
labelled split. CRF cleans noise but erases small objects: `trashlib.postprocess.consensus` gives them back.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from trashlib.classes import NUM_CLASSES
from trashlib.data import TrashDataset, read_image
from trashlib.io import check_writable
from trashlib.metrics import confusion_matrix, miou
from trashlib.postprocess.ensemble import aligned_items
from trashlib.predict.probmap import save_probs
from trashlib.predict.probs import ProbIndex, ProbWriter, derived_dir, stored_index
from trashlib.progress import shown

try:  # environment.yml and the `crf` extra install it (as pydensecrf2); said plainly where it is missing
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax
except ImportError:
    dcrf = unary_from_softmax = None


@dataclass(frozen=True)
class CRFParams:
    """One DenseCRF setting: Gaussian (sxy, compat), bilateral (sxy, srgb, compat), mean-field iterations.

    `gt_prob` None runs on the soft probabilities (`unary_from_softmax`); a number first replaces
    them by the argmax with that confidence (the rest spread evenly), as the peers did on hard labels.
    """

    sxy_gaussian: float = 3.0
    compat_gaussian: float = 3.0
    sxy_bilateral: float = 10.0
    srgb: float = 50.0
    compat_bilateral: float = 5.0
    iters: int = 5
    gt_prob: float | None = None

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "gt_prob" and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                        or v <= 0):
                raise ValueError(f"CRF {f.name} must be a positive finite number, got {v!r}")
        if int(self.iters) != self.iters:
            raise ValueError(f"CRF iters must be a whole number, got {self.iters!r}")
        if self.gt_prob is not None and not 0 < self.gt_prob < 1:
            raise ValueError(f"CRF gt_prob must lie in (0, 1) or be None, got {self.gt_prob!r}")

    @property
    def tag(self) -> str:
        """Folder tag, e.g. "g3-3_b10-50-5_i5" ("_gt0.7" added for the hard-label unary)."""
        tag = (f"g{self.sxy_gaussian:g}-{self.compat_gaussian:g}_b{self.sxy_bilateral:g}-{self.srgb:g}-"
               f"{self.compat_bilateral:g}_i{self.iters}")
        return tag + (f"_gt{self.gt_prob:g}" if self.gt_prob is not None else "")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# The peers' three settings (tuned on hard labels at 256: gt_prob 0.7, 0.7, 0.75), here on soft
# probabilities; their sxy are in pixels of a 256 map, so at 512 a sweep should also try them doubled.
PRESETS: dict[str, CRFParams] = {
    "peers-a": CRFParams(3, 3, 10, 50, 5, 40),   # "+0.02-0.03 on all models"
    "peers-b": CRFParams(3, 3, 30, 5, 5, 45),    # +-0 on a strong model
    "peers-c": CRFParams(5, 10, 10, 10, 5, 20),
}


def crf_preset(name: str) -> CRFParams:
    """The named preset; an unknown name raises a ValueError listing the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown CRF preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


def _require_pydensecrf() -> None:
    if dcrf is None:
        raise ImportError("DenseCRF needs pydensecrf: pip install 'trashlib[crf]' (or pydensecrf2==1.1, as "
                          "environment.yml pins it)")


def dense_crf(probs, image, *, sxy_gaussian: float = 3.0, compat_gaussian: float = 3.0, sxy_bilateral: float = 10.0,
              srgb: float = 50.0, compat_bilateral: float = 5.0, iters: int = 5, gt_prob: float | None = None):
    """Mean-field DenseCRF of one image's probabilities (Potts Gaussian + bilateral pair terms).

    Shape:
        probs: (C, H, W) float summing to 1 over C; image: (H, W, 3) uint8 RGB
        returns: (C, H, W) float32 summing to 1 over C
    """
    _require_pydensecrf()
    c, h, w = probs.shape
    if image.shape != (h, w, 3):
        raise ValueError(f"image of shape {image.shape} for probabilities of shape {probs.shape}")
    probs = np.asarray(probs, dtype=np.float32)
    if gt_prob is not None:
        probs = np.where(np.arange(c)[:, None, None] == probs.argmax(0), np.float32(gt_prob),
                         np.float32((1 - gt_prob) / (c - 1)))
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=sxy_gaussian, compat=compat_gaussian)
    crf.addPairwiseBilateral(sxy=sxy_bilateral, srgb=srgb, rgbim=np.ascontiguousarray(image), compat=compat_bilateral)
    return np.asarray(crf.inference(int(iters)), dtype=np.float32).reshape(c, h, w)


# -- over an index, on every core ------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(index_path: str, images: list, single_thread: bool = True) -> None:
    if single_thread:  # one process per core already: torch's quantisation must not start a thread team
        torch.set_num_threads(1)
    _WORKER.update(index=ProbIndex(index_path), images=images)


def _crf_job(job):
    """(job, result) of one (image, params, (map path, store id) or None, key) job: None when stored, else the
    label map."""
    j, params, store, _ = job
    path, width, height = _WORKER["images"][j]
    probs = dense_crf(_WORKER["index"].load(j), read_image(path, width=width, height=height), **params)
    if store is None:
        return job, probs.argmax(0).astype(np.uint8)
    # here, in parallel, not in the parent: no 11 MB maps through pipes (the writer checks them on close)
    save_probs(Path(store[0]), probs, file_name=_WORKER["index"].items[j]["file_name"], store=store[1])
    return job, None


def _run_jobs(index, dataset, jobs, *, workers: int | None, progress: bool, desc: str, subset: bool = True):
    """Yield (job, result) in job order, from a process pool (or in-process for one worker)."""
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    index.check_split(dataset, subset=subset)  # the split's images, at their size: named here, not in a worker
    by_name = {info["file_name"]: info for info in dataset.image_infos}
    images = [(str(dataset.root / n), by_name[n]["width"], by_name[n]["height"]) for n in index.file_names]
    with tqdm(total=len(jobs), disable=not shown(progress), desc=desc) as bar:
        if workers <= 1 or len(jobs) <= 1:
            _init_worker(str(index.path), images, single_thread=False)
            for result in map(_crf_job, jobs):
                bar.update()
                yield result
            return
        # pydensecrf is single-threaded: one process per core. forkserver: workers forked from a clean
        # process that imported this module once, safe when the caller holds threads (torch, Jupyter)
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
        context = multiprocessing.get_context(method)
        if method:
            context.set_forkserver_preload([__name__])
        pool = context.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(str(index.path), images))
        with pool:
            for result in pool.imap(_crf_job, jobs):
                bar.update()
                yield result


def crf_index(index, data_root=None, split: str = "val", params: CRFParams = CRFParams(), *,
              workers: int | None = None, out_dir=None, force: bool = False, progress: bool | None = None) -> ProbIndex:
    """DenseCRF on every image of an index (pool of `workers` processes, default every core), as a new index.

    Written beside the input's folder in the store, as <input folder>_crf-<params.tag>; reused when
    an identical one exists.
    """
    _require_pydensecrf()  # here, not in every worker
    dataset = TrashDataset(data_root, split=split)
    settings = {"kind": "crf", "split": split, "data_root": str(dataset.root), "split_sha1": dataset.sha1,
                "input": {"folder": str(Path(index.path).resolve()), "settings": index.settings},
                "params": params.as_dict()}
    folder = derived_dir(index, f"crf-{params.tag}", out_dir)
    done = None if force else stored_index(folder, settings)
    if done is not None:
        return done
    check_writable(folder, what=f"the CRF output to {folder}")
    writer = ProbWriter(folder, aligned_items([index]), settings, force=force)
    jobs = [(j, params.as_dict(), (str(folder / writer.items[j]["path"]), writer.store), None) for j in writer.todo]
    for _ in _run_jobs(index, dataset, jobs, workers=workers, progress=progress, desc="dense CRF"):
        pass  # the workers store the maps where the writer expects them
    return writer.close()


def crf_grid(base: CRFParams = CRFParams(), **values) -> list[CRFParams]:
    """Every combination of the given field values over `base`, e.g. crf_grid(srgb=[5, 50], iters=[5, 10])."""
    names = list(values)
    return [dataclasses.replace(base, **dict(zip(names, combo))) for combo in itertools.product(*values.values())]


def sweep_crf(index, data_root=None, split: str = "val", grid=None, *, workers: int | None = None,
              subset: bool = False, progress: bool | None = None) -> pd.DataFrame:
    """Val mIoU of the input ("input" row) and of each CRF setting of `grid` (CRFParams or preset names).

    Nothing is stored: workers return label maps, scored as they arrive. An index that misses images of
    the split is refused unless `subset` asks for a part of it on purpose.
    """
    grid = [crf_preset(g) if isinstance(g, str) else g for g in (grid if grid is not None else PRESETS.values())]
    _require_pydensecrf()
    dataset = TrashDataset(data_root, split=split)
    if not dataset.has_masks:
        raise ValueError(f"{dataset.path}: split {split!r} has no annotations to sweep on")
    by_name = {n: i for i, n in enumerate(dataset.file_names)}
    cms = np.zeros((len(grid) + 1, NUM_CLASSES, NUM_CLASSES), np.int64)
    jobs = [(j, p.as_dict(), None, s) for s, p in enumerate(grid, start=1) for j in range(len(index))]
    for (j, _, _, s), pred in _run_jobs(index, dataset, jobs, workers=workers, progress=progress, desc="CRF sweep",
                                        subset=subset):
        cms[s] += confusion_matrix(pred, dataset.load_mask(by_name[index.file_names[j]]))
    for j, name in enumerate(index.file_names):
        cms[0] += confusion_matrix(index.argmax(j), dataset.load_mask(by_name[name]))
    rows = [{"setting": "input", "val_mIoU": miou(cms[0])[0]}]
    rows += [{"setting": p.tag, **p.as_dict(), "val_mIoU": miou(cm)[0]} for p, cm in zip(grid, cms[1:])]
    return pd.DataFrame(rows)


# -- the consensus overwrite ------------------------------------------------------------------------
