"""Pseudo labels: the three recipes by hand, reuse by recipe hash, no label file read, quality by hand."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import confident, write_index
from trashlib.classes import IGNORE_INDEX
from trashlib.data import LabelMapDataset, TrashDataset
from trashlib.data.sources import ConcatSource
from trashlib.pseudo.labels import PseudoRecipe, class_thresholds, make_pseudo_labels, pseudo_label, pseudo_stats
from trashlib.pseudo.quality import pseudo_gallery, quality_curve, set_quality

_OPENED: list | None = None  # while a list, the audit hook records every file opened


def _audit(event, args):
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)


def _probs(labels, confs, num_classes=3):
    """(C, 1, W) maps whose argmax is `labels` with top probability `confs`, the rest spread evenly."""
    labels, confs = np.asarray(labels), np.asarray(confs, np.float32)
    out = np.repeat(((1 - confs) / (num_classes - 1))[None], num_classes, 0)
    out[labels, 0, np.arange(labels.size)] = confs[0]
    return out


def test_the_recipes_by_hand():
    p = _probs([[0, 1, 2, 1]], [[0.95, 0.5, 0.9, 0.89]])
    assert pseudo_label(p).tolist() == [[0, 1, 2, 1]]                      # the winning team's: every pixel
    assert pseudo_label(p, threshold=0.9).tolist() == [[0, 255, 2, 255]]    # >= 0.9 kept
    assert pseudo_label(p, threshold=[0.0, 0.5, 1.0]).tolist() == [[0, 1, 255, 1]]  # per predicted class


def test_class_thresholds_keep_the_top_share_of_each_predicted_class(tmp_path):
    p = _probs([[1, 1, 1, 1, 0]], [[0.9, 0.8, 0.7, 0.6, 0.99]])
    index = write_index(tmp_path / "t" / "test", {"a.jpg": p}, split="test")
    assert class_thresholds([index], keep=0.5, num_classes=3).tolist() == pytest.approx([0.99, 0.8, 1.0], abs=5e-3)
    assert class_thresholds([index], keep=0.25, num_classes=3)[1] == pytest.approx(0.9, abs=5e-3)
    assert class_thresholds([index], keep=1.0, num_classes=3)[1] == pytest.approx(0.6, abs=5e-3)


@pytest.mark.parametrize("bad", [dict(kind="soft"), dict(kind="global", threshold=1.5),
                                 dict(kind="global", threshold=float("nan")), dict(kind="per_class", keep=0)])
def test_bad_recipes_are_refused(bad):
    with pytest.raises(ValueError, match="recipe|PseudoRecipe"):
        PseudoRecipe(**bad)


def test_non_finite_probabilities_are_refused():
    p = _probs([[0, 1]], [[0.9, 0.9]])
    p[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        pseudo_label(p)


@pytest.fixture
def teacher(tiny_copy, tmp_path):
    """A teacher on the tiny test split: the true labels at 0.6 (image 0) and 0.95 (image 1)."""
    truth = TrashDataset(tiny_copy, "test_labels")
    maps = {name: confident(truth.load_mask(i), p=0.6 if i == 0 else 0.95) for i, name in enumerate(truth.file_names)}
    return write_index(tmp_path / "teacher" / "test", maps, split="test", data_root=str(tiny_copy))


def test_no_label_file_is_read_to_make_pseudo_labels(tiny_copy, teacher, tmp_path):
    global _OPENED
    for name in ("train.json", "train_all.json", "val.json", "test.json", "test_labels.json"):
        (tiny_copy / name).unlink()   # nothing to read: a read would fail
    _OPENED = []
    try:
        sets = [make_pseudo_labels(teacher, PseudoRecipe(kind), out_dir=tmp_path / "pl") for kind in
                ("hard", "global", "per_class")]
        opened = _OPENED
    finally:
        _OPENED = None
    assert not [p for p in opened if p.endswith(".json") and str(tiny_copy) in p], opened
    assert all(Path(s.items[0]["image"]).is_absolute() and Path(s.items[0]["image"]).parent.parent == tiny_copy
               for s in sets)  # the data root's test images, referenced


def test_sets_hold_the_recipes_and_are_reused(tiny_copy, teacher, tmp_path):
    hard = make_pseudo_labels(teacher, out_dir=tmp_path)
    again = make_pseudo_labels(teacher, PseudoRecipe("hard", threshold=0.1), out_dir=tmp_path)  # knob of another kind
    assert again.root == hard.root and "hard" in hard.root.name
    stamp = (hard.root / "index.json").stat().st_mtime_ns
    assert make_pseudo_labels(teacher, out_dir=tmp_path).path.stat().st_mtime_ns == stamp
    strict = make_pseudo_labels(teacher, PseudoRecipe("global", threshold=0.9), out_dir=tmp_path)
    assert strict.root != hard.root and "global-t0.9" in strict.root.name
    truth = TrashDataset(tiny_copy, "test_labels")
    assert (hard.load_mask(0) == truth.load_mask(0)).all()
    assert (strict.load_mask(0) == IGNORE_INDEX).all()            # image 0's teacher is only 0.6 sure
    assert (strict.load_mask(1) == truth.load_mask(1)).all()
    stats = pseudo_stats(strict)
    assert stats["labelled"] == stats["pixels"] // 2 and sum(stats["per_class"]) == stats["labelled"]
    image, mask = ConcatSource([strict])[0]                        # trainable as an extra training set
    assert image.shape[:2] == mask.shape


def test_per_class_keeps_about_the_share_of_every_class(tiny_copy, tmp_path):
    rng = np.random.default_rng(0)
    names = TrashDataset(tiny_copy, "test").file_names
    noisy = write_index(tmp_path / "noisy" / "test", {n: rng.dirichlet(np.ones(11) * 0.3, (64, 64)).transpose(2, 0, 1)
                                                      for n in names}, split="test", data_root=str(tiny_copy))
    per_class = make_pseudo_labels(noisy, PseudoRecipe("per_class", keep=0.5), out_dir=tmp_path)
    stats = pseudo_stats(per_class)
    hard = pseudo_stats(make_pseudo_labels(noisy, out_dir=tmp_path))
    assert len(per_class.recipe["thresholds"]) == 11
    kept = np.array(stats["per_class"]) / np.array(hard["per_class"])
    assert ((kept > 0.45) & (kept < 0.6)).all(), kept


def test_a_teacher_on_val_is_refused(tiny_copy, tmp_path):
    truth = TrashDataset(tiny_copy, "val")
    maps = {name: confident(truth.load_mask(i), p=0.9) for i, name in enumerate(truth.file_names)}
    index = write_index(tmp_path / "v" / "val", maps, split="val", data_root=str(tiny_copy))
    with pytest.raises(ValueError, match="'val' split.*leaks"):
        make_pseudo_labels(index, out_dir=tmp_path)


def test_an_unknown_set_folder_is_left_alone(teacher, tmp_path):
    hard = make_pseudo_labels(teacher, out_dir=tmp_path)
    (hard.root / ".trashlib-label-maps").unlink()  # no longer recognisably ours
    with pytest.raises(FileExistsError, match="not made by trashlib"):
        make_pseudo_labels(teacher, out_dir=tmp_path, force=True)


def test_quality_by_hand(tiny_copy, teacher, tmp_path):
    labels = tiny_copy / "test_labels.json"
    truth = TrashDataset(tiny_copy, "test_labels")
    n0, n1 = truth.load_mask(0).size, truth.load_mask(1).size
    curve = quality_curve(teacher, labels, thresholds=[0.0, 0.9, 0.99]).set_index(["threshold", "class"])
    assert curve.loc[(0.0, "all"), ["coverage", "accuracy"]].tolist() == [1.0, 1.0]
    assert curve.loc[(0.9, "all"), "coverage"] == pytest.approx(n1 / (n0 + n1))
    assert curve.loc[(0.99, "all"), "coverage"] == 0 and np.isnan(curve.loc[(0.99, "all"), "accuracy"])
    strict = make_pseudo_labels(teacher, PseudoRecipe("global", threshold=0.9), out_dir=tmp_path)
    q = set_quality(strict, labels)
    assert q.loc["all", "coverage"] == pytest.approx(n1 / (n0 + n1)) and q.loc["all", "accuracy"] == 1.0
    panels, masks, titles = pseudo_gallery({"global": strict}, labels, strict.file_names[:1])
    assert len(panels) == 3 and masks[0] is None and "truth" in titles[1] and "0% labelled" in titles[2]


def test_quality_names_an_image_the_labels_lack(teacher, tiny_copy):
    with pytest.raises(ValueError, match="val.json: has no image"):
        quality_curve(teacher, tiny_copy / "val.json")


def test_label_map_dataset_reads_a_pseudo_set(teacher, tmp_path):
    s = make_pseudo_labels(teacher, out_dir=tmp_path)
    assert len(LabelMapDataset(s.root)) == len(teacher)
