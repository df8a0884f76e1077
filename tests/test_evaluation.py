"""Scoring stored predictions: one confusion matrix over all images, per-image scores, step timing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trashlib.scoring.evaluation import evaluate_label_maps, train_seconds_per_step


def test_evaluate_label_maps_accumulates_one_matrix_and_scores_each_image():
    gt_a = np.array([[0, 0], [1, 1]])
    gt_b = np.array([[2, 2], [2, 255]])
    pred_a = np.array([[0, 0], [1, 1]])          # perfect: mIoU 1 over classes 0 and 1
    pred_b = np.array([[2, 0], [2, 2]])          # class 2: tp 2, fn 1; a 0 predicted where 2 is true
    ev = evaluate_label_maps([("a.jpg", pred_a, gt_a), ("b.jpg", pred_b, gt_b)], num_classes=3)
    # accumulated by hand: class 0 tp 2, fp 1 -> 2/3; class 1 -> 1; class 2 tp 2, fn 1 -> 2/3
    assert ev.confusion.sum() == 7
    np.testing.assert_allclose(ev.scores.per_class_iou, [2 / 3, 1.0, 2 / 3])
    assert ev.scores.miou == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert list(ev.per_image["file_name"]) == ["a.jpg", "b.jpg"]
    assert ev.per_image.loc[0, "mIoU"] == 1.0
    # image b alone: class 0 predicted but absent -> IoU 0; class 2 -> 2/3
    assert ev.per_image.loc[1, "mIoU"] == pytest.approx((0 + 2 / 3) / 2)
    frame = ev.per_class_frame()
    assert list(frame["gt_pixels"][:3]) == [2, 2, 3]


class _FakeRun:
    def __init__(self, steps, times):
        self._frame = pd.DataFrame({"step": steps, "time": times})

    def metrics_frame(self, kind):
        return self._frame


def test_train_seconds_per_step_ignores_evaluation_pauses():
    # 10 steps per log line at 0.5 s per step, one interval holding a 60 s evaluation
    run = _FakeRun([10, 20, 30, 40, 50], [5.0, 10.0, 75.0, 80.0, 85.0])
    assert train_seconds_per_step(run) == pytest.approx(0.5)
    assert np.isnan(train_seconds_per_step(_FakeRun([10], [5.0])))


def test_ranked_images_best_then_worst_each_once():
    import pandas as pd

    from trashlib.scoring.evaluation import Evaluation, ranked_images

    per_image = pd.DataFrame({"index": [0, 1, 2], "file_name": ["a", "b", "c"], "mIoU": [0.5, 0.9, 0.1],
                              "pixel_accuracy": [1, 1, 1]})
    ev = Evaluation(np.zeros((11, 11), dtype=np.int64), None, per_image)
    assert ranked_images(ev, best=1, worst=1) == [1, 2]
    assert ranked_images(ev, best=2, worst=2) == [1, 0, 2]  # three images: none shown twice


def test_steps_to_reach_extrapolates_a_log_linear_curve_by_hand():
    import math

    from trashlib.scoring.evaluation import steps_to_reach

    steps = [100, 200, 400, 800]
    miou = [0.1 + 0.05 * math.log(s / 100) for s in steps]  # a = 0.1 - 0.05 ln 100, b = 0.05
    assert steps_to_reach(steps, miou, 0.3) == pytest.approx(100 * math.exp(4), rel=1e-6)
    assert steps_to_reach(steps, miou, 0.15) == 400  # already reached: the first evaluation at the target
    assert math.isnan(steps_to_reach(steps[:2], miou[:2], 0.3))  # too few points to extrapolate
    assert math.isnan(steps_to_reach(steps, [0.2, 0.19, 0.18, 0.17], 0.3))  # not rising


def test_an_index_is_scored_with_the_share_of_small_objects_it_finds(tmp_path):
    from conftest import confident, make_tiny_dataset, write_index

    from trashlib.data import TrashDataset
    from trashlib.data.instances import small_objects
    from trashlib.scoring.evaluation import evaluate_index

    root = make_tiny_dataset(tmp_path / "data", n_train=24, n_val=6, seed=1)  # test_training.learn_root
    val = TrashDataset(root, "val")
    assert sum(map(len, small_objects(val))) > 0  # under 16 pixels at 64: these images have some
    right = write_index(tmp_path / "right", {n: confident(val.load_mask(i), p=0.9) for i, n in enumerate(val.file_names)})
    blank = write_index(tmp_path / "blank", {n: confident(np.zeros_like(val.load_mask(i)), p=0.9)
                                             for i, n in enumerate(val.file_names)})
    assert evaluate_index(right, root, "val").small_object_recall == 1.0
    evaluation = evaluate_index(blank, root, "val")
    assert evaluation.small_object_recall == 0.0 and evaluation.objects.shape == (len(val), 2, 11)


def test_learning_curves_put_models_on_one_clock_and_compare_at_the_common_time():
    from types import SimpleNamespace

    from trashlib.scoring.evaluation import at_equal_time, learning_curves

    def run(model, per_step, evals):
        train = pd.DataFrame({"step": [1, 2, 3, 4], "time": [per_step * s + (5 if s > 2 else 0) for s in range(1, 5)]})
        return SimpleNamespace(name=f"{model}_run", config=SimpleNamespace(model=model, batch_size=4, grad_accum=2),
                               metrics=lambda kind: [{"step": s, "mIoU": v} for s, v in evals],
                               metrics_frame=lambda kind: train)

    fast = run("fast", 0.5, [(10, 0.10), (20, 0.20), (40, 0.30)])   # 5, 10, 20 s
    slow = run("slow", 2.0, [(4, 0.05), (6, 0.15), (8, 0.25)])      # 8, 12, 16 s (the 5 s pause is no step time)
    curves = learning_curves([fast, slow])
    assert curves["images seen"].tolist() == [80, 160, 320, 32, 48, 64]
    np.testing.assert_allclose(curves["train seconds"], [5, 10, 20, 8, 12, 16])
    common, values = at_equal_time(curves)
    assert common == 16 and values.to_dict() == {"fast": 0.20, "slow": 0.25}  # fast's last evaluation by 16 s
    late = run("late", 1.0, [(30, 0.4)])   # first evaluated after the common time
    assert np.isnan(at_equal_time(learning_curves([fast, slow, late]))[1]["late"])
    with pytest.raises(ValueError, match="no evaluations"):
        at_equal_time(learning_curves([]))
