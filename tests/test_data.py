"""TrashDataset: items, largest-area-first painting, the on-disk mask cache, transforms, split handling."""
from __future__ import annotations

import contextlib
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import trashlib.data.dataset as dataset_module
import trashlib.paths as paths
from trashlib.data import DatasetError, TrashDataset, rasterize
from trashlib.data.cache import FlatCache


def _edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def count_rasterize(monkeypatch):
    """Counts calls of the rasteriser the dataset uses (the real one still runs)."""
    calls = []

    def spy(annotations, **kw):
        calls.append(kw)
        return rasterize(annotations, **kw)

    monkeypatch.setattr(dataset_module, "rasterize", spy)
    return calls


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder for this test only (the autouse one is shared by the session)."""
    monkeypatch.setattr(paths, "INTERIM_DIR", tmp_path / "interim")
    return tmp_path / "interim"


def test_item_types_shapes_and_metadata(tiny_root):
    ds = TrashDataset(tiny_root, "train")
    coco = json.loads((tiny_root / "train.json").read_text())
    assert len(ds) == 4 and ds.has_masks and ds.path == tiny_root / "train.json" and ds.root == tiny_root
    assert ds.image_infos == coco["images"]
    assert ds.file_names == [f"batch_01/{i:04d}.jpg" for i in range(4)] and ds.image_ids == [0, 1, 2, 3]
    for i in range(len(ds)):
        image, mask = ds[i]
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert mask.shape == (64, 64) and mask.dtype == np.uint8
        cats = {a["category_id"] for a in ds.annotations(i)}
        assert set(np.unique(mask)) <= cats | {0} and cats & set(np.unique(mask))
        assert [a["image_id"] for a in ds.annotations(i)] == [ds.image_ids[i]] * len(ds.annotations(i))
    np.testing.assert_array_equal(ds[-1][1], ds[3][1])
    with pytest.raises(IndexError, match="out of range"):
        ds[4]


def test_masks_match_the_competition_loader(tiny_root):
    """Same label maps as the peers' loader: coco.annToMask per annotation, sorted by area, painted in turn."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress
        coco = COCO(str(tiny_root / "train_all.json"))
    ds = TrashDataset(tiny_root, "train_all")
    for i, info in enumerate(ds.image_infos):
        expected = np.zeros((info["height"], info["width"]))
        for ann in sorted(coco.loadAnns(coco.getAnnIds(imgIds=info["id"])), key=lambda a: a["area"], reverse=True):
            expected[coco.annToMask(ann) == 1] = ann["category_id"]
        np.testing.assert_array_equal(ds.load_mask(i), expected.astype(np.uint8))


def _square(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@pytest.mark.parametrize("small_first", [True, False])
def test_small_object_painted_on_top_whatever_the_json_order(tmp_path, small_first):
    from PIL import Image

    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "img" / "a.jpg")
    big = {"id": 1, "image_id": 7, "category_id": 2, "area": 256.0, "segmentation": _square(0, 0, 16, 16)}
    small = {"id": 2, "image_id": 7, "category_id": 9, "area": 16.0, "segmentation": _square(4, 4, 8, 8)}
    coco = {"images": [{"id": 7, "file_name": "img/a.jpg", "width": 20, "height": 20}],
            "categories": [{"id": 2, "name": "Paper"}, {"id": 9, "name": "Battery"}],
            "annotations": [small, big] if small_first else [big, small]}
    (root / "train.json").write_text(json.dumps(coco))
    mask = TrashDataset(root, "train").load_mask(0)
    assert (mask[5:7, 5:7] == 9).all()  # inside both squares: the small one wins
    assert mask[12, 12] == 2 and mask[2, 10] == 2  # big square only
    assert (mask[18:, :] == 0).all() and (mask[:, 18:] == 0).all()
    assert set(np.unique(mask)) == {0, 2, 9}


def test_cache_hit_does_not_rasterise_again(tiny_root, fresh_cache, count_rasterize):
    ds = TrashDataset(tiny_root, "train")
    first = [ds[i][1] for i in range(len(ds))]
    assert len(count_rasterize) == 4
    again = [ds[i][1] for i in range(len(ds))]  # second epoch, same object
    other = TrashDataset(tiny_root, "train")  # a new reader (e.g. another process) finds the file
    third = [other[i][1] for i in range(len(other))]
    assert len(count_rasterize) == 4
    for a, b, c in zip(first, again, third):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert other.build_cache(progress=False) == 0 and len(count_rasterize) == 4
    assert [p.name for p in fresh_cache.rglob("*.u8")] == ["labels-v1.u8"]


def test_cached_mask_is_a_private_copy(tiny_root):
    ds = TrashDataset(tiny_root, "train")
    mask = ds.load_mask(0)
    expected = mask.copy()
    mask[:] = 99  # a transform writing in place must not reach the cache
    np.testing.assert_array_equal(ds.load_mask(0), expected)


def test_cache_invalidated_when_json_changes(tiny_copy, count_rasterize):
    before = TrashDataset(tiny_copy, "train")
    old = before.load_mask(0)
    first_cat = before.annotations(0)[0]["category_id"]
    new_cat = first_cat % 10 + 1

    def relabel(coco):
        for a in coco["annotations"]:
            if a["image_id"] == 0:
                a["category_id"] = new_cat if a["category_id"] == first_cat else a["category_id"]

    _edit_json(tiny_copy / "train.json", relabel)
    after = TrashDataset(tiny_copy, "train")
    assert after.sha1 != before.sha1
    calls = len(count_rasterize)
    new = after.load_mask(0)
    assert len(count_rasterize) == calls + 1
    assert (old == first_cat).any()
    np.testing.assert_array_equal(new, np.where(old == first_cat, new_cat, old))  # same shapes, new label


def test_a_file_read_again_is_parsed_once_and_a_changed_one_again(tiny_copy, monkeypatch):
    from trashlib.data import coco

    parsed = []
    parse = coco._parse
    monkeypatch.setattr(coco, "_parse", lambda raw, name: parsed.append(name) or parse(raw, name))
    monkeypatch.setattr(coco, "_PARSED", {})
    first = TrashDataset(tiny_copy, "train")
    again = TrashDataset(tiny_copy, "train")
    assert len(parsed) == 1 and again.image_infos is first.image_infos
    _edit_json(tiny_copy / "train.json", lambda c: c.update(info={"changed": True}))  # new bytes, same dataset
    changed = TrashDataset(tiny_copy, "train")
    assert len(parsed) == 2 and changed.sha1 != first.sha1


def test_splits_sharing_images_agree(tiny_root):
    train, train_all = TrashDataset(tiny_root, "train"), TrashDataset(tiny_root, "train_all")
    by_name = {name: i for i, name in enumerate(train_all.file_names)}
    for i, name in enumerate(train.file_names):
        np.testing.assert_array_equal(train.load_mask(i), train_all.load_mask(by_name[name]))
        np.testing.assert_array_equal(train.load_image(i), train_all.load_image(by_name[name]))


def test_no_file_is_written_next_to_the_data_root(tiny_copy):
    before = sorted(p.relative_to(tiny_copy) for p in tiny_copy.rglob("*"))
    ds = TrashDataset(tiny_copy, "train_all", cache_images=True)
    ds.build_cache(progress=False)
    _ = [ds[i] for i in range(len(ds))]
    assert sorted(p.relative_to(tiny_copy) for p in tiny_copy.rglob("*")) == before


def test_image_cache_returns_the_decoded_image(tiny_root):
    plain = TrashDataset(tiny_root, "val")
    cached = TrashDataset(tiny_root, "val", cache_images=True)
    for _ in range(2):  # first pass fills the cache, second reads it
        for i in range(len(plain)):
            np.testing.assert_array_equal(cached.load_image(i), plain.load_image(i))


def test_test_split_has_no_masks(tiny_root):
    ds = TrashDataset(tiny_root, "test")
    assert not ds.has_masks and len(ds) == 2 and ds.annotations(0) == []
    image, mask = ds[0]
    assert mask is None and ds.load_mask(1) is None and image.shape == (64, 64, 3)
    assert TrashDataset(tiny_root, "test_labels").has_masks  # any other <name>.json opens as a split


def test_data_root_from_environment(tiny_root, monkeypatch):
    monkeypatch.setenv("TRASHLIB_DATA", str(tiny_root))
    ds = TrashDataset(split="val")
    assert ds.root == tiny_root.resolve() and len(ds) == 2


def test_unknown_split_lists_available_splits(tiny_root):
    with pytest.raises(DatasetError, match=r"no split 'tset'.*available: test, test_labels, train, train_all, val"):
        TrashDataset(tiny_root, "tset")
    assert issubclass(DatasetError, ValueError)


def test_dataset_pickles_for_dataloader_workers(tiny_root):
    ds = TrashDataset(tiny_root, "train")
    ds.load_mask(0)  # opens the memory map, which must not travel
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.load_mask(0), ds.load_mask(0))


def test_flat_cache_recovers_from_a_damaged_file(tmp_path):
    cache = FlatCache(tmp_path / "c.u8", [3, 5])
    assert cache.get(0) is None
    cache.put(1, np.arange(5, dtype=np.uint8))
    np.testing.assert_array_equal(FlatCache(tmp_path / "c.u8", [3, 5]).get(1), np.arange(5))
    with pytest.raises(ValueError, match="expects 3"):
        cache.put(0, np.zeros(4, np.uint8))
    (tmp_path / "c.u8").write_bytes(b"garbage")  # e.g. a full disk cut it short
    fresh = FlatCache(tmp_path / "c.u8", [3, 5])
    assert fresh.get(1) is None and fresh.get(0) is None


@pytest.mark.realdata
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_real_data_every_item_reads(taco_root, split):
    ds = TrashDataset(taco_root, split)
    for i in range(len(ds)):
        image, mask = ds[i]
        info = ds.image_infos[i]
        assert image.shape == (info["height"], info["width"], 3) and image.dtype == np.uint8
        if split == "test":
            assert mask is None
        else:
            assert mask.shape == image.shape[:2] and mask.max() <= 10
            assert (mask > 0).any() == bool(ds.annotations(i))


def _read_all(args):
    ds, order = args
    return {i: ds.load_mask(i) for i in order}


@pytest.mark.integration
def test_concurrent_workers_fill_one_cache(tiny_root, fresh_cache):
    """Two processes (as DataLoader workers) fill the same cache file at once; everyone reads the truth."""
    import multiprocessing as mp

    ds = TrashDataset(tiny_root, "train_all")
    orders = [list(range(len(ds))), list(reversed(range(len(ds))))] * 2
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(_read_all, [(ds, order) for order in orders])
    for i, info in enumerate(ds.image_infos):
        truth = rasterize(ds.annotations(i), height=info["height"], width=info["width"])
        for got in results:
            np.testing.assert_array_equal(got[i], truth)
        np.testing.assert_array_equal(TrashDataset(tiny_root, "train_all").load_mask(i), truth)


def test_rle_segmentation_paints_like_its_polygon(tiny_root):
    from pycocotools import mask as mask_utils

    ds = TrashDataset(tiny_root, "train")
    anns = ds.annotations(0)
    rles = []
    for a in anns:
        obj = rasterize([{**a, "category_id": 1}], height=64, width=64)
        rle = mask_utils.encode(np.asfortranarray(obj))
        rles.append({**a, "iscrowd": 1, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    np.testing.assert_array_equal(rasterize(rles, height=64, width=64), ds.load_mask(0))


# -- label-map sets (offline copy-paste, pseudo labels) --------------------------------------------
def test_label_map_set_round_trip_with_ignore_and_referenced_images(tiny_root, tmp_path):
    from trashlib.data import LabelMapDataset, write_label_maps

    ds = TrashDataset(tiny_root, "train")
    mask0 = ds.load_mask(0).copy()
    mask0[:8] = 255  # an ignored band, as low-confidence pseudo labels have
    samples = [("a.jpg", ds.load_image(0), mask0), ("b.jpg", tiny_root / ds.file_names[1], ds.load_mask(1))]
    made = write_label_maps(tmp_path / "set", samples, recipe={"kind": "test"})
    assert isinstance(made, LabelMapDataset) and len(made) == 2 and made.file_names == ["a.jpg", "b.jpg"]
    image, mask = made[0]
    np.testing.assert_array_equal(image, ds.load_image(0))  # PNG: lossless
    np.testing.assert_array_equal(mask, mask0)
    assert (mask == 255).sum() == 8 * mask.shape[1]
    np.testing.assert_array_equal(made.load_image(1), ds.load_image(1))  # referenced, not copied
    assert not list((tmp_path / "set" / "images").glob("00001*"))
    assert made.recipe == {"kind": "test"}


def test_label_map_set_is_atomic_and_never_replaces_foreign_folders(tiny_root, tmp_path):
    from trashlib.data import write_label_maps

    ds = TrashDataset(tiny_root, "train")

    def failing():
        yield "a.jpg", ds.load_image(0), ds.load_mask(0)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        write_label_maps(tmp_path / "set", failing())
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left, under any name
    write_label_maps(tmp_path / "set", [("a.jpg", ds.load_image(0), ds.load_mask(0))])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_label_maps(tmp_path / "set", [])
    assert len(write_label_maps(tmp_path / "set", [], overwrite=True)) == 0
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not made by trashlib"):
        write_label_maps(tmp_path / "theirs", [], overwrite=True)
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "keep"


def test_label_map_values_outside_the_classes_are_refused(tiny_root, tmp_path):
    from trashlib.data import LabelMapDataset, write_label_maps

    ds = TrashDataset(tiny_root, "train")
    bad = ds.load_mask(0).copy()
    bad[0, 0] = 42
    made = write_label_maps(tmp_path / "set", [("a.jpg", ds.load_image(0), bad)])
    with pytest.raises(DatasetError, match="value 42"):
        made.load_mask(0)
    with pytest.raises(DatasetError, match="not a label-map dataset"):
        LabelMapDataset(tmp_path)


def test_build_train_dataset_concatenates_sources_and_fingerprints_them(tiny_root, tmp_path):
    from trashlib.config import TrainConfig
    from trashlib.data import build_train_dataset, train_fingerprint, write_label_maps

    ds = TrashDataset(tiny_root, "train")
    extra = tmp_path / "set"
    write_label_maps(extra, [("x.jpg", ds.load_image(0), np.full(ds.load_mask(0).shape, 255, np.uint8))])
    plain = TrainConfig(data_root=str(tiny_root))
    assert isinstance(build_train_dataset(plain), TrashDataset)
    both = build_train_dataset(plain.replace(extra_train=(str(extra),)))
    assert len(both) == len(ds) + 1 and both.file_names == ds.file_names + ["x.jpg"]
    np.testing.assert_array_equal(both.load_mask(len(ds) - 1), ds.load_mask(len(ds) - 1))
    assert (both.load_mask(len(ds)) == 255).all()
    with pytest.raises(IndexError):
        both.load_image(len(both))
    before = train_fingerprint(plain.replace(extra_train=(str(extra),)))
    write_label_maps(extra, [("y.jpg", ds.load_image(1), ds.load_mask(1))], overwrite=True)
    assert train_fingerprint(plain.replace(extra_train=(str(extra),))) != before != train_fingerprint(plain)


def test_a_validated_file_is_not_validated_again_unless_its_bytes_change(tiny_copy, monkeypatch):
    """Notebooks open the same split once per run: validation (seconds on real data) runs once per content."""
    import trashlib.data.coco as coco_module

    calls = []
    real = coco_module.validate_coco
    monkeypatch.setattr(coco_module, "validate_coco", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(coco_module, "_VALID", {})
    first = TrashDataset(tiny_copy, "train")
    again = TrashDataset(tiny_copy, "train")
    assert len(calls) == 1 and again.sha1 == first.sha1 and len(again) == len(first)

    def spoil(coco):
        coco["annotations"][0]["category_id"] = 99

    _edit_json(tiny_copy / "train.json", spoil)
    with pytest.raises(DatasetError, match="unknown category_id 99"):
        TrashDataset(tiny_copy, "train")
    assert len(calls) == 2
    with pytest.raises(DatasetError, match="unknown category_id 99"):  # a refused file is never remembered as valid
        TrashDataset(tiny_copy, "train")
    assert len(calls) == 3
