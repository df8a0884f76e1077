"""Copy & paste: pasted pixels, occlusion and blending by hand, donor sampling, ClassMix, the donor bank, the
stream's determinism and resume, the offline set (atomic, reused, redone), the config and run name, and the
models' training steps on pasted label maps holding 255."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trashlib.config import TrainConfig
from trashlib.data.copy_paste import Donor, Paster, class_probabilities, classmix, paste_object, paste_rng


class Draws:
    """A stand-in generator with chosen draws: uniform -> its low end, random -> the next listed value."""

    def __init__(self, *randoms):
        self.randoms = list(randoms)

    def uniform(self, low, high):
        return low

    def random(self):
        return self.randoms.pop(0)


def blank(size=8, label=0):
    return np.zeros((size, size, 3), np.uint8), np.full((size, size), label, np.uint8)


def block_donor(h, w, *, category_id, colour=(200, 10, 10), mask=None, reference_size=8):
    image = np.empty((h, w, 3), np.uint8)
    image[:] = colour
    return Donor(image, np.ones((h, w), bool) if mask is None else np.asarray(mask, bool), category_id,
                 reference_size=reference_size)


# -- pasting by hand ------------------------------------------------------------------------------------
def test_pasted_pixels_carry_the_donors_class_and_colour():
    image, mask = blank()
    # no flip (0.9 >= 0.5); top = int(0 * 7) = 0; left = int(0.99 * 6) = 5: rows 0-1, columns 5-7
    out, labels = paste_object(image, mask, block_donor(2, 3, category_id=9), rng=Draws(0.9, 0.0, 0.99))
    expected = np.zeros((8, 8), np.uint8)
    expected[0:2, 5:8] = 9
    assert np.array_equal(labels, expected)
    assert (out[labels == 9] == (200, 10, 10)).all() and (out[labels == 0] == 0).all()
    assert (mask == 0).all() and (image == 0).all()  # the inputs are left alone


def test_scale_and_flip_keep_the_objects_own_shape():
    shape = [[1, 0], [1, 1]]  # an L: the donor's own mask, not its box
    donor = block_donor(2, 2, category_id=4, mask=shape, reference_size=8)
    image, mask = blank()
    # scale 2 (the draw's low end): each donor pixel becomes a 2x2 block; flipped (0.1 < 0.5); at the top left
    _, labels = paste_object(image, mask, donor, rng=Draws(0.1, 0.0, 0.0), scale_range=(2.0, 3.0))
    expected = np.zeros((8, 8), np.uint8)
    expected[0:4, 0:4] = 4 * np.kron(np.array(shape)[:, ::-1], np.ones((2, 2), int))
    assert np.array_equal(labels, expected)
    # a donor from a 16-pixel photo pasted on an 8-pixel one: half its size at scale 1
    half = block_donor(4, 4, category_id=4, reference_size=16)
    _, labels = paste_object(image, mask, half, rng=Draws(0.9, 0.0, 0.0))
    assert (labels == 4).sum() == 4 and (labels[:2, :2] == 4).all()


def test_the_pasted_object_lies_on_top_and_covered_objects_stay_where_visible():
    image, mask = blank()
    mask[0:4, 0:4] = 2              # an object of class 2
    mask[6:8, :] = 255              # pixels nobody labelled
    out, labels = paste_object(image, mask, block_donor(2, 2, category_id=9), rng=Draws(0.9, 0.0, 0.0))
    assert (labels[0:2, 0:2] == 9).all() and (labels == 2).sum() == 16 - 4  # the rest of the object is still there
    # a 3x3 object at row 1, column 1 (int(0.2 * 6) = 1): on top of both, which keep their visible pixels
    out, labels = paste_object(out, labels, block_donor(3, 3, category_id=5), rng=Draws(0.9, 0.2, 0.2))
    assert (labels[1:4, 1:4] == 5).all()
    assert sorted(zip(*np.nonzero(labels == 9))) == [(0, 0), (0, 1), (1, 0)]
    assert sorted(zip(*np.nonzero(labels == 2))) == [(0, 2), (0, 3), (2, 0), (3, 0)]
    # covered ignore pixels take the pasted class (an object is known to lie there); the others stay ignored
    _, labels = paste_object(out, labels, block_donor(4, 2, category_id=7), rng=Draws(0.9, 0.99, 0.0))
    assert (labels[4:8, 0:2] == 7).all() and (labels[6:8, 2:] == 255).all() and (labels == 255).sum() == 12


def test_feathered_edges_blend_the_image_and_leave_the_labels_hard():
    image, mask = blank()
    half = np.zeros((8, 8), bool)
    half[:, :4] = True               # the object: the left half of an 8x8 crop pasted over the whole image
    donor = block_donor(8, 8, category_id=3, colour=(200, 200, 200), mask=half)
    hard_image, hard_labels = paste_object(image, mask, donor, rng=Draws(0.9, 0.0, 0.0))
    soft_image, soft_labels = paste_object(image, mask, donor, rng=Draws(0.9, 0.0, 0.0), blend_sigma=1.0)
    assert np.array_equal(soft_labels, hard_labels) and (hard_labels[:, :4] == 3).all()
    assert (hard_image[:, :4] == 200).all() and (hard_image[:, 4:] == 0).all()
    # a Gaussian of sigma 1 reaches 3 pixels: columns 0 and 7 are still fully in or out; the edge
    # columns 3 and 4 mirror each other (alpha a and 1 - a, a > 1/2)
    g = soft_image[..., 0].astype(int)
    assert (g[:, 0] == 200).all() and (g[:, 7] == 0).all()
    assert (100 < g[:, 3]).all() and (g[:, 3] < 200).all() and (abs(g[:, 3] + g[:, 4] - 200) <= 1).all()


# -- donor sampling and ClassMix ------------------------------------------------------------------------
def test_class_probabilities_by_hand_and_ignore_is_no_class():
    counts = {2: 3, 9: 1, 0: 5, 255: 7}  # background and ignore never count
    assert class_probabilities(counts, sampling="uniform") == pytest.approx({2: 0.75, 9: 0.25})
    # inverse: 1/3 and 1/1, normalised by 4/3
    assert class_probabilities(counts, sampling="inverse") == pytest.approx({2: 0.25, 9: 0.75})
    assert class_probabilities(counts, sampling="classes", classes=(9,)) == {9: 1.0}
    with pytest.raises(ValueError, match=r"no objects of class\(es\) \[5\]"):
        class_probabilities(counts, sampling="classes", classes=(5, 9))
    with pytest.raises(ValueError, match="must be one of"):
        class_probabilities(counts, sampling="rare")


def test_classmix_pastes_half_the_classes_never_background_or_ignore():
    image, mask = blank()
    mask[:, 6:] = 255
    donor_image = np.full((8, 8, 3), 77, np.uint8)
    donor_mask = np.zeros((8, 8), np.uint8)
    donor_mask[0:2], donor_mask[2:4], donor_mask[4:6], donor_mask[6:8, :3] = 2, 5, 9, 255
    for seed in range(6):
        out, labels = classmix(image, mask, donor_image, donor_mask, rng=np.random.default_rng(seed))
        changed = labels != mask
        pasted = sorted(int(c) for c in np.unique(labels[changed]))
        assert len(pasted) == 2 and set(pasted) <= {2, 5, 9}          # ceil(3 / 2) of the three classes
        assert np.array_equal(changed, np.isin(donor_mask, pasted))   # every pixel of a chosen class
        assert (out[changed] == 77).all() and (out[~changed] == 0).all()
        assert (labels[6:8, :3] == 0).all() and (labels[6:, 6:] == 255).all()
    only_ignored = np.where(donor_mask == 255, 255, 0).astype(np.uint8)
    out, labels = classmix(image, mask, donor_image, only_ignored, rng=np.random.default_rng(0))
    assert np.array_equal(labels, mask) and np.array_equal(out, image)
    big = (np.kron(donor_mask, np.ones((2, 2), np.uint8)), np.full((16, 16, 3), 77, np.uint8))
    _, labels = classmix(image, mask, big[1], big[0], rng=np.random.default_rng(0))  # resized to 8x8 first
    assert set(np.unique(labels[labels != mask])) <= {2, 5, 9}


def test_paster_is_deterministic_and_pure():
    donors = {9: [block_donor(2, 2, category_id=9)], 4: [block_donor(3, 1, category_id=4)]}
    paster = Paster(donors=donors, prob=1.0, max_objects=3, scale_range=(0.5, 1.5))
    image, mask = blank()
    a = paster(image, mask, paste_rng(0, 5))
    assert np.array_equal(a[1], paster(image, mask, paste_rng(0, 5))[1])
    assert set(np.unique(a[1])) - {0} and set(np.unique(a[1])) <= {0, 4, 9}
    assert (mask == 0).all() and (image == 0).all()
    never = Paster(donors=donors, prob=0.0)
    assert never(image, mask, paste_rng(0, 5))[1] is mask
    with pytest.raises(ValueError, match="donors .* or partners"):
        Paster(donors=donors, partners=[(image, mask)])
    for bad in ({"prob": float("nan")}, {"scale_range": (0.5, float("inf"))}, {"blend_sigma": -1.0},
                {"max_objects": 0}):
        with pytest.raises(ValueError, match="invalid Paster"):
            Paster(donors=donors, **bad)


def test_paster_pastes_at_the_working_resolution():
    donor = block_donor(2, 2, category_id=9, colour=(0, 0, 250), reference_size=8)
    paster = Paster(donors={9: [donor]}, prob=1.0, max_objects=1, scale_range=(1.0, 1.0), blend_sigma=0.0,
                    work_size=4)
    image, mask = blank()
    image[:, :4], mask[:, :4] = 100, 2
    out, labels = paster(image, mask, paste_rng(0, 0))
    # the 8x8 photo brought to 4x4 first (labels nearest), then the 2x2 object at half size: one pixel
    assert out.shape == (4, 4, 3) and labels.shape == (4, 4)
    assert (labels == 9).sum() == 1 and (labels == 2).sum() + (labels == 9).sum() >= 8
    assert (out[labels == 9] == (0, 0, 250)).all() and (out[labels == 2] == 100).all()
    small = paster(image[:4, :4], mask[:4, :4], paste_rng(0, 0))[1]  # already at the working size: kept
    assert small.shape == (4, 4) and (small == 9).sum() == 1  # a donor of an 8-pixel photo: half size on 4


# -- the donor bank -------------------------------------------------------------------------------------
def write_overlap_dataset(root):
    """One 32x32 photo: a class-2 square (pixels 2..19) with a class-9 square (10..15) on top, and three
    separate 4x4 class-7 squares."""
    import cv2

    from trashlib.classes import coco_categories

    root.mkdir(parents=True)
    image = np.full((32, 32, 3), 90, np.uint8)
    image[2:20, 2:20], image[10:16, 10:16] = (200, 0, 0), (0, 0, 200)
    cv2.imwrite(str(root / "a.png"), image[..., ::-1])

    def square(k, x0, y0, side, cat):
        x1, y1 = x0 + side, y0 + side
        return {"id": k, "image_id": 1, "category_id": cat, "iscrowd": 0, "area": float(side * side),
                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]}

    anns = [square(1, 2, 2, 18, 2), square(2, 10, 10, 6, 9)] + [square(3 + k, 24, 2 + 6 * k, 4, 7) for k in range(3)]
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
            "annotations": anns, "categories": coco_categories()}
    (root / "train.json").write_text(json.dumps(coco))
    return root


def test_donor_bank_keeps_visible_pixels_and_caps_classes(tmp_path):
    from trashlib.data import TrashDataset
    from trashlib.data.donors import DonorBank

    bank = DonorBank.from_dataset(TrashDataset(write_overlap_dataset(tmp_path / "d")), max_per_class=2, min_area=4)
    big, small = bank.donors[2][0], bank.donors[9][0]
    # the 18x18 square less the 6x6 one on top, cut with a 4-pixel margin: rows and columns 0..23
    assert big.mask.shape == (24, 24) and big.mask.sum() == 18 * 18 - 6 * 6
    assert not big.mask[10:16, 10:16].any() and (big.image[big.mask] == (200, 0, 0)).all()
    assert small.mask.sum() == 36 and (small.image[small.mask] == (0, 0, 200)).all()
    assert big.category_id == 2 and small.category_id == 9 and big.reference_size == 32
    # three class-7 objects: all counted, two kept
    assert bank.counts == {2: 1, 9: 1, 7: 3} and len(bank.donors[7]) == 2
    assert "Battery" in bank.summary() and bank.nbytes > 0
    # at a working size of 16 the photo is halved: 2x2 blocks, the square's pixels 2..19 become 1..9, the hole 5..7
    half = DonorBank.from_dataset(TrashDataset(tmp_path / "d"), max_per_class=2, min_area=4, work_size=16)
    shrunk = half.donors[2][0]
    assert shrunk.mask.shape == (12, 12) and shrunk.reference_size == 16 and shrunk.mask.sum() == 9 * 9 - 3 * 3
    assert not shrunk.mask[5:8, 5:8].any() and half.counts == bank.counts and half.nbytes < bank.nbytes / 3


def test_a_stored_donor_bank_is_the_bank_it_was_cut_as(tmp_path):
    from trashlib import paths
    from trashlib.data import TrashDataset
    from trashlib.data.donors import _BANKS, DonorBank, bank_path, donor_bank

    root = write_overlap_dataset(tmp_path / "d")
    bank = DonorBank.from_dataset(TrashDataset(root), max_per_class=2, min_area=4)
    bank.save(tmp_path / "bank.npz")
    again = DonorBank.load(tmp_path / "bank.npz")
    assert again.counts == bank.counts and again.source == bank.source and list(again.donors) == sorted(bank.donors)
    for c, donors in bank.donors.items():
        for a, b in zip(donors, again.donors[c], strict=True):
            assert (a.image == b.image).all() and (a.mask == b.mask).all() and a.mask.dtype == b.mask.dtype
            assert (a.category_id, a.source, a.reference_size) == (b.category_id, b.source, b.reference_size)
    # donor_bank writes the bank under data/interim/donors/ and a fresh process (an empty memo) reads it back
    _BANKS.clear()
    first = donor_bank(root, work_size=16)
    path = bank_path(TrashDataset(root), 16)
    assert path.is_file() and path.is_relative_to(paths.INTERIM_DIR)
    _BANKS.clear()
    assert repr(donor_bank(root, work_size=16)) == repr(first)
    # a damaged file is ours to replace: cut again, written over
    path.write_bytes(b"not a zip")
    _BANKS.clear()
    assert repr(donor_bank(root, work_size=16)) == repr(first) and DonorBank.load(path).counts == first.counts
    with pytest.raises(ValueError, match="not a readable donor bank"):
        DonorBank.load(tmp_path / "d" / "train.json")


# -- config and run name --------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, message", [
    ({"copy_paste": "sometimes"}, "copy_paste must be one of"),
    ({"cp_donors": "rare"}, "cp_donors must be one of"),
    ({"cp_donors": "classes"}, "needs the classes to paste in cp_classes"),
    ({"cp_classes": ("Battery",)}, "cp_classes is used only with cp_donors='classes'"),
    ({"cp_donors": "classes", "cp_classes": ("Batery",)}, "cp_classes must be class names"),
    ({"cp_donors": "classes", "cp_classes": ("Background",)}, "cp_classes must be class names"),
    ({"cp_prob": 1.5}, "cp_prob must be a probability"),
    ({"cp_prob": float("nan")}, "cp_prob must be a finite number"),
    ({"cp_scale": (1.0, float("inf"))}, "cp_scale must be a finite number"),
    ({"cp_scale": (2.0, 1.0)}, "cp_scale must be (low, high)"),
    ({"cp_blend_sigma": -1.0}, "cp_blend_sigma must be >= 0"),
    ({"cp_max_objects": 0}, "cp_max_objects must be a positive integer"),
    ({"cp_copies": 1.5}, "cp_copies must be a positive integer"),
])
def test_copy_paste_settings_are_validated(kw, message):
    with pytest.raises(ValueError) as e:
        TrainConfig(**kw)
    assert message in str(e.value)


def test_run_names_spell_the_copy_paste_variant():
    from trashlib.runs import run_name

    base = TrainConfig(model="m", data_root="/d/trash", steps=4, batch_size=2, image_size=64, init_from="trunk", seed=1)
    assert run_name(base) == "m-tiny_b2x4_trash-64_branch_s1"
    online = base.replace(copy_paste="online", cp_donors="inverse")
    assert run_name(online) == "m-tiny_b2x4_trash-64_branch_cp-online-inverse_s1"
    assert base.replace(copy_paste="offline").copy_paste_tag == "_cp-offline-uniform"
    assert base.replace(copy_paste="offline", cp_copies=3).copy_paste_tag == "_cp-offline3-uniform"
    assert base.replace(copy_paste="online", cp_donors="classmix").copy_paste_tag == "_classmix"
    assert base.replace(copy_paste="offline", cp_donors="classmix").copy_paste_tag == "_classmix-offline"
    targeted = base.replace(copy_paste="online", cp_donors="classes", cp_classes=["clothing", "Paper pack", "Battery"])
    assert targeted.cp_classes == ("Paper pack", "Battery", "Clothing")  # the table's spelling and order
    assert targeted.copy_paste_tag == "_cp-online-paperpack.battery.clothing"
    assert targeted.config_hash() == targeted.replace(cp_classes=("Battery", "Clothing", "paper pack")).config_hash()
    assert base.replace(cp_prob=0.9).config_hash() != base.config_hash()  # part of the identity


def test_copy_paste_options_on_the_command_line():
    import argparse

    from trashlib.config import add_config_arguments, config_from_arguments

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    cfg = config_from_arguments(parser.parse_args(["--copy-paste", "online", "--cp-donors", "classes",
                                                   "--cp-classes", "Battery", "Paper pack", "--cp-scale", "0.5", "2"]))
    assert (cfg.copy_paste, cfg.cp_classes, cfg.cp_scale) == ("online", ("Paper pack", "Battery"), (0.5, 2.0))
    with pytest.raises(SystemExit):
        parser.parse_args(["--copy-paste", "always"])


# -- online: the stream ---------------------------------------------------------------------------------
def stream_cfg(root, **kw) -> TrainConfig:
    base = dict(model="tiny-conv", data_root=str(root), steps=6, batch_size=2, image_size=64, lr=3e-2, warmup_steps=1,
                eval_every=3, log_every=1, num_workers=0, color_jitter=0.0, scale_range=(0.75, 1.5),
                copy_paste="online", cp_prob=1.0)
    return TrainConfig(**{**base, **kw})


def test_online_paste_is_a_function_of_seed_and_position_and_leaves_augmentation_alone(tiny_root):
    from trashlib.data import TrashDataset
    from trashlib.data.pasted import online_paster
    from trashlib.training.augment import transform_from_config
    from trashlib.training.sampling import TrainStream, train_loader

    cfg = stream_cfg(tiny_root)
    data = TrashDataset(tiny_root, "train")

    def stream(c, paste=True):
        return TrainStream(data, transform_from_config(c), seed=3, paste=online_paster(c) if paste else None)

    pasted, plain = stream(cfg), stream(cfg, paste=False)
    items = [pasted[p] for p in range(8)]
    for p, (x, y) in enumerate(items):
        x2, y2 = stream(cfg)[p]  # a fresh stream, as a resumed run builds
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert any(not torch.equal(y, plain[p][1]) for p, (_, y) in enumerate(items))
    # the paste has its own generator: without pasting (prob 0) every augmentation draw is the same
    unpasted = stream(cfg.replace(cp_prob=0.0))
    for p in range(8):
        assert all(torch.equal(a, b) for a, b in zip(unpasted[p], plain[p]))
    at_work_size = stream(cfg.replace(work_size=32, image_size=32))
    assert [tuple(t.shape) for t in at_work_size[0]] == [(3, 32, 32), (32, 32)]
    # DataLoader workers and a loader started half way give the same batches
    whole = list(train_loader(pasted, start=0, end=4, batch_size=2))
    tail = list(train_loader(stream(cfg), start=2, end=4, batch_size=2, workers=2))
    for (xa, ya), (xb, yb) in zip(whole[2:], tail):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.integration
def test_online_copy_paste_resumes_bit_exactly(tiny_root):
    from test_training import TinySeg, _state, _without_time
    from trashlib.training import train

    for donors in ("inverse", "classmix"):
        cfg = stream_cfg(tiny_root, cp_donors=donors, cp_prob=0.7)
        torch.manual_seed(0)
        straight = train(cfg.replace(run_name=f"straight-{donors}"), model=TinySeg(), progress=False)
        torch.manual_seed(0)
        train(cfg.replace(run_name=f"cut-{donors}"), model=TinySeg(), stop_after=4, progress=False)
        resumed = train(cfg.replace(run_name=f"cut-{donors}", resume=True), model=TinySeg(), progress=False)
        assert resumed.finished and _without_time(resumed.metrics()) == _without_time(straight.metrics())
        a, b = _state(straight), _state(resumed)
        assert all(torch.equal(a[k], b[k]) for k in a)


# -- offline: the materialised set ----------------------------------------------------------------------
def test_offline_set_is_written_once_reused_and_redone_for_a_new_recipe(tiny_root, monkeypatch):
    from trashlib import paths
    from trashlib.data.copy_paste import Paster
    from trashlib.data import TrashDataset, build_train_dataset
    from trashlib.data.pasted import materialise_pasted, pasted_folder

    cfg = stream_cfg(tiny_root, copy_paste="offline", cp_copies=2, cp_donors="inverse")
    made = materialise_pasted(cfg)
    base = TrashDataset(tiny_root, "train")
    assert made.root == pasted_folder(cfg) and made.root.parent == paths.INTERIM_DIR / "label-maps"
    assert made.root.name.startswith("copy-paste-") and len(made) == 2 * len(base)
    assert made.recipe["copies"] == 2 and made.recipe["data_sha1"] == base.sha1
    originals = [base[i][1] for i in range(len(base))]
    assert all(not np.array_equal(made[2 * i + k][1], originals[i]) for i in range(len(base)) for k in range(2))
    stamp = (made.root / "index.json").stat().st_mtime_ns

    def no_paste(*a, **k):
        raise AssertionError("pasted again")

    with monkeypatch.context() as m:
        m.setattr(Paster, "paste", no_paste)
        again = materialise_pasted(cfg)  # the same recipe: reused, not pasted again
        assert again.root == made.root and (made.root / "index.json").stat().st_mtime_ns == stamp
        assert len(build_train_dataset(cfg)) == 3 * len(base)  # the originals, then the copies
        with pytest.raises(AssertionError, match="pasted again"):
            materialise_pasted(cfg.replace(cp_scale=(1.0, 1.0)))  # a new recipe is pasted anew
    other = materialise_pasted(cfg.replace(cp_scale=(1.0, 1.0)))
    assert other.root != made.root and (made.root / "index.json").exists()  # the old set is kept
    assert materialise_pasted(cfg.replace(seed=1)).root not in (made.root, other.root)


def test_pasted_examples_show_both_modes_at_the_working_resolution(tiny_root):
    from trashlib.data.pasted import materialise_pasted, pasted_examples

    for mode in ("online", "offline"):
        cfg = stream_cfg(tiny_root, copy_paste=mode, work_size=32)
        images, masks, titles = pasted_examples(cfg, 2)
        assert [im.shape for im in images] == [(32, 32, 3)] * 2 and [m.shape for m in masks] == [(32, 32)] * 2
        assert len(titles) == 2
    offline = materialise_pasted(cfg)
    assert all(np.array_equal(m, offline[j][1]) for j, m in enumerate(masks))  # the set's own first items


def test_offline_set_is_atomic_and_never_replaces_what_it_did_not_make(tiny_root, monkeypatch):
    from trashlib.data.copy_paste import Paster
    from trashlib.data.pasted import materialise_pasted, pasted_folder

    cfg = stream_cfg(tiny_root, copy_paste="offline", cp_copies=2, cp_donors="classmix")
    real, calls = Paster.paste, []

    class Killed(BaseException):
        pass

    def dies_on_the_third(self, *a):
        calls.append(1)
        if len(calls) == 3:
            raise Killed
        return real(self, *a)

    folder = pasted_folder(cfg)
    with monkeypatch.context() as m, pytest.raises(Killed):
        m.setattr(Paster, "paste", dies_on_the_third)
        materialise_pasted(cfg)
    assert not folder.exists() and not list(folder.parent.glob(f".{folder.name}*"))  # no half set, no temporary
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not made by trashlib"):
        materialise_pasted(cfg)
    assert (folder / "notes.txt").read_text() == "mine"


# -- the models on pasted label maps holding 255 ----------------------------------------------------------
@pytest.mark.parametrize("name", ["mask2former-swin", "segformer", "upernet-swin"])
@pytest.mark.integration
def test_models_train_on_pasted_label_maps_holding_ignore(tiny_root, tmp_path, name):
    """test_models_ignore shows every loss ignores 255; here the 255 come the way training brings them: a
    label-map set (pseudo labels ignoring half of each image) pasted onto online, through the stream."""
    from conftest import tiny_model

    from trashlib.data import TrashDataset, write_label_maps
    from trashlib.data.pasted import online_paster
    from trashlib.training.augment import transform_from_config
    from trashlib.training.sampling import TrainStream, train_loader

    base = TrashDataset(tiny_root, "train")
    samples = []
    for i in range(len(base)):
        mask = base.load_mask(i).copy()
        mask[:, :32] = 255
        samples.append((f"pl{i}", base.load_image(i), mask))
    pseudo = write_label_maps(tmp_path / "pseudo", samples)
    cfg = stream_cfg(tiny_root, scale_range=(1.0, 1.0))
    stream = TrainStream(pseudo, transform_from_config(cfg), seed=0, paste=online_paster(cfg))
    images, masks = next(iter(train_loader(stream, start=0, end=1, batch_size=2)))
    assert (masks == 255).any() and ((masks != 255) & (masks != 0)).any()
    model = tiny_model(name).train()
    torch.manual_seed(0)
    loss = model(images.float() / 255, masks.long()).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)


def test_pastable_variants_cut_class_lists_to_the_classes_with_objects():
    from trashlib.data.pasted import pastable_variants

    variants = {"uniform": {"cp_donors": "uniform"},
                "rare": {"cp_donors": "classes", "cp_classes": ["Metal", "Battery"]},
                "absent": {"cp_donors": "classes", "cp_classes": ["Clothing"]}}
    kept, said = pastable_variants(variants, {4: 3, 9: 0, 6: 2})
    assert kept == {"uniform": {"cp_donors": "uniform"}, "rare": {"cp_donors": "classes", "cp_classes": ["Metal"]}}
    assert said == ["rare: the training split has no Battery; pastes Metal only",
                    "absent: the training split has no Clothing; arm dropped"]
    assert pastable_variants(kept, {4: 1}) == (kept, [])
