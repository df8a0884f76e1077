"""The training set of a config: the COCO split plus any label-map sets (extra sets, the offline copy-paste
set), as one dataset."""
from __future__ import annotations

import bisect
import hashlib
from pathlib import Path

import numpy as np

from trashlib.data.dataset import TrashDataset
from trashlib.data.labelmaps import INDEX_FILE, LabelMapDataset
from trashlib.data.leakage import check_no_held_out, check_train_split
from trashlib.data.pasted import materialise_pasted


class ConcatSource:
    """Several datasets read as one: `load_image`, `load_mask`, `file_names`, `len`, `ds[i]`."""

    def __init__(self, sources):
        self.sources = list(sources)
        self.split = "+".join(str(s.split) for s in self.sources)
        self._ends = np.cumsum([len(s) for s in self.sources]).tolist()
        self.file_names = [name for s in self.sources for name in s.file_names]

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def _locate(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        k = bisect.bisect_right(self._ends, i)
        return self.sources[k], i - (self._ends[k - 1] if k else 0)

    def load_image(self, i: int) -> np.ndarray:
        source, j = self._locate(i)
        return source.load_image(j)

    def load_mask(self, i: int) -> np.ndarray | None:
        source, j = self._locate(i)
        return source.load_mask(j)

    def __getitem__(self, i: int):
        source, j = self._locate(i)
        return source[j]


def check_train_sources(cfg) -> list[LabelMapDataset]:
    """Refuse training data that would inflate the val score or fail mid-run; returns the extra sets.

    The train split shares no image with the val split, and each extra set holds no val or test image
    (`data.leakage`) and only label maps that can be trained on (`LabelMapDataset.verify`). Called before a
    run writes anything, the offline copy-paste set included.
    """
    check_train_split(cfg.data_root, cfg.train_split, cfg.val_split)
    extra = [LabelMapDataset(folder) for folder in cfg.extra_train]
    for dataset in extra:
        dataset.verify()
        check_no_held_out(dataset, cfg.data_root, val_split=cfg.val_split)
    return extra


def build_train_dataset(cfg):
    """A TrainConfig's training data: `train_split` of `data_root`, then each of `extra_train`'s sets, then
    the offline copy-paste set when `copy_paste` is offline (written on first use, `data.pasted`), after
    `check_train_sources`. The copy-paste set is pasted from the train split alone.
    """
    extra = check_train_sources(cfg)
    base = TrashDataset(cfg.data_root, split=cfg.train_split)
    if cfg.copy_paste == "offline":
        extra.append(materialise_pasted(cfg, progress=True))
    return ConcatSource([base, *extra]) if extra else base


def train_fingerprint(cfg) -> str:
    """sha1 of what a run learns from: the train and val JSON files and every extra set's index.

    A regenerated or edited dataset is new data, so a finished run of the same config is retrained.
    """
    h = hashlib.sha1()
    for split in (cfg.train_split, cfg.val_split):
        if split:
            h.update((Path(cfg.data_root) / f"{split}.json").read_bytes())
    for folder in cfg.extra_train:
        h.update((Path(folder) / INDEX_FILE).read_bytes())
    return h.hexdigest()
