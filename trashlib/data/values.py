"""Tests of values read from hostile files, and short reprs that keep messages readable."""
from __future__ import annotations

import math
import reprlib

_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 40, 40, 3


def is_id(value) -> bool:
    """Whether a value can be a COCO id (an integer or a string)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def is_count(value) -> bool:
    """Whether a value is an integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """Whether a value is an int or a float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """Whether a value is an int or float that is finite as a float (10**400 is not)."""
    try:
        return is_number(value) and math.isfinite(value)
    except OverflowError:
        return False


def show(value) -> str:
    """A short repr for messages: a hostile value (a 1 MB string, a deeply nested list) must not flood them."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an integer of more than 4300 digits has no str()
        return f"<a {value.bit_length()}-bit integer>" if isinstance(value, int) else f"<{type(value).__name__}>"


def label(item_id) -> str:
    """An id as it appears in `image 12` or `annotation abc` (shortened if hostile)."""
    return item_id if isinstance(item_id, str) and len(item_id) <= 40 else show(item_id)
