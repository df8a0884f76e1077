"""DenseCRF and the consensus overwrite: hand-made maps, the pooled index, sweeps, and the CLI stages."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import confident as conftest_confident, write_index

from trashlib.data import TrashDataset
from trashlib.postprocess.consensus import overwrite, overwrite_index, overwrite_probs, sweep_overwrite
from trashlib.postprocess.crf import PRESETS, CRFParams, crf_grid, crf_index, crf_preset, dense_crf, sweep_crf
from trashlib.scoring.evaluation import evaluate_index
from trashlib.submission import validate_submission

pytest.importorskip("pydensecrf.densecrf")


@pytest.fixture(autouse=True)
def _probs_store(tmp_path, monkeypatch):
    import trashlib.paths as paths

    monkeypatch.setattr(paths, "PROBS_DIR", tmp_path / "probs")


def confident(mask, *, num_classes=11, p=0.9):
    return conftest_confident(mask, p=p, num_classes=num_classes)


def halves():
    """A 24x40 image, red left and blue right, and its label map (1 left, 2 right): not square, to catch H/W swaps."""
    image = np.zeros((24, 40, 3), np.uint8)
    image[:, :20], image[:, 20:] = (200, 30, 30), (30, 30, 200)
    return image, np.where(np.arange(40) < 20, 1, 2)[None].repeat(24, 0)


# -- DenseCRF ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [CRFParams(), *PRESETS.values(), CRFParams(gt_prob=0.7)],
                         ids=["default", *PRESETS, "gt0.7"])
def test_crf_on_a_confident_map_changes_nothing(params):
    image, mask = halves()
    out = dense_crf(confident(mask), image, **params.as_dict())
    assert out.shape == (11, 24, 40) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(0), 1, atol=1e-5)
    assert (out.argmax(0) == mask).all()


def test_crf_removes_an_unsure_speck():
    image, mask = halves()
    probs = confident(mask)
    probs[:, 10:12, 5:7] = 0.15 / 9
    probs[3, 10:12, 5:7], probs[1, 10:12, 5:7] = 0.45, 0.40  # argmax 3 by a little, inside the red half
    assert (probs.argmax(0)[10:12, 5:7] == 3).all()
    out = dense_crf(probs, image, iters=1)
    assert (out.argmax(0) == mask).all()


def test_params_validate_and_presets_are_the_peers():
    assert crf_preset("peers-a") == CRFParams(3, 3, 10, 50, 5, 40)
    assert (PRESETS["peers-b"].sxy_bilateral, PRESETS["peers-b"].srgb, PRESETS["peers-b"].iters) == (30, 5, 45)
    assert PRESETS["peers-c"].tag == "g5-10_b10-10-5_i20"
    with pytest.raises(ValueError, match="valid: peers-a, peers-b, peers-c"):
        crf_preset("peers-z")
    for bad in [{"srgb": 0}, {"iters": 2.5}, {"sxy_gaussian": float("nan")}, {"gt_prob": 1.0}, {"iters": True}]:
        with pytest.raises(ValueError, match="CRF"):
            CRFParams(**bad)
    grid = crf_grid(PRESETS["peers-a"], srgb=[5, 50], iters=[5, 10])
    assert len(grid) == 4 and grid[1] == dataclasses.replace(PRESETS["peers-a"], srgb=5, iters=10)


# -- the consensus overwrite ------------------------------------------------------------------------
def scene():
    """Three inputs: a 3x3 object of class 5 that all see, a 10x10 object of class 2 that two see; the CRF
    output dropped the small object and shrank the large one."""
    preds = [np.zeros((20, 20), np.uint8) for _ in range(3)]
    for p in preds:
        p[2:5, 2:5] = 5
    for p in preds[:2]:
        p[8:18, 8:18] = 2
    crf = np.zeros((20, 20), np.uint8)
    crf[10:16, 10:16] = 2
    crf[0, 19] = 4  # a CRF-only pixel that every input calls background: never "restored" to background
    return crf, preds


def test_overwrite_restores_the_small_object_the_crf_dropped():
    crf, preds = scene()
    out = overwrite(crf, preds, k=3)
    expected = crf.copy()
    expected[2:5, 2:5] = 5  # all three agree; the class 2 object has only two votes
    assert out.tolist() == expected.tolist() and out.dtype == np.uint8
    expected[8:18, 8:18] = 2
    assert overwrite(crf, preds, k=2).tolist() == expected.tolist()


def test_overwrite_respects_the_area_threshold_and_k():
    crf, preds = scene()
    small_only = crf.copy()
    small_only[2:5, 2:5] = 5
    assert overwrite(crf, preds, k=2, max_area=9).tolist() == small_only.tolist()  # 9 pixels: kept; 100: not
    assert overwrite(crf, preds, k=2, max_area=8).tolist() == crf.tolist()
    for k in (0, 4):
        with pytest.raises(ValueError, match=r"k must lie in 1..3"):
            overwrite(crf, preds, k=k)
    with pytest.raises(ValueError, match="max_area"):
        overwrite(crf, preds, k=1, max_area=0)


def test_overwrite_overlap_goes_to_the_smaller_region():
    a, b = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)
    a[1:9, 1:9] = 2  # 64 pixels
    b[3:5, 3:5] = 7  # 4 pixels inside it; k=1 of 2 makes both regions agreed
    out = overwrite(np.zeros((10, 10), np.uint8), [a, b], k=1)
    assert (out[3:5, 3:5] == 7).all() and (out[1:9, 1:9] != 0).all() and out.sum() == 4 * 7 + 60 * 2


def test_overwrite_probs_makes_changed_pixels_one_hot():
    probs = np.array([[[0.6, 0.3]], [[0.4, 0.7]]], np.float32)  # argmax [0, 1]
    out = overwrite_probs(probs, np.array([[1, 1]]))
    assert out[:, 0, 0].tolist() == [0, 1] and np.allclose(out[:, 0, 1], [0.3, 0.7])


# -- over indices ----------------------------------------------------------------------------------
@pytest.fixture
def val_masks(tiny_root):
    ds = TrashDataset(tiny_root, "val")
    return {n: ds.load_mask(i) for i, n in enumerate(ds.file_names)}


def test_overwrite_index_gives_back_every_object(tiny_root, val_masks, tmp_path):
    truth = [write_index(tmp_path / f"in{k}" / "v", {n: confident(m, p=0.6) for n, m in val_masks.items()})
             for k in range(2)]
    erased = write_index(tmp_path / "crf" / "v", {n: confident(np.zeros_like(m)) for n, m in val_masks.items()})
    assert evaluate_index(erased, tiny_root, "val").scores.miou < 0.6
    out = overwrite_index(erased, truth, k=2, progress=False)
    assert out.path.name == "v_ow-k2" and evaluate_index(out, tiny_root, "val").scores.miou == 1.0
    table = sweep_overwrite(erased, truth, tiny_root, "val", ks=[2], max_areas=[None, 1], progress=False)
    assert table["k"].tolist() == [0, 2, 2] and table["val_mIoU"].iloc[1] == 1.0
    assert table["val_mIoU"].iloc[2] == table["val_mIoU"].iloc[0]  # no object is a single pixel


@pytest.mark.integration
def test_crf_index_on_a_pool_matches_one_process(tiny_root, val_masks, tmp_path):
    rng = np.random.default_rng(0)
    noisy = {n: 0.5 * confident(m, p=0.7) + 0.5 * rng.dirichlet(np.ones(11), m.shape).transpose(2, 0, 1)
             for n, m in val_masks.items()}
    index = write_index(tmp_path / "noisy" / "v", noisy, split="val")
    params = CRFParams(iters=3)
    out = crf_index(index, tiny_root, "val", params, workers=2, progress=False)
    assert out.path.name == f"v_crf-{params.tag}" and out.file_names == index.file_names
    ds = TrashDataset(tiny_root, "val")
    for i, name in enumerate(index.file_names):
        expected = dense_crf(index.load(i), ds.load_image(ds.file_names.index(name)), **params.as_dict())
        np.testing.assert_allclose(out.load(i), expected, atol=1.5 / 255)
    stamp = (out.path / "index.json").stat().st_mtime_ns
    assert crf_index(index, tiny_root, "val", params, workers=1, progress=False).path == out.path
    assert (out.path / "index.json").stat().st_mtime_ns == stamp  # identical settings: reused

    table = sweep_crf(index, tiny_root, "val", [params, "peers-c"], workers=2, progress=False)
    assert table["setting"].tolist() == ["input", params.tag, PRESETS["peers-c"].tag]
    assert table["val_mIoU"].iloc[0] == pytest.approx(evaluate_index(index, tiny_root, "val").scores.miou)
    assert table["val_mIoU"].iloc[1] == pytest.approx(evaluate_index(out, tiny_root, "val").scores.miou, abs=0.01)


@pytest.mark.integration
def test_cli_ensemble_with_crf_and_overwrite(tmp_path, capsys):
    from conftest import make_tiny_dataset

    from trashlib.cli import main

    root = make_tiny_dataset(tmp_path / "data", n_train=1, n_val=1, n_test=2, size=256)
    rng = np.random.default_rng(1)
    names = TrashDataset(root, "test").file_names
    folders = [str(write_index(tmp_path / f"m{k}" / "t", {n: rng.dirichlet(np.ones(11), (256, 256)).transpose(2, 0, 1)
                                                          .astype(np.float32) for n in names},
                               split="test", data_root=str(root)).path) for k in range(2)]
    csv = tmp_path / "sub.csv"
    assert main(["ensemble", *folders, "--data", str(root), "--split", "test", "--vote", "hard", "--crf", "peers-c",
                 "--overwrite", "2", "--max-area", "50", "--workers", "2", "--submission", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "+ CRF peers-c: 2 probability maps" in out and "+ overwrite k=2: 2 probability maps" in out
    assert out.strip().endswith(f"{csv}: OK") and validate_submission(csv, root / "test.json") == []
