"""The metrics records: one typed, versioned schema per notebook, checked when made, written and read."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from trashlib import paths
from trashlib.classes import CLASS_NAMES, NUM_CLASSES
from trashlib.metrics import Scores
from trashlib.reporting import store
from trashlib.reporting.records import (NOTEBOOKS, RECORDS, ArmRecord, BaselineRecord, CopyPasteRecord, EDARecord,
                                        RecordError, StageRecord, StagesRecord, record_class, schema_markdown)
from trashlib.scoring.compare import ArmResults, variant_record

DOCS = Path(__file__).resolve().parents[1] / "docs" / "records.md"


@pytest.fixture(autouse=True)
def _reports(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "REPORTS_DIR", tmp_path)


def scores(miou: float) -> Scores:
    return Scores(miou, np.full(NUM_CLASSES, miou), 0.0, 0.0, 0.0)


def test_every_numbered_notebook_has_one_record_class():
    notebooks = sorted(p.stem for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert list(NOTEBOOKS) == notebooks == list(RECORDS)
    for nb in notebooks:  # each notebook writes its own class, and only it
        source = (paths.NOTEBOOKS_DIR / f"{nb}.ipynb").read_text()
        assert f"save_metrics({record_class(nb).__name__}(" in source or \
            f"{record_class(nb).__name__}(" in source and "save_metrics(record)" in source, nb
    with pytest.raises(ValueError, match="no metrics record for notebook '08_x'"):
        record_class("08_x")


def test_a_record_round_trips_through_its_file_with_schema_and_version():
    arm = variant_record(ArmResults([scores(0.2), scores(0.4)], seeds=[0, 1], run_names=["r0", "r1"]))
    record = BaselineRecord(**arm, model="mask2former-swin", trunk_run="trunk", colour_floor_mIoU=0.14,
                            budget={"steps": np.int64(20)})
    assert store.save_metrics(record) is None  # a notebook cell that ends with it shows no path
    saved = json.loads(store.metrics_path("02_baseline_mask2former").read_text())
    assert (saved["schema"], saved["version"]) == ("02_baseline_mask2former", BaselineRecord.VERSION)
    back = store.load_metrics("02_baseline_mask2former")
    assert back == record and back.val_mIoU_mean == pytest.approx(0.3) and back.budget == {"steps": 20}
    assert store.load_metrics("03_backbones_dinat_semask") is None  # not run


def test_the_helpers_output_is_what_the_records_declare():
    ref = ArmResults([scores(0.1), scores(0.3)], seeds=[0, 1])
    arm = ArmRecord(**variant_record(ArmResults([scores(0.2), scores(0.4)], seeds=[0, 1]), ref, classes=["Paper"]))
    assert arm.verdict in ("gain", "loss", "tie") and len(arm.delta_ci) == 2 and arm.seed_count == 2
    assert set(arm.per_class_iou) == set(CLASS_NAMES)
    record = CopyPasteRecord(variants={"none": variant_record(ref)})
    assert isinstance(record.variants["none"], ArmRecord)  # a dict from the helper becomes the nested record


@pytest.mark.parametrize("change, fault", [
    ({"val_mIoU_mean": 30.0}, r"val_mIoU_mean: must be an mIoU in \[0, 1\], got 30.0"),
    ({"val_mIoU_std": -0.5}, "val_mIoU_std: must be a spread >= 0"),
    ({"seeds": "abc"}, "seeds: must be a list"),
    ({"seeds": [0, 1.5]}, r"seeds\[1\]: must be a whole number"),
    ({"run_names": [3]}, r"run_names\[0\]: must be text"),
    ({"model": 1}, "model: must be text"),
    ({"val_miou_mean": 0.3}, "val_miou_mean: not a key of BaselineRecord"),
    ({"per_class_iou": {"Paper": 2}}, "per_class_iou.Paper: must be an mIoU"),
    ({"trunk_val_mIoU": True}, "trunk_val_mIoU: must be a number, got True"),
])
def test_a_value_of_another_kind_is_refused_naming_the_file_and_the_key(change, fault, tmp_path):
    good = BaselineRecord(val_mIoU_mean=0.3, seeds=[0, 1], run_names=["a", "b"]).file_dict()
    path = tmp_path / "metrics" / "02_baseline_mask2former.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**good, **change}))
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: {fault}"):
        store.load_metrics("02_baseline_mask2former")
    if "not a key" not in fault:  # and when a notebook makes one (an unknown keyword is Python's TypeError)
        with pytest.raises(RecordError, match=fault):
            BaselineRecord(**{k: v for k, v in {**good, **change}.items() if k not in ("schema", "version")})


def test_nan_is_no_value_where_a_field_may_be_empty_and_refused_where_it_may_not(tmp_path):
    record = BaselineRecord(val_mIoU_mean=float("nan"), per_class_iou={"Paper": np.float32("nan")})
    assert record.val_mIoU_mean is None and record.per_class_iou == {"Paper": None}
    with pytest.raises(RecordError, match="background_pixel_share: must be a number, got None"):
        EDARecord(background_pixel_share=math.nan)
    path = tmp_path / "metrics" / "05_crf_ensemble.json"
    path.parent.mkdir()
    path.write_text('{"schema": "05_crf_ensemble", "version": 1, "crf_sweep": [{"mIoU": Infinity}]}')
    with pytest.raises(ValueError, match=r"crf_sweep\[0\]\.mIoU: inf is not a finite number"):
        store.load_metrics("05_crf_ensemble")


@pytest.mark.parametrize("head, fault", [({}, "no schema version"), ({"schema": "05_crf_ensemble", "version": 99},
                                                                        "version 99"),
                                         ({"schema": "04_copy_paste", "version": 1}, "schema '04_copy_paste'")])
def test_a_file_of_another_schema_or_version_is_refused_with_the_advice_to_run_again(head, fault, tmp_path):
    path = tmp_path / "metrics" / "05_crf_ensemble.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**head, "stages": []}))
    with pytest.raises(ValueError, match=f"{fault}.*run 05_crf_ensemble again"):
        store.load_metrics("05_crf_ensemble")


def test_nested_records_name_the_path_of_a_fault():
    with pytest.raises(RecordError, match=r"stages\[1\]\.val_mIoU: must be an mIoU"):
        StagesRecord(stages=[{"name": "a"}, {"name": "b", "val_mIoU": -0.1}])
    with pytest.raises(RecordError, match=r"stages\[0\]\.name: missing"):
        StagesRecord(stages=[{"val_mIoU": 0.1}])
    with pytest.raises(RecordError, match=r"variants\.none\.runs: not a key of ArmRecord"):
        CopyPasteRecord(variants={"none": {"runs": ["a"]}})
    stage = StageRecord(name="a", recipe={"members": ["r"]})
    assert dataclasses.replace(stage, val_mIoU=0.5).val_mIoU == 0.5


def test_save_metrics_takes_a_record_only():
    with pytest.raises(TypeError, match="takes a notebook's record"):
        store.save_metrics({"val_mIoU_mean": 0.3})


def test_the_written_schema_is_the_code():
    assert DOCS.read_text() == schema_markdown() + "\n", \
        "docs/records.md differs from the records: python -m trashlib.reporting.records > docs/records.md"
