"""Comparisons over seeds: mean ± spread by hand, the tie rule, records for the metrics files."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trashlib.classes import NUM_CLASSES
from trashlib.compare import SeedResults, compare_table, variant_record, verdict
from trashlib.metrics import Scores


def scores(miou: float, first_class: float = 0.5) -> Scores:
    per_class = np.full(NUM_CLASSES, np.nan)
    per_class[0], per_class[1] = 0.9, first_class
    return Scores(miou, per_class, 0.9, 0.5, 0.8)


def test_mean_and_sample_spread_by_hand():
    r = SeedResults([scores(0.30), scores(0.32), scores(0.34)], seeds=[0, 1, 2], run_names=["a", "b", "c"])
    assert r.mean == pytest.approx(0.32)
    assert r.std == pytest.approx(0.02)  # sqrt(((-.02)^2 + 0 + .02^2) / 2)
    assert SeedResults([scores(0.3)]).std == 0.0


@pytest.mark.parametrize("delta, spread, seeds, expected", [
    (0.05, 0.02, 3, "gain"), (-0.05, 0.02, 3, "loss"), (0.039, 0.02, 3, "tie"), (-0.039, 0.02, 3, "tie"),
    (0.04, 0.02, 3, "gain"), (0.0, 0.0, 3, "tie"), (0.2, 0.01, 1, "one seed")])
def test_verdict_rule(delta, spread, seeds, expected):
    assert verdict(delta, spread, seeds=seeds) == expected


def test_verdict_refuses_non_finite_numbers():
    with pytest.raises(ValueError, match="finite"):
        verdict(math.nan, 0.1)


def test_table_judges_each_variant_against_the_reference_with_the_larger_spread():
    table = compare_table({
        "none": [scores(0.30), scores(0.31), scores(0.32)],            # spread 0.01
        "paste": [scores(0.36), scores(0.37), scores(0.38)],           # +0.06 > 2 x 0.01: gain
        "noisy": [scores(0.25), scores(0.35), scores(0.45)],           # +0.04 < 2 x 0.10: tie
        "worse": [scores(0.20, 0.1), scores(0.21, 0.2), scores(0.22, 0.3)],  # -0.10: loss
    }, reference="none", classes=["General trash"])
    assert list(table.index) == ["none", "paste", "noisy", "worse"]
    assert list(table["verdict"]) == ["reference", "gain", "tie", "loss"]
    assert table.loc["paste", "Δ vs none"] == pytest.approx(0.06)
    assert table.loc["worse", "IoU General trash"] == pytest.approx(0.2)
    assert table.loc["noisy", "mean ± spread"] == "0.350 ± 0.100"
    with pytest.raises(ValueError, match="reference 'base' is not among"):
        compare_table({"none": [scores(0.3)]}, reference="base")


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        SeedResults([scores(0.3), scores(math.nan)])


def test_variant_record_holds_what_the_metrics_files_promise():
    rec = variant_record(SeedResults([scores(0.2), scores(0.4)], seeds=[0, 1], run_names=["r0", "r1"]))
    assert rec["val_mIoU_mean"] == pytest.approx(0.3) and rec["val_mIoU_std"] == pytest.approx(math.sqrt(0.02))
    assert rec["seeds"] == [0, 1] and rec["run_names"] == ["r0", "r1"] and rec["val_mIoU"] == [0.2, 0.4]
    assert len(rec["per_class_iou"]) == NUM_CLASSES and rec["per_class_iou"]["Paper"] is None
