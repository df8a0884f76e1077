"""Fuzzing the submission validator and reader with generated CSV bytes (hypothesis).

The documented behaviour under test: `validate_submission` never raises for anything in the CSV; it
returns a list of problems, each starting with the file's path (an unreadable file is one such problem).
`read_submission` yields (image_id, 256x256 uint8) rows or raises ValueError naming the file. The two
agree: a file the validator passes reads back as exactly the test.json ids, in order, and a file the
reader rejects has problems. Every example runs under a deadline, so a hang fails the test.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from trashlib.submission import NUM_LABELS, read_submission, validate_submission  # noqa: E402

pytestmark = pytest.mark.integration  # fuzz (`make test` runs it; `make test-fast` leaves it out)

IDS = ["batch_01/0000.jpg", "batch_01/0001.jpg", "b,2/x \"y\".jpg"]  # the last needs CSV quoting
HEADER = "image_id,PredictionString"
FUZZ = settings(max_examples=120, deadline=timedelta(seconds=4), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    """(the CSV path every example overwrites, a test.json of IDS)."""
    folder = tmp_path_factory.mktemp("fuzz")
    images = [{"id": i, "file_name": name, "width": 512, "height": 512} for i, name in enumerate(IDS)]
    (folder / "test.json").write_text(json.dumps({"images": images, "categories": []}))
    return folder / "sub.csv", folder / "test.json"


# ---------------------------------------------------------------- strategies

tokens = st.one_of(st.sampled_from(["0", "10", "11", "-1", "+3", "007", "1.5", "1e3", "99999999999999999999",
                                    "\u0663", "\x00", "é", "", "3\r", "4\n5", '"', ","]),
                   st.text(max_size=4))


@st.composite
def labels(draw) -> str:
    """A PredictionString: valid, or of a wrong length, with odd tokens or separators."""
    n = draw(st.sampled_from([NUM_LABELS, NUM_LABELS, NUM_LABELS - 1, NUM_LABELS + 1, 0, 1, 7]))
    values = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 11, n).astype(str).tolist()
    for i, token in draw(st.lists(st.tuples(st.integers(0, max(n - 1, 0)), tokens), max_size=3)):
        if n:
            values[i] = token
    sep = draw(st.sampled_from([" ", " ", " ", "  ", "\t", ", "]))
    return draw(st.sampled_from(["", " ", "\n"])) + sep.join(values) + draw(st.sampled_from(["", " ", "\r"]))


def quote(field: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([field])
    return buf.getvalue()


@st.composite
def rows(draw) -> str:
    image_id = draw(st.one_of(st.sampled_from(IDS), st.text(max_size=20)))
    fields = [quote(image_id) if draw(st.booleans()) else image_id, draw(labels())]
    fields = draw(st.sampled_from([fields, fields, fields[:1], fields + ["extra"], [fields[0] + fields[1]]]))
    return ",".join(fields)


@st.composite
def csv_bytes(draw) -> bytes:
    header = draw(st.one_of(st.just(HEADER), st.just(HEADER), st.text(max_size=30), st.just(HEADER + ",x")))
    body = draw(st.lists(rows(), max_size=6))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = end.join([header, *body]) + draw(st.sampled_from([end, "", "\n\n", '"']))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    data = text.encode(encoding, "replace")
    junk = draw(st.binary(max_size=64))
    where = draw(st.sampled_from(["none", "none", "start", "end", "middle"]))
    if where == "start":
        data = junk + data
    elif where == "end":
        data = data + junk
    elif where == "middle":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + junk + data[cut:]
    return data


# ---------------------------------------------------------------- properties

def check(path: Path, test_json: Path, data: bytes) -> None:
    path.write_bytes(data)
    problems = validate_submission(path, test_json)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    assert all(p.startswith(f"{path}: ") for p in problems), problems
    assert len(problems) <= 110  # listed problems are capped; the rest are counted in one line
    try:
        read = list(read_submission(path))
    except ValueError as e:
        assert str(e).startswith(f"{path}: "), e
        assert problems, f"the reader rejects what the validator passes: {e}"
        return
    for image_id, pred in read:
        assert isinstance(image_id, str) and pred.shape == (256, 256) and pred.dtype == np.uint8
        assert pred.max() <= 10
    if not problems:
        assert [r[0] for r in read] == IDS


@FUZZ
@given(data=csv_bytes())
@example(data=b"")
@example(data=b"\x00" * 100)
@example(data=b"\xef\xbb\xbf")
@example(data=b'image_id,PredictionString\n"' + b"a" * 1000)
def test_generated_csvs_give_problems_or_value_errors(files, data):
    check(*files, data)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_give_problems_or_value_errors(files, data):
    check(*files, data)


@settings(max_examples=30, deadline=timedelta(seconds=4), database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(end=st.sampled_from(["\n", "\r\n", "\r"]), bom=st.booleans(), last_end=st.booleans(),
       quote_all=st.booleans(), seed=st.integers(0, 2**16))
def test_every_well_formed_variant_passes_and_reads_back(files, end, bom, last_end, quote_all, seed):
    path, test_json = files
    preds = np.random.default_rng(seed).integers(0, 11, (len(IDS), 256, 256))
    lines = [HEADER] + [(quote(i) if quote_all or "," in i else i) + "," + " ".join(p.ravel().astype(str))
                        for i, p in zip(IDS, preds)]
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + (end.join(lines) + (end if last_end else "")).encode())
    assert validate_submission(path, test_json) == []
    read = list(read_submission(path))
    assert [r[0] for r in read] == IDS
    for (_, got), want in zip(read, preds):
        np.testing.assert_array_equal(got, want)
