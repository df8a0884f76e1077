"""Deterministic data order: every training item is a pure function of (seed, sample position).

Sample position p (counted over the whole run, across processes) is image `perm_e[p % n]` of epoch
e = p // n, where perm_e = default_rng((seed, e)).permutation(n), augmented with a generator seeded
from (seed, p) (and, with online copy & paste, pasted onto first by a generator of its own from
(seed, p)). With repeat factors (`repeat_factors`, LVIS repeat factor sampling) epoch e instead lists
image i floor(r_i) times plus once more with probability frac(r_i), drawn from (seed, e, 1), shuffled;
epochs then differ in length and position p falls in the epoch whose cumulative length passes it.
A run resumed at step k therefore regenerates exactly the batches k+1..., whatever the
number of DataLoader workers. Micro-batch m of process r holds positions
(m * world + r) * batch_size + 0..batch_size-1.
"""
from __future__ import annotations

import bisect

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trashlib.classes import IGNORE_INDEX
from trashlib.data import TrashDataset
from trashlib.data.copy_paste import paste_rng
from trashlib.data.sources import ConcatSource, build_train_dataset
from trashlib.memo import remember
from trashlib.training.augment import item_seed, seed_transform


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The image order of one epoch."""
    return np.random.default_rng((int(seed), int(epoch))).permutation(n)


def repeat_factors(dataset, threshold: float) -> np.ndarray:
    """Per-image repeat factors of LVIS repeat factor sampling (Gupta et al., 2019).

    r_i = max(1, max over the object classes c in image i of sqrt(threshold / f_c)), where f_c is the
    fraction of the images whose label map holds class c (Background and ignored pixels do not count).
    An image of common classes only keeps r = 1.

    Shape:
        returns: (len(dataset),) float64, every value >= 1.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"repeat_threshold must be in (0, 1], got {threshold}")
    present = _class_presence(dataset)[:, :IGNORE_INDEX + 1].copy()
    present[:, [0, IGNORE_INDEX]] = False
    freq = present.mean(axis=0)
    per_class = np.where(freq > 0, np.sqrt(threshold / np.maximum(freq, 1e-12)), 1.0)
    return np.maximum(1.0, (present * per_class).max(axis=1))


# (root, split, sha1) of a TrashDataset -> which label values each of its label maps holds. Its label
# maps follow from the JSON's bytes, and a notebook's runs share the split, so each reads them once.
_PRESENCE: dict[tuple, np.ndarray] = {}
_KEEP_PRESENCE = 4


def _class_presence(dataset) -> np.ndarray:
    """(len(dataset), 256) bool: whether label value v occurs in label map i."""
    if isinstance(dataset, ConcatSource):
        return np.concatenate([np.zeros((0, 256), bool), *(_class_presence(s) for s in dataset.sources)])
    key = (str(dataset.root), dataset.split, dataset.sha1) if isinstance(dataset, TrashDataset) else None
    if key in _PRESENCE:
        return _PRESENCE[key]
    present = np.zeros((len(dataset), 256), bool)
    for i in range(len(dataset)):
        mask = dataset.load_mask(i)
        if mask is None:
            raise ValueError(f"training item {i} ({dataset.file_names[i]}) has no mask")
        present[i] = np.bincount(mask.ravel(), minlength=256) > 0  # a count per uint8 value: no sort (np.unique)
    return present if key is None else remember(_PRESENCE, key, present, keep=_KEEP_PRESENCE)


def sampling_factors(data, cfg) -> np.ndarray | None:
    """Per-image draws per epoch of a config's training data (None: every image once).

    The repeat factors of `cfg.repeat_threshold` (`repeat_factors`), with the images of `cfg.extra_train`'s
    sets (in `data`, a ConcatSource, right after the train split) drawn `cfg.extra_repeat` times as often.

    Shape:
        returns: (len(data),) float64, every value >= 1, or None
    """
    repeat = None if cfg.repeat_threshold is None else repeat_factors(data, cfg.repeat_threshold)
    if cfg.extra_repeat == 1 or not cfg.extra_train:
        return repeat
    sources = data.sources  # build_train_dataset: the train split, then extra_train's sets, then an offline set
    start = len(sources[0])
    end = start + sum(len(s) for s in sources[1:1 + len(cfg.extra_train)])
    repeat = np.ones(len(data)) if repeat is None else repeat
    repeat[start:end] *= cfg.extra_repeat
    return repeat


def repeat_epoch(seed: int, epoch: int, factors: np.ndarray) -> np.ndarray:
    """The image order of one epoch under repeat factors: stochastic rounding, then a shuffle."""
    rng = np.random.default_rng((int(seed), int(epoch), 1))
    whole = np.floor(factors)
    counts = (whole + (rng.random(len(factors)) < factors - whole)).astype(np.int64)
    return rng.permutation(np.repeat(np.arange(len(factors)), counts))


class TrainStream(Dataset):
    """Augmented (image, mask) tensors indexed by sample position (see the module docstring).

    `paste` (a `trashlib.data.copy_paste.Paster`, None: off) pastes onto each item before its augmentation, with
    the generator `paste_rng(seed, position)`: a stream of its own, so every augmentation draw stays the same.
    """

    def __init__(self, dataset, transform, *, seed: int, paste=None, repeat: np.ndarray | None = None):
        self.dataset, self.transform, self.seed, self.paste = dataset, transform, seed, paste
        self.n = len(dataset)
        if self.n == 0:
            raise ValueError(f"training split is empty: {getattr(dataset, 'split', '?')}")
        if repeat is not None:
            repeat = np.asarray(repeat, np.float64)
            if repeat.shape != (self.n,) or not np.all(np.isfinite(repeat)) or repeat.min() < 1:
                raise ValueError(f"repeat factors must be {self.n} finite numbers >= 1, got shape {repeat.shape}")
        self.repeat = repeat
        self._epoch, self._perm = None, None
        self._ends: list[int] = []  # repeat factors: cumulative epoch lengths, grown as positions need them

    def _epoch_of(self, position: int) -> tuple[int, int]:
        if self.repeat is None:
            return divmod(position, self.n)
        while not self._ends or self._ends[-1] <= position:
            length = len(repeat_epoch(self.seed, len(self._ends), self.repeat))
            self._ends.append((self._ends[-1] if self._ends else 0) + length)
        epoch = bisect.bisect_right(self._ends, position)
        return epoch, position - (self._ends[epoch - 1] if epoch else 0)

    def index(self, position: int) -> int:
        """Dataset index of sample `position`."""
        epoch, offset = self._epoch_of(int(position))
        if epoch != self._epoch:  # workers read positions in order: one permutation per epoch
            self._epoch = epoch
            self._perm = (epoch_permutation(self.seed, epoch, self.n) if self.repeat is None
                          else repeat_epoch(self.seed, epoch, self.repeat))
        return int(self._perm[offset])

    def __getitem__(self, position: int):
        i = self.index(position)
        image, mask = self.dataset[i]
        if mask is None:
            raise ValueError(f"training item {i} ({self.dataset.file_names[i]}) has no mask")
        if self.paste is not None:  # before augmenting: pasted objects are rescaled, cropped, flipped with the rest
            image, mask = self.paste(image, mask, paste_rng(self.seed, position))
        seed_transform(self.transform, item_seed(self.seed, position))
        out = self.transform(image=image, mask=mask)
        image = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1)))
        return image, torch.from_numpy(np.ascontiguousarray(out["mask"]))


class PositionSampler(Sampler):
    """Positions of micro-batches start..end-1 for process `rank` of `world`."""

    def __init__(self, start: int, end: int, *, batch_size: int, rank: int = 0, world: int = 1):
        self.start, self.end, self.batch_size, self.rank, self.world = start, end, batch_size, rank, world

    def __iter__(self):
        for m in range(self.start, self.end):
            base = (m * self.world + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)

    def __len__(self) -> int:
        return max(0, self.end - self.start) * self.batch_size


def train_loader(stream: TrainStream, *, start: int, end: int, batch_size: int, rank: int = 0, world: int = 1,
                 workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Micro-batches start..end-1 of uint8 images (N,3,S,S) and uint8 masks (N,S,S)."""
    return DataLoader(stream, batch_size=batch_size,
                      sampler=PositionSampler(start, end, batch_size=batch_size, rank=rank, world=world),
                      # no cv2.setNumThreads in workers: tearing down a thread pool inherited through
                      # fork deadlocks (measured); OpenCV itself is safe to call in forked workers
                      num_workers=workers, pin_memory=pin_memory, prefetch_factor=4 if workers else None,
                      # an explicit generator keeps the loader from drawing on the global torch RNG,
                      # which is part of the resumable state
                      generator=torch.Generator().manual_seed(0))


def draw_counts(stream: TrainStream, start: int, end: int) -> np.ndarray:
    """How many times each image of `stream`'s dataset is drawn at sample positions start..end-1.

    Shape:
        returns: (len(stream.dataset),) int64
    """
    return np.bincount([stream.index(p) for p in range(start, end)], minlength=stream.n).astype(np.int64)


def extra_draws(cfg, *, seeds=None, processes: int = 1) -> np.ndarray:
    """How many times a run of `cfg` from its first step draws each image of its `extra_train` sets, per seed.

    What a short arm gives its technique's data: a pseudo-label student that draws each pseudo-labelled
    image less than once on average has not trained on its set. Counted from the data order itself
    (positions 0 .. steps x batch x accumulation x processes), for each of `seeds` (None: `cfg.seed`); the
    data and its repeat factors are read once for all of them.

    Shape:
        returns: (seeds, images of the extra sets) int64, the images in their order
    """
    seeds = [cfg.seed] if seeds is None else list(seeds)
    if not cfg.extra_train:
        return np.zeros((len(seeds), 0), np.int64)
    data = build_train_dataset(cfg)
    repeat = sampling_factors(data, cfg)
    start = len(data.sources[0])
    end = start + sum(len(s) for s in data.sources[1:1 + len(cfg.extra_train)])
    positions = cfg.steps * cfg.grad_accum * cfg.batch_size * processes
    return np.stack([draw_counts(TrainStream(data, None, seed=seed, repeat=repeat), 0, positions)[start:end]
                     for seed in seeds])
