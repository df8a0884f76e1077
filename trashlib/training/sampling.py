"""Deterministic data order: every training item is a pure function of (seed, sample position).

Sample position p (counted over the whole run, across processes) is image `perm_e[p % n]` of epoch
e = p // n, where perm_e = default_rng((seed, e)).permutation(n), augmented with a generator seeded
from (seed, p) (and, with online copy & paste, pasted onto first by a generator of its own from
(seed, p)). A run resumed at step k therefore regenerates exactly the batches k+1..., whatever the
number of DataLoader workers. Micro-batch m of process r holds positions
(m * world + r) * batch_size + 0..batch_size-1.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trashlib.copy_paste import paste_rng
from trashlib.training.augment import item_seed, seed_transform


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The image order of one epoch."""
    return np.random.default_rng((int(seed), int(epoch))).permutation(n)


class TrainStream(Dataset):
    """Augmented (image, mask) tensors indexed by sample position (see the module docstring).

    `paste` (a `trashlib.copy_paste.Paster`, None: off) pastes onto each item before its augmentation, with
    the generator `paste_rng(seed, position)`: a stream of its own, so every augmentation draw stays the same.
    """

    def __init__(self, dataset, transform, *, seed: int, paste=None):
        self.dataset, self.transform, self.seed, self.paste = dataset, transform, seed, paste
        self.n = len(dataset)
        if self.n == 0:
            raise ValueError(f"training split is empty: {getattr(dataset, 'split', '?')}")
        self._epoch, self._perm = None, None

    def index(self, position: int) -> int:
        """Dataset index of sample `position`."""
        epoch, offset = divmod(int(position), self.n)
        if epoch != self._epoch:  # workers read positions in order: one permutation per epoch
            self._epoch, self._perm = epoch, epoch_permutation(self.seed, epoch, self.n)
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
