"""A deterministic split of images into train/val/test, stratified so rare classes reach every split.

Iterative stratification (Sechidis et al. 2011, "On the stratification of multi-label data"): the
rarest class is placed first, each of its images going to the split that lacks the class most; so a
class on three or more images lands in every split, and the common classes fill in by the shares.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np

SPLIT_SHARES = {"train": 0.7, "val": 0.15, "test": 0.15}


def stratified_split(classes: Mapping[Hashable, set[int]], *, shares: Mapping[str, float] = SPLIT_SHARES,
                     seed: int = 0) -> dict[Hashable, str]:
    """image key -> split name, from each image's set of classes; same keys and seed, same split.

    An image goes to the split that misses its rarest unplaced class (if the class is not in every split
    yet), else to the one furthest below its share of that class; ties go to the split with the most room,
    then to the earlier split. Images without a class fill the splits' remaining room.
    """
    names = list(shares)
    if not names or any(not 0 < s for s in shares.values()):
        raise ValueError(f"split shares must be positive, got {dict(shares)}")
    total = sum(shares.values())
    keys = sorted(classes, key=repr)
    order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    room = {s: shares[s] / total * len(keys) for s in names}
    counts = {c: sum(c in classes[k] for k in keys) for c in {c for k in keys for c in classes[k]}}
    want = {s: {c: shares[s] / total * n for c, n in counts.items()} for s in names}
    have = {s: dict.fromkeys(counts, 0) for s in names}
    split: dict[Hashable, str] = {}

    def place(key, name):
        split[key] = name
        room[name] -= 1
        for c in classes[key]:
            want[name][c] -= 1
            have[name][c] += 1

    while len(split) < len(keys):
        left = {c: sum(1 for k in order if k not in split and c in classes[k]) for c in counts}
        left = {c: n for c, n in left.items() if n}
        if not left:
            break
        rarest = min(left, key=lambda c: (left[c], c))
        for key in [k for k in order if k not in split and rarest in classes[k]]:
            missing = [s for s in names if have[s][rarest] == 0]
            pool = missing or names
            place(key, max(pool, key=lambda s: (0 if missing else want[s][rarest], room[s], -names.index(s))))
    for key in order:
        if key not in split:
            place(key, max(names, key=lambda s: (room[s], -names.index(s))))
    return split
