"""The competition metric against confusion matrices and scores worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trashlib.metrics import (
    ConfusionMeter,
    confusion_matrix,
    frequency_weighted_iou,
    mean_class_accuracy,
    miou,
    pixel_accuracy,
    scores,
)

# 3 classes, 6 pixels; (target, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0)
TARGET = np.array([[0, 0, 1], [1, 2, 2]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])
# rows = ground truth, columns = prediction
HAND = np.array([[1, 1, 0],
                 [0, 2, 0],
                 [1, 0, 1]])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(PRED, TARGET, num_classes=3)
    np.testing.assert_array_equal(cm, HAND)
    assert cm.dtype == np.int64


def test_scores_by_hand():
    # IoU = tp / (row + col - tp): 1/(2+2-1), 2/(2+3-2), 1/(2+1-1)
    mean, iou = miou(HAND)
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 1 / 2])
    assert mean == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert pixel_accuracy(HAND) == pytest.approx(4 / 6)
    assert mean_class_accuracy(HAND) == pytest.approx((1 / 2 + 2 / 2 + 1 / 2) / 3)
    # every class holds 2 of the 6 ground-truth pixels
    assert frequency_weighted_iou(HAND) == pytest.approx(2 / 6 * (1 / 3 + 2 / 3 + 1 / 2))
    s = scores(HAND)
    assert (s.miou, s.pixel_accuracy, s.fwiou) == (pytest.approx(0.5), pytest.approx(4 / 6), pytest.approx(0.5))


def test_ignored_pixels_are_skipped():
    target = np.array([[0, 255], [1, 255]])
    pred = np.array([[0, 1], [1, 255]])  # whatever is predicted under an ignored pixel does not count
    cm = confusion_matrix(pred, target, num_classes=3, ignore_index=255)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert cm.sum() == 2


def test_absent_class_is_nan_and_excluded_from_the_mean():
    target = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    mean, iou = miou(confusion_matrix(pred, target, num_classes=3))
    np.testing.assert_allclose(iou[:2], [1 / 2, 2 / 3])
    assert math.isnan(iou[2])
    assert mean == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_predicted_but_absent_class_scores_zero():
    target = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # class 2 never occurs but is predicted once
    mean, iou = miou(confusion_matrix(pred, target, num_classes=3))
    np.testing.assert_allclose(iou, [1 / 2, 1, 0])
    assert mean == pytest.approx(0.5)


def test_accumulated_matrix_differs_from_mean_of_per_image_miou():
    a_t, a_p = np.array([0, 0, 0, 1]), np.array([0, 0, 0, 1])  # perfect: mIoU 1
    b_t, b_p = np.array([0, 0, 0, 0]), np.array([1, 1, 0, 0])  # IoU0 2/4, IoU1 0/2: mIoU 0.25
    per_image = [miou(confusion_matrix(p, t, num_classes=2))[0] for p, t in [(a_p, a_t), (b_p, b_t)]]
    assert np.mean(per_image) == pytest.approx(0.625)
    # one matrix: [[5, 2], [0, 1]] -> IoU0 5/(7+5-5), IoU1 1/(1+3-1)
    total = confusion_matrix(a_p, a_t, num_classes=2) + confusion_matrix(b_p, b_t, num_classes=2)
    np.testing.assert_array_equal(total, [[5, 2], [0, 1]])
    assert miou(total)[0] == pytest.approx((5 / 7 + 1 / 3) / 2)  # 0.524, not 0.625


def test_torch_tensors_and_batches():
    cm = confusion_matrix(torch.from_numpy(PRED)[None].repeat(2, 1, 1), torch.from_numpy(TARGET)[None].repeat(2, 1, 1),
                          num_classes=3)
    np.testing.assert_array_equal(cm, 2 * HAND)


def test_default_matrix_is_competition_sized():
    assert confusion_matrix(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)).shape == (11, 11)


@pytest.mark.parametrize("bad", [3, -1])
def test_out_of_range_prediction_raises(bad):
    pred = PRED.copy()
    pred[0, 0] = bad
    with pytest.raises(ValueError, match=f"label {bad}"):
        confusion_matrix(pred, TARGET, num_classes=3)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(PRED[:, :2], TARGET, num_classes=3)


def test_confusion_meter_accumulates():
    meter = ConfusionMeter(num_classes=3)
    assert math.isnan(meter.compute().miou)  # nothing seen yet
    meter.update(PRED, TARGET)
    meter.update(torch.from_numpy(PRED), torch.from_numpy(TARGET))
    np.testing.assert_array_equal(meter.confusion, 2 * HAND)
    assert meter.compute().miou == pytest.approx(0.5)  # ratios unchanged by doubling


def test_scores_as_dict_marks_empty_classes():
    d = scores(confusion_matrix(np.array([0, 1]), np.array([0, 1]))).as_dict()
    assert d["mIoU"] == 1.0
    assert d["per_class_iou"]["Background"] == 1.0 and d["per_class_iou"]["General trash"] == 1.0
    assert d["per_class_iou"]["Clothing"] is None


# -- small objects ---------------------------------------------------------------------------------------
def test_object_hits_and_recall_by_hand():
    from trashlib.metrics import object_hits, object_recall

    pred = np.array([[1, 1, 0], [2, 2, 2]])
    objects = [(1, np.array([0, 1, 2])),   # 2 of 3 pixels right: found
               (2, np.array([3, 4])),      # 2 of 2: found
               (1, np.array([2, 5])),      # 0 of 2: missed
               (2, np.array([4, 2]))]      # 1 of 2 is not more than half: missed
    hits = object_hits(pred, objects, num_classes=3)
    assert hits.tolist() == [[0, 1, 1], [0, 2, 2]]
    total, per_class = object_recall(np.stack([hits, object_hits(pred, [], num_classes=3)]))
    assert total == 0.5
    assert math.isnan(per_class[0]) and per_class[1:].tolist() == [0.5, 0.5]
    assert math.isnan(object_recall(np.zeros((2, 3)))[0])
