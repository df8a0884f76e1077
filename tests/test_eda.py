"""Dataset statistics, mislabel ranking, containment and the viewer's state, on hand-checked cases."""
from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from trashlib.analysis import eda, mislabel
from trashlib.analysis.viewer import ImageViewer
from trashlib.classes import NUM_CLASSES, class_id
from trashlib.data import TrashDataset

BAG, PAPER, METAL = class_id("Plastic bag"), class_id("Paper"), class_id("Metal")


def _square(x0, y0, x1, y1, *, ann_id, cat, image_id=0):
    poly = [x0, y0, x1, y0, x1, y1, x0, y1]
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": 0,
            "area": float((x1 - x0) * (y1 - y0)), "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [poly]}


class FakeDataset:
    """The TrashDataset interface over hand-built annotations on flat grey images."""

    def __init__(self, anns_per_image, size=40):
        from trashlib.data import rasterize

        self.size, self._anns = size, anns_per_image
        self.file_names = [f"img{i}.jpg" for i in range(len(anns_per_image))]
        self.image_infos = [{"id": i, "file_name": f, "height": size, "width": size} for i, f in enumerate(self.file_names)]
        self._masks = [rasterize(a, height=size, width=size) for a in anns_per_image]

    def __len__(self):
        return len(self._anns)

    def annotations(self, i):
        return self._anns[i]

    def load_image(self, i):
        return np.full((self.size, self.size, 3), 100 + i, np.uint8)

    def load_mask(self, i):
        return self._masks[i]


@pytest.fixture(scope="module")
def tiny_stats(tiny_root):
    ds = TrashDataset(tiny_root, "train_all")
    return ds, eda.collect_stats(ds)


def test_subsample_indices_spread_evenly():
    np.testing.assert_array_equal(eda.subsample_indices(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(eda.subsample_indices(3, None), [0, 1, 2])
    np.testing.assert_array_equal(eda.subsample_indices(3, 50), [0, 1, 2])
    with pytest.raises(ValueError, match="max_images"):
        eda.subsample_indices(3, 0)


def test_counts_match_the_json(tiny_root, tiny_stats):
    _, stats = tiny_stats
    coco = json.loads((tiny_root / "train_all.json").read_text())
    expected = collections.Counter(a["category_id"] for a in coco["annotations"])
    assert {c: int(n) for c, n in enumerate(stats.instance_counts) if n} == dict(expected)
    per_image = collections.Counter(a["image_id"] for a in coco["annotations"])
    assert list(stats.objects_per_image) == [per_image.get(im["id"], 0) for im in coco["images"]]
    assert len(stats.annotations) == len(coco["annotations"]) == len(stats.features)


def test_pixel_shares_sum_to_one(tiny_stats):
    ds, stats = tiny_stats
    assert stats.pixel_counts.sum() == len(ds) * 64 * 64
    table = eda.class_table(stats)
    background = stats.pixel_counts[0] / stats.pixel_counts.sum()
    assert table["pixel_share"].sum() + background == pytest.approx(1.0)
    assert table["pixel_share_fg"].sum() == pytest.approx(1.0)
    assert table["instance_share"].sum() == pytest.approx(1.0)
    assert table["competition_share"]["Paper"] == pytest.approx(9311 / 26240)
    first = ds.load_mask(0)
    assert (first == PAPER).sum() <= stats.pixel_counts[PAPER]


def test_subsampled_stats_read_only_the_chosen_images(tiny_root):
    ds = TrashDataset(tiny_root, "train_all")
    stats = eda.collect_stats(ds, max_images=2, with_features=False, colour_pixels=0)
    assert list(stats.indices) == [0, len(ds) - 1]
    assert set(stats.annotations["index"]) <= {0, len(ds) - 1}
    assert stats.features.shape[0] == 0


def test_colour_samples_are_hsv_in_range(tiny_stats):
    _, stats = tiny_stats
    hsv = np.concatenate([v for v in stats.colours.values() if len(v)])
    assert hsv.shape[1] == 3 and hsv[:, 0].max() < 360 and 0 <= hsv[:, 1:].min() and hsv[:, 1:].max() <= 1


def test_contained_objects_by_hand():
    size = 40
    anns = [_square(0, 0, 20, 20, ann_id=0, cat=BAG),       # the bag: area 400
            _square(5, 5, 10, 10, ann_id=1, cat=PAPER),     # wholly inside
            _square(15, 0, 25, 10, ann_id=2, cat=METAL),    # exactly half inside
            _square(17, 0, 37, 10, ann_id=3, cat=METAL),    # 15% inside
            _square(2, 12, 8, 18, ann_id=4, cat=BAG)]       # a bag in a bag is not "another class"
    masks = [eda.annotation_mask(a, height=size, width=size) for a in anns]
    found = eda.contained_objects(masks, [a["category_id"] for a in anns], min_inside=0.5)
    assert [(b, j) for b, j, _ in found] == [(0, 1), (0, 2)]
    assert found[0][2] == pytest.approx(1.0) and found[1][2] == pytest.approx(0.5, abs=0.05)
    assert [(b, j) for b, j, _ in eda.contained_objects(masks, [a["category_id"] for a in anns], min_inside=0.9)] == [(0, 1)]


def test_containment_summary_over_a_dataset():
    ds = FakeDataset([[_square(0, 0, 20, 20, ann_id=0, cat=BAG), _square(5, 5, 10, 10, ann_id=1, cat=PAPER)],
                      [_square(0, 0, 20, 20, ann_id=2, cat=BAG), _square(30, 30, 38, 38, ann_id=3, cat=METAL)]])
    stats = eda.collect_stats(ds)
    summary = eda.containment_summary(stats)
    assert summary["n_bags"] == 2 and summary["n_bags_containing"] == 1
    assert summary["bag_containment_rate"] == 0.5 and summary["contained_by_class"] == {"Paper": 1}
    assert list(stats.containment["object_id"]) == [1]
    # the paper sits on top of the bag, so the bag shows 400 - 25 of its pixels
    table = stats.annotations.set_index("annotation_id")
    assert table.loc[0, "visible_share"] == pytest.approx(375 / 400, abs=0.02)
    assert table.loc[1, "bag_cover"] == 1.0 and table.loc[3, "bag_cover"] == 0.0


def test_bag_example_is_the_largest_bag_holding_few_objects():
    crowded = [_square(0, 0, 30, 30, ann_id=0, cat=BAG)] + [
        _square(x, y, x + 5, y + 5, ann_id=k, cat=PAPER) for k, (x, y) in enumerate([(2, 2), (10, 2), (2, 10), (10, 10)], 1)]
    one = [_square(0, 0, 20, 20, ann_id=10, cat=BAG), _square(5, 5, 10, 10, ann_id=11, cat=METAL)]
    two = [_square(0, 0, 15, 15, ann_id=20, cat=BAG), _square(2, 2, 6, 6, ann_id=21, cat=PAPER),
           _square(8, 8, 12, 12, ann_id=22, cat=METAL)]
    empty = [_square(0, 0, 25, 25, ann_id=30, cat=BAG)]
    stats = eda.collect_stats(FakeDataset([crowded, one, two, empty]), colour_pixels=0, with_features=False)
    assert eda.bag_example(stats) == (1, [10, 11])            # the 30x30 bag holds four: too busy to read
    assert eda.bag_example(stats, max_objects=4) == (0, [0, 1, 2, 3, 4])
    only_crowded = eda.collect_stats(FakeDataset([crowded]), colour_pixels=0, with_features=False)
    assert eda.bag_example(only_crowded) == (0, [0, 1, 2, 3, 4])   # no small one: the largest bag anyway
    assert eda.bag_example(eda.collect_stats(FakeDataset([empty]), colour_pixels=0, with_features=False)) is None


def test_bad_segmentation_names_the_annotation():
    with pytest.raises(ValueError, match="annotation 7 of image 3"):
        eda.annotation_mask({"id": 7, "image_id": 3, "segmentation": [[1, 2, 3]]}, height=8, width=8)


def test_region_features_of_a_red_square():
    image = np.full((40, 40, 3), 128, np.uint8)
    image[10:30, 5:15] = (200, 20, 20)
    region = np.zeros((40, 40), bool)
    region[10:30, 5:15] = True
    polygon = [5, 10, 15, 10, 15, 30, 5, 30]                    # 10 wide, 20 high
    f = dict(zip(mislabel.FEATURE_NAMES, mislabel.region_features(mislabel.image_feature_maps(image), region,
                                                                  polygon=polygon, visible_share=0.5)))
    assert len(f) == len(mislabel.FEATURE_NAMES)
    assert f["a_mean"] > 40 and f["sat_mean"] > 0.8 and f["hue_bin0"] > 0.8    # red: hue 0-60
    assert f["log_area"] == pytest.approx(np.log(200 / 1600))
    assert f["log_elongation"] == pytest.approx(np.log(2)) and f["rectangularity"] == pytest.approx(1)
    assert f["solidity"] == pytest.approx(1) and f["compactness"] == pytest.approx(4 * np.pi * 200 / 60 ** 2)
    assert f["visible_share"] == 0.5 and f["bag_cover"] == 0.0
    window = mislabel.region_features(mislabel.image_feature_maps(image), region[5:35, 0:20], window=(5, 35, 0, 20),
                                      polygon=polygon, visible_share=0.5)
    np.testing.assert_allclose(window, list(f.values()), rtol=1e-5)


def test_knn_probs_leave_the_point_out():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))]
    labels = np.r_[np.full(20, 1), np.full(20, 2)]
    labels[3] = 2                                  # a cluster-1 point labelled 2
    probs = mislabel.knn_probs(x, labels, k=5, num_classes=3)
    assert probs.shape == (40, 3) and np.allclose(probs.sum(1), 1)
    assert probs[3, 2] < 0.1 and probs[3, 1] > 0.85         # its own vote does not count
    assert probs[10].argmax() == 1 and probs[30, 2] > 0.85


def test_planted_mislabels_rank_first(tmp_path):
    from conftest import make_tiny_dataset

    root = make_tiny_dataset(tmp_path / "data", n_train=50, n_val=0, n_test=0, seed=3)
    coco = json.loads((root / "train_all.json").read_text())
    anns = sorted(coco["annotations"], key=lambda a: -a["area"])
    flipped = []
    for a in anns[:: max(1, len(anns) // 4)][:4]:   # large (clearly visible) objects get the next class
        a["category_id"] = a["category_id"] % (NUM_CLASSES - 1) + 1
        flipped.append(a["id"])
    (root / "train_all.json").write_text(json.dumps(coco))
    stats = eda.collect_stats(TrashDataset(root, "train_all"), colour_pixels=0)
    ranking = mislabel.rank_mislabels(stats.features, stats.annotations["category_id"],
                                      stats.annotations["annotation_id"], k=5)
    # ~100 annotations, 4 planted: all of them in the top 5 (a random ranking: 0.2 expected there)
    assert set(flipped) <= set(ranking["annotation_id"][:5])
    quality = mislabel.ranking_quality(ranking["annotation_id"], flipped, k=4)
    assert quality["precision_at_k"] >= 0.75
    assert quality["random_hits_at_k"] == pytest.approx(4 * 4 / len(ranking))
    assert (ranking["score"].diff().dropna() <= 0).all()
    # the top candidates as the notebook draws them: a crop per candidate, red where the label is known wrong
    shown = mislabel.candidate_crops(TrashDataset(root, "train_all"), ranking, stats.annotations, top_k=5,
                                     known_ids=flipped)
    assert [len(shown[k]) for k in ("crops", "outlines", "titles", "edgecolors")] == [5] * 4
    assert shown["edgecolors"].count("red") == len(set(flipped) & set(ranking["annotation_id"][:5]))
    assert shown["titles"][0].startswith(f"#1 ann {ranking['annotation_id'].iloc[0]}")


def test_ranking_quality_by_hand():
    q = mislabel.ranking_quality([5, 2, 9, 4], [2, 4, 77], k=2)   # 77 is outside the ranked set
    assert q["hits_at_k"] == 1 and q["precision_at_k"] == 0.5 and q["recall_at_k"] == 0.5
    assert q["mislabel_rate"] == 0.5 and q["random_hits_at_k"] == 1.0


def test_known_mislabels_from_synth_meta(tmp_path):
    assert mislabel.load_known_mislabels(tmp_path) is None
    (tmp_path / "synth_meta.json").write_text(json.dumps({"mislabels": [
        {"annotation_id": 4, "image_id": 1, "file_name": "a.jpg", "true_category_id": 2, "label_category_id": 6}]}))
    known = mislabel.load_known_mislabels(tmp_path)
    assert list(known["annotation_id"]) == [4] and list(known["true_category_id"]) == [2]
    (tmp_path / "synth_meta.json").write_text("{")
    with pytest.raises(ValueError, match="synth_meta.json"):
        mislabel.load_known_mislabels(tmp_path)


def test_crop_annotation_clips_and_shifts_the_outline():
    image = np.zeros((100, 100, 3), np.uint8)
    crop, outline = mislabel.crop_annotation(image, [90, 90, 10, 10], polygon=[90, 90, 100, 90, 100, 100],
                                             margin=0.5, min_side=10)
    assert crop.shape == (15, 15, 3)                          # 20 px wanted around (95, 95), clipped at 100
    np.testing.assert_array_equal(outline[0], [5, 5])


def _viewer_dataset():
    # image k holds class k+1 only, image 3 also Paper; all images 40x40
    anns = [[_square(0, 0, 10, 10, ann_id=k, cat=k + 1, image_id=k)] for k in range(4)]
    anns[3].append(_square(20, 20, 30, 30, ann_id=9, cat=PAPER, image_id=3))
    return FakeDataset(anns)


def test_viewer_next_prev_wrap():
    v = ImageViewer(_viewer_dataset())
    assert v.current == 0 and v.prev() == 3 and v.next() == 0 and v.next() == 1
    assert v.go(6) == 2


def test_viewer_class_filter():
    v = ImageViewer(_viewer_dataset())
    v.go(3)
    assert v.set_class(PAPER) == 2 and v.visible == [1, 3]
    assert v.current == 3                                   # stays on the image it showed
    assert v.next() == 1 and v.next() == 3
    assert v.set_class(class_id("Battery")) == 0 and v.current is None and v.render() is None
    assert "no image" in v.caption()
    assert v.set_class(None) == 4 and v.current == 0
    with pytest.raises(ValueError, match="class_id"):
        v.set_class(42)


def test_viewer_modes_and_opacity():
    ds = _viewer_dataset()
    v = ImageViewer(ds, mode="image")
    np.testing.assert_array_equal(v.render(), ds.load_image(0))
    v.set_mode("mask")
    assert tuple(v.render()[5, 5]) == (192, 0, 128) and tuple(v.render()[30, 30]) == (0, 0, 0)
    v.set_mode("overlay"), v.set_alpha(0.0)
    np.testing.assert_array_equal(v.render(), ds.load_image(0))
    with pytest.raises(ValueError, match="mode"):
        v.set_mode("xray")
    with pytest.raises(ValueError, match="alpha"):
        v.set_alpha(1.5)
    assert "img0.jpg" in v.caption() and "General trash" in v.caption()


def test_viewer_widgets_drive_the_state():
    pytest.importorskip("ipywidgets")
    v = ImageViewer(_viewer_dataset())
    box = v.widget()
    w = v._widgets
    w["slider"].value = 2
    assert v.current == 2 and "img2.jpg" in w["caption"].value
    png = w["image"].value
    box.children[0].children[1].value = PAPER               # the class dropdown
    assert v.visible == [1, 3] and w["slider"].max == 1
    assert w["image"].value != png and w["image"].value[:4] == b"\x89PNG"
