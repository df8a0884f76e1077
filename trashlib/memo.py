"""Bounded in-process memos: what a notebook's runs would otherwise compute again, kept for the last few keys."""
from __future__ import annotations


def remember(store: dict, key, value, *, keep: int):
    """Put `value` under `key` in `store`, first dropping the oldest entries so that at most `keep` remain;
    returns `value`. A dict keeps insertion order, so its first key is the oldest."""
    while len(store) >= keep:
        del store[next(iter(store))]
    store[key] = value
    return value
