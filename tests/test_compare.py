"""Comparisons over seeds: mean ± spread by hand, the interval rule by hand, the pairing by seed, the bootstrap
over images, and the records for the metrics files."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trashlib.classes import NUM_CLASSES
from trashlib.metrics import Scores, class_iou
from trashlib.scoring.compare import (Contrast, ArmResults, against_claim, compare_table, contrast, image_contrast,
                                      recorded, split_gap, variant_record, verdict)


def scores(miou: float, first_class: float = 0.5) -> Scores:
    per_class = np.full(NUM_CLASSES, np.nan)
    per_class[0], per_class[1] = 0.9, first_class
    return Scores(miou, per_class, 0.9, 0.5, 0.8)


def test_mean_and_sample_spread_by_hand():
    r = ArmResults([scores(0.30), scores(0.32), scores(0.34)], seeds=[0, 1, 2], run_names=["a", "b", "c"])
    assert r.mean == pytest.approx(0.32)
    assert r.std == pytest.approx(0.02)  # sqrt(((-.02)^2 + 0 + .02^2) / 2)
    assert ArmResults([scores(0.3)]).std == 0.0


@pytest.mark.parametrize("delta, spread, seeds, expected", [
    # 3 seeds of spread 0.02: SE 0.02 x sqrt(2/3) = 0.01633 on 4 degrees of freedom, t = 2.7764: ±0.04534
    (0.046, 0.02, 3, "gain"), (-0.046, 0.02, 3, "loss"), (0.045, 0.02, 3, "tie"), (-0.045, 0.02, 3, "tie"),
    (0.0, 0.0, 3, "tie"), (0.01, 0.0, 3, "gain"), (0.2, 0.01, 1, "one seed")])
def test_verdict_rule(delta, spread, seeds, expected):
    assert verdict(delta, spread, seeds=seeds) == expected


def test_interval_and_mde_by_hand():
    # SE^2 = 1e-4 (seeds, 2 df) + 1e-4 (images): SE 0.014142; Welch-Satterthwaite df = (2e-4)^2 / (1e-4^2 / 2) = 8
    c = Contrast(0.03, 3, var_train=1e-4, df_train=2, var_eval=1e-4)
    assert c.se == pytest.approx(0.0141421, abs=1e-6) and c.df == pytest.approx(8.0)
    lo, hi = c.ci  # t(0.975, 8) = 2.306004
    assert lo == pytest.approx(0.03 - 2.306004 * 0.0141421, abs=1e-5)
    assert hi == pytest.approx(0.03 + 0.0326116, abs=1e-5)
    assert c.mde == pytest.approx((2.306004 + 0.888889) * 0.0141421, abs=1e-4)  # t(0.80, 8) = 0.888889
    assert c.verdict == "tie" and c.noise == "seeds + images"
    assert Contrast(0.04, 3, var_train=1e-4, df_train=2, var_eval=1e-4).verdict == "gain"
    only_images = Contrast(0.03, 1, var_eval=1e-4)  # one seed: the interval of the images alone, no verdict
    assert only_images.df == math.inf and only_images.ci[0] == pytest.approx(0.03 - 1.959964 * 0.01, abs=1e-6)
    assert only_images.verdict == "one seed" and only_images.noise == "images"
    rec = c.as_dict()
    assert set(rec) == {"delta", "delta_ci", "mde", "noise", "verdict"} and rec["delta_ci"] == list(c.ci)


def test_verdict_refuses_non_finite_numbers():
    with pytest.raises(ValueError, match="finite"):
        verdict(math.nan, 0.1)
    with pytest.raises(ValueError, match="var_eval must be finite"):
        Contrast(0.1, 2, var_eval=math.inf)


def test_seeds_are_paired_by_number_and_their_spread_is_the_training_noise():
    ref = ArmResults([scores(0.30), scores(0.40), scores(0.35)], seeds=[0, 1, 2])
    arm = ArmResults([scores(0.37), scores(0.32), scores(0.41)], seeds=[2, 0, 1])  # +0.02, +0.01, +0.02
    main, _ = contrast(arm, ref)
    assert main.delta == pytest.approx(0.05 / 3) and main.noise == "seeds" and main.df_train == 2
    assert main.var_train == pytest.approx(np.var([0.02, 0.01, 0.02], ddof=1) / 3)
    assert main.verdict == "gain"  # paired: a spread of 0.05 between seeds does not hide a steady +0.017
    unpaired = contrast(ArmResults(arm.scores, seeds=[5, 6, 7]), ref)[0]
    assert unpaired.delta == pytest.approx(main.delta) and unpaired.verdict == "tie"


def _stack(per_image: list[np.ndarray]) -> np.ndarray:
    return np.stack(per_image).astype(np.int64)


def _image(right: int, wrong: int) -> np.ndarray:
    """A confusion of one image with two classes in play: `right` pixels of each right, `wrong` of class 1 as 2."""
    c = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    c[1, 1] = c[2, 2] = right
    c[1, 2] = wrong
    return c


def _results(confusions: list[np.ndarray], seeds=(0, 1)) -> ArmResults:
    from trashlib.metrics import scores as scores_of
    return ArmResults([scores_of(c.sum(0)) for c in confusions], seeds=list(seeds), confusions=confusions)


def test_the_bootstrap_over_images_measures_evaluation_noise():
    rng = np.random.default_rng(0)
    base = [_image(100, int(w)) for w in rng.integers(0, 60, size=20)]
    better = [_image(100, int(w)) for w in rng.integers(0, 40, size=20)]
    ref, arm = _results([_stack(base)] * 2), _results([_stack(better)] * 2)
    main, by_class = contrast(arm, ref, classes=["General trash", "Battery"])
    assert main.var_train == 0 and main.var_eval > 0 and main.noise == "seeds + images"
    assert main.delta == pytest.approx(arm.mean - ref.mean)
    assert by_class["Battery"] is None  # empty everywhere
    assert by_class["General trash"].delta == pytest.approx(arm.per_class_iou[1] - ref.per_class_iou[1])
    # four copies of every image: the same scores, a quarter of the variance (the bootstrap's 1/n)
    quad = contrast(_results([_stack(better * 4)] * 2), _results([_stack(base * 4)] * 2))[0]
    assert quad.delta == pytest.approx(main.delta) and quad.var_eval == pytest.approx(main.var_eval / 4, rel=0.15)
    # identical images: every resample gives the same ratio, no evaluation noise
    flat = contrast(_results([_stack([_image(100, 30)] * 20)] * 2), _results([_stack([_image(100, 50)] * 20)] * 2))[0]
    assert flat.var_eval == pytest.approx(0, abs=1e-15) and flat.verdict == "gain"


def test_post_processing_is_judged_by_the_images_with_the_seeds_standing_in_for_training():
    rng = np.random.default_rng(1)
    base = _stack([_image(100, int(w)) for w in rng.integers(0, 60, size=20)])
    after = _stack([_image(100, int(w)) for w in rng.integers(0, 40, size=20)])
    from trashlib.metrics import miou
    alone, by_class = image_contrast(after, base, classes=["General trash", "Battery"])
    assert alone.delta == pytest.approx(miou(after.sum(0))[0] - miou(base.sum(0))[0])
    assert alone.noise == "images" and alone.var_eval > 0 and alone.verdict == "one seed"  # no training noise
    assert by_class["Battery"] is None and by_class["General trash"].noise == "images"
    same = contrast(_results([after] * 2), _results([base] * 2))[0]  # two identical seeds: the same bootstrap
    assert alone.var_eval == pytest.approx(same.var_eval)
    noise = ArmResults([scores(0.50, 0.4), scores(0.52, 0.6), scores(0.54, 0.5)], seeds=[0, 1, 2])
    both, by_class = image_contrast(after, base, noise=noise, classes=["General trash"])
    assert both.noise == "seeds + images" and both.delta == alone.delta and both.seeds == 3
    assert both.var_train == pytest.approx(2 * noise.std ** 2 / 3) and both.df_train == 4
    assert both.mde > alone.mde and both.ci[0] < alone.ci[0]  # the seeds widen the interval
    assert by_class["General trash"].var_train == pytest.approx(2 * 0.1 ** 2 / 3)  # that class's own spread
    assert image_contrast(base, base, noise=noise)[0].verdict == "tie"
    with pytest.raises(ValueError, match="same images"):
        image_contrast(after[:5], base, noise=noise)


def test_images_are_resampled_only_when_both_arms_scored_the_same_images():
    base, better = _stack([_image(100, 50)] * 4 + [_image(100, 0)]), _stack([_image(100, 10)] * 5)
    ref = _results([base, base])
    one_missing = _results([better, better])
    one_missing.confusions[1] = None  # a run trained before per-image confusions were recorded
    assert contrast(one_missing, ref)[0].noise == "seeds"
    assert contrast(_results([better[:4], better[:4]]), ref)[0].noise == "seeds"
    named = ArmResults(_results([better, better]).scores, seeds=[0, 1], confusions=[better, better],
                        image_names=list("abcde"))
    assert contrast(named, ArmResults(ref.scores, seeds=[0, 1], confusions=ref.confusions,
                                       image_names=list("abcdf")))[0].noise == "seeds"


def test_table_judges_each_variant_by_its_interval():
    table = compare_table({
        "none": [scores(0.30), scores(0.31), scores(0.32)],
        "paste": [scores(0.36), scores(0.37), scores(0.38)],           # +0.06 on every seed: gain
        "noisy": [scores(0.25), scores(0.35), scores(0.45)],           # +0.05 +-0.09: tie
        "worse": [scores(0.20, 0.1), scores(0.21, 0.2), scores(0.22, 0.3)],  # -0.10 on every seed: loss
    }, reference="none", classes=["General trash"])
    assert list(table.index) == ["none", "paste", "noisy", "worse"]
    assert list(table["verdict"]) == ["reference", "gain", "tie", "loss"]
    assert table.loc["paste", "Δ vs none"] == pytest.approx(0.06)
    assert table.loc["paste", "95% CI"] == "[+0.060, +0.060]" and table.loc["paste", "noise"] == "seeds"
    assert table.loc["noisy", "MDE"] > 0.05 and np.isnan(table.loc["none", "MDE"])
    assert table.loc["worse", "IoU General trash"] == pytest.approx(0.2)
    assert table.loc["worse", "Δ General trash"] == pytest.approx(-0.3)
    assert table.loc["noisy", "mean ± spread"] == "0.350 ± 0.100"
    single = compare_table({"none": [scores(0.3)], "paste": [scores(0.4)]})  # no noise measured: no interval
    assert single.loc["paste", "verdict"] == "one seed" and single.loc["paste", "95% CI"] == ""
    assert np.isnan(single.loc["paste", "MDE"]) and single.loc["paste", "noise"] == "none"
    with pytest.raises(ValueError, match="reference 'base' is not among"):
        compare_table({"none": [scores(0.3)]}, reference="base")


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        ArmResults([scores(0.3), scores(math.nan)])


def test_variant_record_holds_what_the_metrics_files_promise():
    rec = variant_record(ArmResults([scores(0.2), scores(0.4)], seeds=[0, 1], run_names=["r0", "r1"]))
    assert rec["val_mIoU_mean"] == pytest.approx(0.3) and rec["val_mIoU_std"] == pytest.approx(math.sqrt(0.02))
    assert rec["seeds"] == [0, 1] and rec["run_names"] == ["r0", "r1"] and rec["val_mIoU"] == [0.2, 0.4]
    assert len(rec["per_class_iou"]) == NUM_CLASSES and rec["per_class_iou"]["Paper"] is None
    ref = ArmResults([scores(0.1, 0.4), scores(0.3, 0.2)], seeds=[0, 1])
    rec = variant_record(ArmResults([scores(0.2), scores(0.4)], seeds=[0, 1]), ref, classes=["General trash", "Paper"])
    assert rec["delta"] == pytest.approx(0.1) and rec["verdict"] == "gain" and len(rec["delta_ci"]) == 2
    assert rec["mde"] == pytest.approx(0.0) and rec["noise"] == "seeds"
    assert rec["per_class_delta"]["General trash"]["delta"] == pytest.approx(0.2)
    assert rec["per_class_delta"]["Paper"] is None


def test_small_object_recall_is_each_seeds_share_found_averaged_and_shown_where_recorded():
    def objects(found, there):  # two images, all objects of class 1
        return np.array([[[0, found[0]] + [0] * 9, [0, there[0]] + [0] * 9],
                         [[0, found[1]] + [0] * 9, [0, there[1]] + [0] * 9]])

    arm = ArmResults([scores(0.3), scores(0.3)], seeds=[0, 1],
                      objects=[objects((1, 2), (2, 2)), objects((0, 1), (2, 2))])  # 3 of 4, then 1 of 4
    assert arm.small_object_recall == pytest.approx(0.5)
    ref = ArmResults([scores(0.3), scores(0.3)], seeds=[0, 1])  # recorded before the counts were kept
    assert ref.small_object_recall is None
    table = compare_table({"none": ref, "paste": arm})
    assert np.isnan(table.loc["none", "small-object recall"])
    assert table.loc["paste", "small-object recall"] == pytest.approx(0.5)
    assert "small-object recall" not in compare_table({"none": ref, "again": ref}).columns
    assert variant_record(arm, ref)["small_object_recall"] == pytest.approx(0.5)
    assert variant_record(ref)["small_object_recall"] is None
    with pytest.raises(ValueError, match="2 scores but 1 sets of per-image small objects"):
        ArmResults(arm.scores, objects=arm.objects[:1])


def test_a_claim_is_read_against_the_interval_and_the_power_of_the_design():
    tie = Contrast(0.002, 3, var_train=0.005 ** 2, df_train=2)  # MDE about 0.035
    assert "cannot tell" in against_claim(tie, 0.01) and "the claim inside it" in against_claim(tie, 0.01)
    assert "would show 80% of the time" in against_claim(tie, -0.05) and "outside" in against_claim(tie, -0.05)
    assert against_claim(tie, 0.0).endswith("the claim of no effect agrees: no effect larger than the MDE "
                                            f"{tie.mde:.4f}")
    gain = Contrast(0.05, 3, var_train=0.005 ** 2, df_train=2)
    assert against_claim(gain, 0.01).endswith("a gain in the claimed direction")
    assert against_claim(gain, -0.05).endswith("a gain against the claim")
    assert "no test of the claim" in against_claim(Contrast(0.05, 1), 0.01)
    for judged in (tie, gain):  # what a metrics file records reads the same
        assert against_claim(judged.as_dict(), -0.05) == against_claim(judged, -0.05)
    assert "no test of the claim" in against_claim({"delta": 0.05, "verdict": "one seed"}, 0.01)
    with pytest.raises(ValueError, match="finite"):
        against_claim(gain, math.nan)


def test_a_recorded_contrast_reads_back_only_when_its_interval_is_whole():
    judged = Contrast(0.02, 3, var_train=0.005 ** 2, df_train=2)
    verdict_, ci, mde = recorded(judged.as_dict())
    assert verdict_ == judged.verdict and ci == pytest.approx(judged.ci) and mde == pytest.approx(judged.mde)
    for broken in ({}, None, {**judged.as_dict(), "mde": None}, {**judged.as_dict(), "delta_ci": [0.1]},
                   {**judged.as_dict(), "verdict": "better"}, {**judged.as_dict(), "delta_ci": [0.1, math.nan]}):
        assert recorded(broken) is None


def test_split_gap_judges_one_model_on_two_sets_of_images_by_their_own_noise():
    rng = np.random.default_rng(0)
    train = _stack([_image(100, int(w)) for w in rng.integers(0, 10, 40)])        # scores high, alike
    val = _stack([_image(100, int(w)) for w in rng.integers(40, 80, 40)])         # scores lower
    gap = split_gap(train, val)
    by_hand = float(np.nanmean(class_iou(train.sum(0)))) - float(np.nanmean(class_iou(val.sum(0))))
    assert gap.delta == pytest.approx(by_hand)
    assert gap.delta > 0 and gap.verdict == "gain" and gap.noise == "images"  # one model: a verdict all the same
    same = split_gap(train[:20], train[20:])                                          # two halves of one set
    assert same.verdict == "tie" and same.ci[0] < 0 < same.ci[1]
    noisy = split_gap(_stack([_image(100, w) for w in (0, 90) * 3]), _stack([_image(100, w) for w in (5, 80) * 3]))
    assert noisy.mde > same.mde  # images that disagree widen the interval
    assert Contrast(0.1, 1).verdict == "one seed"  # a trained contrast with one seed still gets none
    with pytest.raises(ValueError, match="second has shape"):
        split_gap(train, train.sum(0))


def test_a_trunk_with_and_without_pasting_is_recorded_side_by_side_with_its_image_noise():
    from trashlib.scoring.compare import trunk_comparison_record

    rng = np.random.default_rng(1)
    without = _results([_stack([_image(100, int(w)) for w in rng.integers(0, 60, size=20)])], seeds=[0])
    with_ = _results([_stack([_image(100, int(w)) for w in rng.integers(0, 40, size=20)])], seeds=[0])
    without.run_names, with_.run_names = ["bare"], ["pasted"]
    record = trunk_comparison_record({"with pasting": with_, "without pasting": without},
                                     pasting="online rare", classes=["General trash", "Battery"])
    assert record["pasting"] == "online rare"
    assert record["with_pasting"]["run"] == "pasted" and record["without_pasting"]["run"] == "bare"
    assert record["with_pasting"]["val_mIoU"] == pytest.approx(with_.mean)
    assert record["without_pasting"]["per_class_iou"]["Battery"] is None   # empty: no IoU, not 0
    assert record["delta"] == pytest.approx(with_.mean - without.mean)
    lo, hi = record["delta_ci"]
    assert lo < record["delta"] < hi and record["noise"] == "images"
    assert record["verdict"] == "one seed"   # the training noise of a whole run is not measured
    assert record["per_class_delta"]["Battery"] is None and record["per_class_delta"]["General trash"]["delta"] > 0
    assert trunk_comparison_record({}, pasting=None)["not_run"]
