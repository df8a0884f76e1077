"""The competition submission: a CSV `image_id,PredictionString`, one row per test image in test.json order.

PredictionString holds 256*256 space-separated labels, row-major. A 512x512 prediction is reduced by
nearest neighbour, which keeps the even rows and columns (what albumentations' Resize(256, 256) does
to a mask). Rows are streamed both ways: neither writing nor checking holds the test set in memory,
and reading is bounded however hostile the file: a record is read at most ROW_LIMIT characters
deep, bytes that are not UTF-8 become a problem naming their line, and at most MAX_PROBLEMS
problems are listed (the rest are counted).
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from trashlib.classes import NUM_CLASSES
from trashlib.io import atomic_open, read_json
from trashlib.metrics import as_numpy

HEADER = ("image_id", "PredictionString")
SIZE = 256
NUM_LABELS = SIZE * SIZE
# A row is about 131 kB, over the csv module's default field limit of 128 KiB.
_FIELD_LIMIT = 1 << 24
# A record longer than this (characters) is a problem; the reader never holds more of it than this.
ROW_LIMIT = 1 << 20
MAX_PROBLEMS = 100  # problems listed for one file; the rest are counted in one line
# Every label is written as one placeholder byte and a space; labels from 10 up get a letter ('A' = 10)
# that bytes.replace widens afterwards: encoding is a table lookup plus a few C-level passes, no loop.
_PLACEHOLDERS = "".join(str(i) if i < 10 else chr(55 + i) for i in range(NUM_CLASSES))
_WIDE = {str(i): chr(55 + i) for i in range(10, NUM_CLASSES)}
_ENCODE = np.frombuffer(_PLACEHOLDERS.encode("ascii"), dtype=np.uint8)
# label -> the two bytes "<placeholder> " as one little-endian uint16: one lookup writes both
_ENCODE_PAIR = (_ENCODE.astype("<u2") | (ord(" ") << 8)).astype("<u2")
_DECODE = np.full(256, 255, dtype=np.uint8)
_DECODE[_ENCODE] = np.arange(NUM_CLASSES, dtype=np.uint8)
_DIGIT_OR_SPACE = np.zeros(256, dtype=bool)
_DIGIT_OR_SPACE[list(b"0123456789 ")] = True
_TOKENS = {str(i): i for i in range(NUM_CLASSES)}


def _downsample(mask: np.ndarray) -> np.ndarray:
    if mask.shape == (2 * SIZE, 2 * SIZE):
        return mask[::2, ::2]  # cv2 INTER_NEAREST at scale 2 samples source index floor(2 * i)
    if mask.shape == (SIZE, SIZE):
        return mask
    raise ValueError(f"expected a ({2 * SIZE}, {2 * SIZE}) or ({SIZE}, {SIZE}) label map, got shape {mask.shape}")


def _checked_small(pred) -> np.ndarray:
    pred = as_numpy(pred)
    if pred.dtype.kind not in "iu":
        raise ValueError(f"prediction must hold integer labels, got dtype {pred.dtype}")
    small = _downsample(pred)
    # Viewed as unsigned, negative labels become huge: one max() checks both ends of the range.
    if pred.view(pred.dtype.str.replace("i", "u")).max() >= NUM_CLASSES:
        bad = (pred < 0) | (pred >= NUM_CLASSES)
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"prediction holds label {pred[row, col]} at (row {row}, col {col}), "
                         f"outside 0..{NUM_CLASSES - 1} ({int(bad.sum())} such pixels)")
    return small


def downsample_prediction(pred) -> np.ndarray:
    """A 512x512 prediction reduced to 256x256 by nearest neighbour (even rows and columns); 256x256 passes.

    Shape:
        pred: (512, 512) or (256, 256) integer labels in 0..num_classes-1 (numpy or torch).
        returns: (256, 256) uint8.
    """
    return np.ascontiguousarray(_checked_small(pred), dtype=np.uint8)


def _encode_bytes(pred) -> bytes:
    # np.take straight from the strided view: no intermediate copy of the downsampled map
    text = np.take(_ENCODE_PAIR, _checked_small(pred)).tobytes()[:-1]  # [:-1]: no trailing space
    for label, letter in _WIDE.items():
        text = text.replace(letter.encode(), label.encode())
    return text


def encode_prediction(pred) -> str:
    """The PredictionString of one prediction: 65,536 space-separated labels, row-major.

    Shape:
        pred: (512, 512) or (256, 256) integer labels (downsampled first when 512).
    """
    return _encode_bytes(pred).decode("ascii")


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\r\n'):  # the csv module's minimal quoting
        return '"' + text.replace('"', '""') + '"'
    return text


def write_submission(path: str | os.PathLike, rows: Iterable[tuple[str, object]]) -> Path:
    """Stream (image_id, prediction) rows, in test.json order, to the CSV at `path`, atomically; returns the path."""
    path = Path(path)
    seen: set[str] = set()
    # Binary writes of ready-made bytes: csv.writer would scan each 131 kB row char by char (~3 ms).
    with atomic_open(path, "wb") as f:
        f.write(",".join(HEADER).encode() + b"\n")
        for n, (image_id, pred) in enumerate(rows, start=1):
            if not isinstance(image_id, str) or not image_id:
                raise ValueError(f"{path}: row {n}: image_id must be a non-empty file_name, got {image_id!r}")
            if image_id in seen:
                raise ValueError(f"{path}: row {n}: duplicate image_id {image_id!r}")
            seen.add(image_id)
            try:
                text = _encode_bytes(pred)
            except ValueError as e:
                raise ValueError(f"{path}: row {n} ({image_id}): {e}") from None
            f.writelines((_csv_field(image_id).encode("utf-8"), b",", text, b"\n"))
    return path


def _parse_labels(text: str) -> tuple[np.ndarray | None, str | None]:
    """(256x256 uint8 labels, None) or (None, what is wrong) for one PredictionString."""
    raw = np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8)
    if _DIGIT_OR_SPACE[raw].all():  # fast path: canonical "d d d ..." after widening labels >= 10
        squeezed = text
        for label, letter in _WIDE.items():
            squeezed = squeezed.replace(label, letter)
        b = np.frombuffer(squeezed.encode("ascii"), dtype=np.uint8)
        if b.size == 2 * NUM_LABELS - 1 and (b[1::2] == 32).all() and (b[::2] != 32).all():
            return _DECODE[b[::2]].reshape(SIZE, SIZE), None
    tokens = text.split()
    problems = []
    if len(tokens) != NUM_LABELS:
        problems.append(f"found {len(tokens)} labels, expected {NUM_LABELS}")
    for i, tok in enumerate(tokens, start=1):
        if tok not in _TOKENS:
            kind = "outside" if re.fullmatch(r"[+-]?\d+", tok) else "not an integer in"
            problems.append(f"label {i} is {tok[:20]!r}: {kind} 0..{NUM_CLASSES - 1}")
            break
    if problems:
        return None, "; ".join(problems)
    return np.fromiter((_TOKENS[t] for t in tokens), np.uint8, NUM_LABELS).reshape(SIZE, SIZE), None


def _cut(text: str, width: int = 60) -> str:
    """A field from a file, shortened for a message (an id can be a megabyte of garbage)."""
    return text if len(text) <= width else f"{text[:width]}... ({len(text):,} characters)"


def _shown(text: str, width: int = 60) -> str:
    return repr(text) if len(text) <= width else f"{text[:width]!r}... ({len(text):,} characters)"


class _RowError(Exception):
    def __init__(self, line: int, problem: str):
        super().__init__(problem)
        self.line, self.problem = line, problem


class _Lines:
    """The physical lines of a text file for csv.reader, numbered; a record over ROW_LIMIT characters or
    a line that is not UTF-8 raises _RowError, and the rest of an over-long line is skipped unread."""

    def __init__(self, f):
        self.f, self.number, self.start, self.size = f, 0, 1, 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.size == 0:  # the caller resets size after each record: this line starts the next one
            self.start = self.number + 1
        line = self.f.readline(ROW_LIMIT + 1 - self.size)
        if not line:
            raise StopIteration
        self.number += 1
        self.size += len(line)
        if self.size > ROW_LIMIT:
            while line and not line.endswith(("\n", "\r")):  # skip to the end of the line, a bounded piece at a time
                line = self.f.readline(ROW_LIMIT)
            raise _RowError(self.start, f"row longer than {ROW_LIMIT:,} characters (a valid row is about "
                                        f"{2 * NUM_LABELS // 1000} kB)")
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as e:  # surrogateescape made each byte that is not UTF-8 a lone surrogate
                raise _RowError(self.number, f"not UTF-8 text (byte 0x{ord(line[e.start]) - 0xDC00:02x} at "
                                             f"character {e.start + 1}); save the file as UTF-8") from None
        return line


def _records(f) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """(line, fields, None) for each CSV record of a text file, or (line, None, problem) for one that
    cannot be read; reading goes on at the next line."""
    lines = _Lines(f)
    while True:
        try:
            for fields in csv.reader(lines):
                yield lines.start, fields, None
                lines.size = 0
            return
        except _RowError as e:
            yield e.line, None, e.problem
        except csv.Error as e:
            yield lines.start, None, f"unreadable CSV ({e})"
        lines.size = 0


def _open_rows(path: Path):
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    # utf-8-sig: a spreadsheet-saved CSV starts with a byte-order mark that is not part of the header;
    # surrogateescape: bytes that are not UTF-8 reach _Lines, which names their line
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def read_submission(path: str | os.PathLike) -> Iterator[tuple[str, np.ndarray]]:
    """Stream (image_id, 256x256 uint8 prediction) from a submission CSV; bad content raises ValueError naming the line."""
    path = Path(path)
    try:
        f = _open_rows(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read the file: {e.strerror or e}") from None
    with f:
        records = _records(f)
        line, header, problem = next(records, (1, None, "empty file"))
        if problem:
            raise ValueError(f"{path}: line {line}: {problem}")
        if tuple(header) != HEADER:
            raise ValueError(f"{path}: line 1: header {_shown(','.join(header))}, expected {','.join(HEADER)!r}")
        for line, fields, problem in records:
            if problem:
                raise ValueError(f"{path}: line {line}: {problem}")
            if len(fields) != 2:
                raise ValueError(f"{path}: line {line}: {len(fields)} fields, expected 2")
            pred, problem = _parse_labels(fields[1])
            if problem:
                raise ValueError(f"{path}: line {line} ({_cut(fields[0])}): {problem}")
            yield fields[0], pred


def _test_file_names(test_json: Path, coco) -> list[str]:
    images = coco.get("images") if isinstance(coco, dict) else None
    if not isinstance(images, list):
        raise ValueError(f"{test_json}: not a COCO file with an 'images' list of file_name entries")
    names, seen = [], set()
    for i, img in enumerate(images):
        name = img.get("file_name") if isinstance(img, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{test_json}: images[{i}]: file_name must be a non-empty string, got {_cut(repr(name))}")
        if name in seen:
            raise ValueError(f"{test_json}: images[{i}]: file_name {name!r} appears twice")
        seen.add(name)
        names.append(name)
    return names


def validate_submission(csv_path: str | os.PathLike, test_json: str | os.PathLike) -> list[str]:
    """Every problem of a submission CSV against test.json (empty list: valid), each naming the line or id.

    Never raises for the CSV: an unreadable file is a problem too. A missing or malformed test.json
    raises FileNotFoundError or ValueError naming it.
    """
    csv_path, test_json = Path(csv_path), Path(test_json)
    return _validate(csv_path, _test_file_names(test_json, read_json(test_json)), test_json)


def _validate(csv_path: Path, expected: list[str], test_json: Path) -> list[str]:
    index = {name: i for i, name in enumerate(expected)}
    problems: list[str] = []
    unlisted = 0
    first_line: dict[str, int] = {}
    order: list[tuple[int, str]] = []  # (line, image_id) of first-seen known ids, in file order

    def report(problem: str) -> None:
        nonlocal unlisted
        if len(problems) < MAX_PROBLEMS:
            problems.append(f"{csv_path}: {problem}")
        else:
            unlisted += 1

    def check_row(line: int, fields: list[str]) -> None:
        if len(fields) != 2:
            report(f"line {line}: {len(fields)} fields, expected 2 (image_id,PredictionString)")
            return
        image_id, text = fields
        if image_id not in index:
            report(f"line {line}: unknown image_id {_shown(image_id)} (not in {test_json.name})")
        elif image_id in first_line:
            report(f"line {line}: duplicate image_id {image_id!r} (first at line {first_line[image_id]})")
        else:
            first_line[image_id] = line
            order.append((line, image_id))
        _, problem = _parse_labels(text)
        if problem:
            report(f"line {line} ({_cut(image_id)}): {problem}")

    try:
        with _open_rows(csv_path) as f:
            records = _records(f)
            first = next(records, None)
            if first is None:
                return [f"{csv_path}: empty file; expected the header {','.join(HEADER)!r} and {len(expected)} rows"]
            line, header, problem = first
            if problem:
                report(f"line {line}: {problem}")
            elif tuple(header) != HEADER:
                report(f"line 1: header is {_shown(','.join(header))}, expected {','.join(HEADER)!r}")
                if header and header[0] in index:  # a data row where the header belongs: check it as one
                    check_row(line, header)
            for line, fields, problem in records:
                if problem:
                    report(f"line {line}: {problem}")
                else:
                    check_row(line, fields)
    except OSError as e:
        return problems + [f"{csv_path}: cannot read the file: {e.strerror or e}"]
    if unlisted:
        problems.append(f"{csv_path}: ... and {unlisted:,} more problem(s) not listed")

    in_order = sorted(order, key=lambda row: index[row[1]])
    misplaced = [(got, want) for got, want in zip(order, in_order) if got[1] != want[1]]
    if misplaced:
        (line, got), (_, want) = misplaced[0]
        problems.append(f"{csv_path}: line {line}: rows are not in {test_json.name} order: found {got!r} where "
                        f"{want!r} belongs ({len(misplaced)} rows out of place)")
    missing = [name for name in expected if name not in first_line]
    if missing:
        listed = ", ".join(missing[:20]) + (f", ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        problems.append(f"{csv_path}: {len(missing)} of {len(expected)} test images have no row: {listed}")
    return problems


def index_to_submission(index, path: str | os.PathLike) -> Path:
    """Write the argmax maps of stored probabilities (a probs.ProbIndex, in split order) as a submission CSV."""
    for i, item in enumerate(index.items):  # found before writing, and named: the map, not a row
        if tuple(item["shape"][1:]) not in ((2 * SIZE, 2 * SIZE), (SIZE, SIZE)):
            raise ValueError(f"{index.map_path(i)} (image {item['file_name']!r}): a map of shape "
                             f"{tuple(item['shape'])}; a submission needs {2 * SIZE}x{2 * SIZE} or {SIZE}x{SIZE} maps")
    return write_submission(path, ((name, index.argmax(i)) for i, name in enumerate(index.file_names)))
