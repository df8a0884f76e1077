"""Fuzzing the COCO reader: generated files either load or raise DatasetError, never crash or hang.

The generated COCO dicts are mostly well formed, so that many reach the rasteriser, with hostile
values mixed in anywhere: missing keys, wrong types, huge/NaN/negative numbers, odd polygons, damaged
RLEs, duplicate ids, strings where numbers belong. `validate_coco` is pure Python and runs in-process;
the reader calls pycocotools' C code, which used to segfault, so it runs in a subprocess with a memory
limit and a timeout: a crash or a hang fails the test instead of killing pytest.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trashlib.classes import coco_categories
from trashlib.data import DatasetError, Problem, TrashDataset, load_coco, validate_coco
from trashlib.data.check import check_dataset

pytestmark = pytest.mark.integration  # fuzz (`make test` runs it; `make test-fast` leaves it out)

HOSTILE_NUMBERS = [0, -1, -(2**31), 2**32, 10**30, 10**400, 1e9, -4e8, 4e8, 1e300, 1.5, float("nan"),
                   float("inf"), float("-inf"), True, "12", "", None]
HOSTILE_COORDINATES = [1e9, -1e9, 4e8, -4e8, 1e300, 10**30, 10**400, float("nan"), float("inf"), 200, -150, True, "12"]
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
                 st.lists(st.integers(-3, 3), max_size=3),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                 st.sampled_from(HOSTILE_NUMBERS))


class Spoiler:
    """Draws a good value, or (at this example's rate: none, rare or often) a hostile one."""

    COINS = {40: st.integers(0, 39), 6: st.integers(0, 5)}

    def __init__(self, draw):
        self.draw = draw
        self.every = draw(st.sampled_from([0, 40, 6]))  # a third of the examples are clean files

    def bad(self) -> bool:
        return bool(self.every) and self.draw(self.COINS[self.every]) == 0

    def __call__(self, good, bad=junk):
        return self.draw(bad if self.bad() else good)

    def drop_keys(self, entry: dict) -> dict:
        """`entry`, maybe without some of its keys."""
        if self.bad():
            for key in self.draw(st.sets(st.sampled_from(list(entry)), max_size=len(entry))):
                entry.pop(key)
        return entry


def _polygon(spoil: Spoiler, h: int, w: int) -> list:
    point = st.tuples(st.floats(-3, w + 3) | st.integers(-3, w + 3), st.floats(-3, h + 3) | st.integers(-3, h + 3))
    good = st.lists(point, min_size=3, max_size=7).map(lambda pts: [v for p in pts for v in p])

    def one_hostile(values: list):  # a well-formed polygon but for one value: it reaches pycocotools
        return st.tuples(st.integers(0, len(values) - 1), st.sampled_from(HOSTILE_COORDINATES)).map(
            lambda ix: values[:ix[0]] + [ix[1]] + values[ix[0] + 1:])

    if spoil.every and spoil.draw(st.integers(0, 3)) == 0:  # coordinates are where the C code is fragile
        return spoil.draw(good.flatmap(one_hostile) | good.map(lambda v: v[:-1]) | good.map(lambda v: v[:4]) | junk)
    return spoil(good)


def _rle(spoil: Spoiler, h: int, w: int) -> dict:
    runs = st.lists(st.integers(0, h * w), max_size=4).map(lambda cuts: np.diff([0, *sorted(cuts), h * w]).tolist())
    counts = spoil(runs, st.text(alphabet=st.characters(min_codepoint=40, max_codepoint=125), max_size=12) |
                   st.lists(st.integers(-3, 3000) | junk, max_size=5) | junk)
    return spoil.drop_keys({"size": spoil(st.just([h, w]), st.lists(st.integers(0, 64), max_size=3) | junk),
                            "counts": counts})


@st.composite
def coco_dicts(draw) -> dict:
    """A COCO dict in the competition layout, each part possibly damaged."""
    spoil = Spoiler(draw)
    ids = st.integers(0, 5)
    bad_ids = st.text(max_size=3) | junk
    sizes = st.integers(8, 40)
    bad_sizes = st.sampled_from([0, -3, 16385, 10**9, 2**31, 2.0, "32"]) | junk
    images = []
    for k in range(draw(st.integers(0 if spoil.every else 1, 3))):
        im = {"id": spoil(st.just(k), ids | bad_ids),
              "width": spoil(sizes, bad_sizes), "height": spoil(sizes, bad_sizes),
              "file_name": spoil(st.sampled_from(["a.jpg", "b/c.jpg", f"{k}.jpg"]),
                                 st.sampled_from(["../x.jpg", "/etc/x", "", "a\0b", "C:x.jpg"]) | junk)}
        images.append(spoil.drop_keys(im))
    annotations = []
    for k in range(draw(st.integers(0 if spoil.every else 1, 5))):
        im = draw(st.sampled_from(images)) if images else {}
        h, w = (v if isinstance(v, int) and 0 < v <= 64 else 16 for v in (im.get("height"), im.get("width")))
        if draw(st.sampled_from(["polygons", "polygons", "rle"])) == "rle":
            seg = _rle(spoil, h, w)
        else:
            seg = [_polygon(spoil, h, w) for _ in range(draw(st.integers(1, 3)))]
        ann = {"id": spoil(st.just(k), ids | bad_ids), "image_id": spoil(st.just(im.get("id", 0)), ids | bad_ids),
               "category_id": spoil(st.integers(1, 10), st.integers(-1, 300) | junk),
               "segmentation": spoil(st.just(seg), junk), "area": spoil(st.floats(0, 3000), junk)}
        annotations.append(spoil.drop_keys(ann))
    bad_categories = st.lists(st.fixed_dictionaries({"id": ids, "name": junk}), max_size=3) | junk
    categories = spoil(st.just(coco_categories()), bad_categories)
    data = {"images": images, "annotations": annotations, "categories": categories}
    data = {key: spoil(st.just(value), junk) for key, value in data.items()}
    if isinstance(data["images"], list) and data["images"] and spoil.bad():
        data["images"] = data["images"] + data["images"][:1]  # a duplicate id and file name
    return spoil.drop_keys(data)


FUZZ = settings(max_examples=100, deadline=5000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _file(segmentation) -> dict:
    """A valid one-image file whose annotation has `segmentation`: the known crashers, always tried first."""
    return {"images": [{"id": 0, "file_name": "a.jpg", "width": 32, "height": 32}], "categories": coco_categories(),
            "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "segmentation": segmentation}]}


KNOWN = [_file([[0, 0, 1e9, 0, 1e9, 1e9]]),  # pycocotools segfaulted
         _file([[0, 0, 4e8, 0, 4e8, 4e8]]),  # pycocotools allocated until killed
         _file([[0, 0, 10**400, 0, 5, 5]]),  # OverflowError in the validator
         _file({"size": [32, 32], "counts": [7]}),  # pycocotools painted uninitialised memory
         _file({"size": [32, 32], "counts": "0PP"}),  # pycocotools read past the string
         {"images": [], "annotations": [{"id": 0, "image_id": 0, "category_id": None, "segmentation": []}]}]


def _known_examples(test):
    for data in KNOWN:
        test = example(data)(test)
    return test


@_known_examples
@FUZZ
@given(coco_dicts())
def test_validate_coco_lists_problems_and_never_raises(data):
    problems = validate_coco(data, file="train.json")
    assert all(isinstance(p, Problem) and p.file == "train.json" and len(str(p)) < 600 for p in problems)


@_known_examples
@settings(FUZZ, max_examples=80, deadline=None)  # the caller's timeout catches a hang; fsync may be slow
@given(coco_dicts())
def read_generated_files(data):
    """check_dataset, load_coco, TrashDataset and every load_mask of a generated file: a result or DatasetError."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "train.json").write_text(json.dumps(data))
        assert all(isinstance(p, Problem) for p in check_dataset(root))  # rasterises what the schema passed
        try:
            coco = load_coco(root / "train.json")
        except DatasetError as e:
            assert e.problems and all(p.fatal for p in e.problems)
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-fatal problems only warn
            ds = TrashDataset(root, "train")
        assert len(ds) == len(coco.images)
        for i, info in enumerate(ds.image_infos):
            try:
                mask = ds.load_mask(i)
            except DatasetError as e:
                assert "train.json" in str(e)
                continue
            if mask is not None:
                assert mask.shape == (info["height"], info["width"]) and mask.dtype == np.uint8


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def test_reader_accepts_or_raises_dataset_error(tmp_path):
    """Runs read_generated_files in a fresh interpreter (4 GB, 5 minutes): pycocotools may not crash it."""
    env = {**os.environ, "TRASHLIB_HOME": str(tmp_path), "NO_ALBUMENTATIONS_UPDATE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", "import test_fuzz_coco as t; t.read_generated_files()"],
                            cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300,
                            preexec_fn=_limit_memory)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"


def test_many_generated_files_are_valid():
    """The fuzzing is worth something only if many files get past validation to pycocotools (fixed seed)."""
    valid = []

    @settings(FUZZ, max_examples=60, derandomize=True)
    @given(coco_dicts())
    def count(data):
        anns = data.get("annotations") if isinstance(data, dict) else None
        valid.append(bool(anns) and not any(p.fatal for p in validate_coco(data, file="x.json")))

    count()
    assert sum(valid) >= 10, f"only {sum(valid)} of {len(valid)} generated files are valid and annotated"
