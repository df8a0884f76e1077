"""A notebook's `parameters` cell: the names it assigns, their defaults, and the values each accepts.

Papermill overrides these names from a profile; a value of another kind than the default (text for a
number, a list for a number, NaN) would fail deep inside the notebook, or run it wrongly without a
word, so a profile is checked against the cell before any notebook runs. A parameter whose default is
None takes anything; one with another default takes null only where its comment says what None means
(`max_images = 60  # None: every image`).
"""
from __future__ import annotations

import ast
import io
import json
import math
import os
import re
import reprlib
import tokenize
from dataclasses import dataclass
from pathlib import Path

_UNKNOWN = object()  # a default that is not a literal: its kind is not checked
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 40, 40, 4, 4
show = _REPR.repr


@dataclass(frozen=True)
class Parameter:
    """One name of a parameters cell: its default (a literal, else unchecked) and whether it takes None."""

    name: str
    default: object = _UNKNOWN
    takes_none: bool = True


def _cell_source(nb_path: str | os.PathLike) -> str | None:
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return "".join(cell.get("source", ""))
    return None


def _comments(source: str) -> dict[int, str]:
    """Line number -> the comment on that line."""
    try:
        return {t.start[0]: t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                if t.type == tokenize.COMMENT}
    except (tokenize.TokenError, SyntaxError):
        return {}


def declared_parameters(nb_path: str | os.PathLike) -> dict[str, Parameter]:
    """The names assigned in a notebook's `parameters`-tagged cell, in order, with what each accepts."""
    source = _cell_source(nb_path)
    if source is None:
        return {}
    try:
        body = ast.parse(source).body
    except SyntaxError as e:
        raise ValueError(f"{nb_path}: the parameters cell is not plain Python: {e}") from None
    comments = _comments(source)
    lines = source.splitlines()
    out: dict[str, Parameter] = {}
    for node in body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        value = getattr(node, "value", None)
        try:
            default = ast.literal_eval(value) if value is not None else _UNKNOWN
        except (ValueError, SyntaxError, TypeError):
            default = _UNKNOWN
        # its comment: on its lines, and on comment-only lines right after them
        last = node.end_lineno or node.lineno
        while last < len(lines) and lines[last].lstrip().startswith("#"):
            last += 1
        said = " ".join(comments.get(n, "") for n in range(node.lineno, last + 1))
        takes_none = default is None or default is _UNKNOWN or bool(re.search(r"\bNone\b", said))
        for t in targets:
            if isinstance(t, ast.Name) and t.id not in out:
                out[t.id] = Parameter(t.id, default, takes_none)
    return out


def notebook_parameter_names(nb_path: str | os.PathLike) -> list[str]:
    """The names assigned in a notebook's `parameters`-tagged cell (what papermill may override)."""
    return list(declared_parameters(nb_path))


def non_finite(value, where: str = "") -> str | None:
    """The path of the first NaN or infinite number inside a value (lists and mappings searched), else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if (found := non_finite(item, f"{where}[{key!r}]" if isinstance(key, int) else f"{where}.{key}")) is not None:
            return found
    return None


def _kind(default) -> str | None:
    """The kind of value a default stands for, as checked by `kind_problem` (None: not checked)."""
    for kind, types in (("true or false", bool), ("an integer", int), ("a number", float), ("text", str),
                        ("a list", list), ("a mapping", dict)):
        if isinstance(default, types):
            return kind
    return None


def _is(kind: str, value) -> bool:
    if kind == "a number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "an integer":
        return isinstance(value, int) and not isinstance(value, bool)
    types = {"true or false": bool, "text": str, "a list": list, "a mapping": dict}[kind]
    return isinstance(value, types)


def kind_problem(param: Parameter, value) -> str | None:
    """Why `value` cannot stand in for the parameter's default (its kind; lists: their items' kind), else None."""
    if value is None:
        return None if param.takes_none else "null is not accepted (its comment in the parameters cell offers no None)"
    kind = _kind(param.default)
    if kind is None:
        return None
    if not _is(kind, value):
        return f"must be {kind}, like its default {show(param.default)}, not {show(value)}"
    if kind == "a list" and param.default:  # the items' kind, where the default's items share one
        # (integer items may be any number: [1, 2] can mean scales as well as counts)
        kinds = {"a number" if _kind(v) == "an integer" else _kind(v) for v in param.default if v is not None}
        optional = any(v is None for v in param.default)
        if len(kinds) == 1 and (item := kinds.pop()) is not None:
            bad = [v for v in value if not (v is None and optional) and not _is(item, v)]
            if bad:
                return f"must be a list whose items are each {item}, not {show(bad[0])}"
    return None
