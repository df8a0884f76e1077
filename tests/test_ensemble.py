"""Ensembles: soft and hard votes by hand (ties included), weights, alignment, the streamed index, fitting, CLI."""
from __future__ import annotations


import numpy as np
import pytest

from conftest import cli_help, confident as conftest_confident, write_index

from trashlib.data import TrashDataset
from trashlib.postprocess.ensemble import ensemble, fit_weights, hard_vote, normalize_weights, soft_vote, vote_probs
from trashlib.scoring.evaluation import evaluate_index
from trashlib.submission import index_to_submission, read_submission, validate_submission


@pytest.fixture(autouse=True)
def _probs_store(tmp_path, monkeypatch):
    import trashlib.paths as paths

    monkeypatch.setattr(paths, "PROBS_DIR", tmp_path / "probs")


@pytest.fixture(scope="module")
def root256(tmp_path_factory):
    """A tiny dataset of 256x256 images: the size a submission accepts."""
    from conftest import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("ens256") / "data", n_train=2, n_val=1, n_test=2, size=256)


def random_probs(rng, shape, *, sharpness=3.0):
    logits = rng.normal(size=shape) * sharpness
    e = np.exp(logits - logits.max(0))
    return (e / e.sum(0)).astype(np.float32)


def confident(mask, *, num_classes=11, p=0.6):
    return conftest_confident(mask, p=p, num_classes=num_classes)


# -- votes by hand ----------------------------------------------------------------------------------
def test_soft_vote_by_hand():
    a = np.array([[[0.8, 0.4]], [[0.2, 0.6]]])  # (2 classes, 1, 2 pixels)
    b = np.array([[[0.2, 0.6]], [[0.8, 0.4]]])
    # weights 1:3 -> 0.25, 0.75: pixel 0: 0.25*0.8 + 0.75*0.2 = 0.35; pixel 1: 0.25*0.4 + 0.75*0.6 = 0.55
    out = soft_vote([a, b], [1, 3])
    assert out.dtype == np.float32 and out.shape == (2, 1, 2)
    np.testing.assert_allclose(out[:, 0], [[0.35, 0.55], [0.65, 0.45]], atol=1e-6)
    np.testing.assert_allclose(soft_vote([a, b]), 0.5, atol=1e-6)  # equal weights: an exact tie
    np.testing.assert_allclose(soft_vote(iter([a, b]), [1, 0]), a, atol=1e-6)  # a generator, streamed


def test_weights_sum_to_one():
    np.testing.assert_allclose(normalize_weights([2, 6, 2], 3), [0.2, 0.6, 0.2])
    np.testing.assert_allclose(normalize_weights(None, 4), [0.25] * 4)
    assert normalize_weights([0.3, 0.9], 2).sum() == pytest.approx(1.0)
    for bad, match in [([1, 2], "2 weights for 3"), ([1, -1, 1], "non-negative"), ([0, 0, 0], "not all zero"),
                       ([1, float("nan"), 1], "finite")]:
        with pytest.raises(ValueError, match=match):
            normalize_weights(bad, 3)


def test_hard_vote_majority_and_ties():
    m0 = np.array([[1, 2], [3, 3]])
    m1 = np.array([[1, 3], [4, 5]])
    m2 = np.array([[2, 3], [5, 4]])
    # (0,0): 1,1,2 -> 1; (0,1): 2,3,3 -> 3; (1,0) and (1,1): three-way ties -> the best model's 3
    assert hard_vote([m0, m1, m2], num_classes=6).tolist() == [[1, 3], [3, 3]]
    assert hard_vote([m0, m1, m2], num_classes=6, best=2).tolist() == [[1, 3], [5, 4]]
    # two models disagreeing: the best one wins
    assert hard_vote([m0, m1], num_classes=6).tolist() == m0.tolist()
    assert hard_vote([m0, m1], num_classes=6, best=1).tolist() == m1.tolist()
    # tie between 1 and 2 that the best model (voting 3) is not part of: the next model in order decides
    four = [np.array([[3]]), np.array([[2]]), np.array([[1]]), np.array([[1]]), np.array([[2]])]
    assert hard_vote(four, num_classes=4).tolist() == [[2]]


def test_vote_probs_onehot_and_share():
    preds = [np.array([[1, 2]]), np.array([[1, 3]]), np.array([[2, 4]])]
    winner = hard_vote(preds, num_classes=5)  # [[1, 2]]: pixel 1 is a three-way tie, the best model said 2
    onehot = vote_probs(preds, winner, num_classes=5)
    assert onehot[:, 0, 0].tolist() == [0, 1, 0, 0, 0] and onehot[:, 0, 1].tolist() == [0, 0, 1, 0, 0]
    share = vote_probs(preds, winner, num_classes=5, output="share")
    np.testing.assert_allclose(share[:, 0, 0], [0, 2.5 / 3.5, 1 / 3.5, 0, 0], atol=1e-6)
    np.testing.assert_allclose(share[:, 0, 1], [0, 0, 1.5 / 3.5, 1 / 3.5, 1 / 3.5], atol=1e-6)
    assert (share.argmax(0) == winner).all() and np.allclose(share.sum(0), 1)


# -- the streamed index -----------------------------------------------------------------------------
def test_ensemble_of_one_input_equals_that_input(tmp_path):
    rng = np.random.default_rng(0)
    ix = write_index(tmp_path / "a", {f"x/{i}.jpg": random_probs(rng, (11, 24, 32)) for i in range(3)})
    soft = ensemble([ix], progress=False)
    assert soft.path != ix.path and soft.file_names == ix.file_names
    for i in range(len(ix)):
        np.testing.assert_array_equal(soft.load(i), ix.load(i))
    hard = ensemble([ix], vote="hard", progress=False)
    for i in range(len(ix)):
        np.testing.assert_array_equal(hard.argmax(i), ix.argmax(i))
        assert set(np.unique(hard.load(i))) <= {0.0, 1.0}  # stored one-hot


def test_disagreement_is_the_share_of_pixels_two_members_label_differently(tmp_path):
    from trashlib.postprocess.ensemble import disagreement

    mask = np.zeros((4, 5), np.int64)
    other = mask.copy()
    other[0, :2] = 3  # 2 of 20 pixels of the first image
    a = write_index(tmp_path / "a", {"x.jpg": confident(mask, p=0.9), "y.jpg": confident(mask, p=0.9)})
    b = write_index(tmp_path / "b", {"y.jpg": confident(mask, p=0.8), "x.jpg": confident(other, p=0.8)})
    c = write_index(tmp_path / "c", {"x.jpg": confident(mask + 1, p=0.6), "y.jpg": confident(mask, p=0.6)})
    table = disagreement([a, b, c], ["a", "b", "c"])
    assert table.loc["a", "b"] == table.loc["b", "a"] == pytest.approx(2 / 40)  # aligned by name, not position
    assert table.loc["a", "c"] == pytest.approx(20 / 40) and table.loc["b", "c"] == pytest.approx(20 / 40)
    assert (np.diag(table) == 0).all()
    with pytest.raises(ValueError, match="3 members but 2 names"):
        disagreement([a, b, c], ["a", "b"])


def test_inputs_covering_different_images_give_a_clear_error(tmp_path):
    p = np.full((2, 4, 4), 0.5, np.float32)
    a = write_index(tmp_path / "first", {"a.jpg": p, "b.jpg": p})
    b = write_index(tmp_path / "second", {"a.jpg": p, "c.jpg": p})
    with pytest.raises(ValueError, match=r"cover different images: 'b.jpg' is in .*first but not in .*second"):
        ensemble([a, b], progress=False)
    c = write_index(tmp_path / "third", {"a.jpg": p, "b.jpg": np.full((2, 4, 5), 0.5, np.float32)})
    with pytest.raises(ValueError, match=r"b.jpg: maps of shape \(2, 4, 5\)"):
        ensemble([a, c], progress=False)


def test_streamed_ensemble_matches_the_mean_is_reused_and_evaluates(tiny_root, tmp_path):
    rng = np.random.default_rng(1)
    names = TrashDataset(tiny_root, "val").file_names
    maps = [{n: random_probs(rng, (11, 64, 64)) for n in names} for _ in range(3)]
    # the store layout <source>/<data>_<split>-<tag>: the source names the ensemble
    indices = [write_index(tmp_path / f"m{k}" / "data_val-plain", m, split="val") for k, m in enumerate(maps)]
    out = ensemble(indices, weights=[1, 2, 1], progress=False)
    assert out.settings["weights"] == [0.25, 0.5, 0.25]
    assert [x["folder"] for x in out.settings["inputs"]] == [str(ix.path.resolve()) for ix in indices]
    assert out.path.parent.name == "ensemble-m0__m1__m2" and out.path.is_relative_to(tmp_path / "probs")
    for i, n in enumerate(names):  # stored inputs are quantised, so compare with their loaded maps
        expected = soft_vote([ix.load(i) for ix in indices], [0.25, 0.5, 0.25])
        np.testing.assert_allclose(out.load(i), expected, atol=1.5 / 255)
    stamp = (out.path / "index.json").stat().st_mtime_ns
    again = ensemble(indices, weights=[2, 4, 2], progress=False)  # the same normalised weights
    assert again.path == out.path and (again.path / "index.json").stat().st_mtime_ns == stamp
    assert ensemble(indices, weights=[1, 1, 2], progress=False).path != out.path
    ev = evaluate_index(out, tiny_root, "val")
    assert len(ev.per_image) == len(names) and 0 <= ev.scores.miou <= 1


def test_ensemble_index_makes_a_valid_submission(root256, tmp_path):
    rng = np.random.default_rng(2)
    names = TrashDataset(root256, "test").file_names
    indices = [write_index(tmp_path / f"t{k}", {n: random_probs(rng, (11, 256, 256)) for n in names})
               for k in range(2)]
    out = ensemble(indices, vote="hard", progress=False)
    csv = index_to_submission(out, tmp_path / "sub.csv")
    assert validate_submission(csv, root256 / "test.json") == []
    rows = list(read_submission(csv))
    assert [r[0] for r in rows] == names
    assert np.array_equal(rows[1][1], hard_vote([indices[0].argmax(1), indices[1].argmax(1)]))


def test_fit_weights_moves_weight_to_the_better_model(tiny_root, tmp_path):
    ds = TrashDataset(tiny_root, "val")
    masks = {n: ds.load_mask(i) for i, n in enumerate(ds.file_names)}
    good = write_index(tmp_path / "good", {n: confident(m, p=0.6) for n, m in masks.items()})
    # confidently wrong everywhere: with equal weights its 0.45 beats the good model's 0.3 + 0.0
    bad = write_index(tmp_path / "bad", {n: confident((m + 1) % 11, p=0.9) for n, m in masks.items()})
    fit = fit_weights([good, bad], tiny_root, "val", progress=False)
    assert fit.table.loc[0, "mIoU"] < 0.5  # equal weights
    assert fit.weights[0] > 0.5 > fit.weights[1] and sum(fit.weights) == pytest.approx(1.0)
    assert fit.miou > 0.95 and fit.miou == fit.table["mIoU"].max()


# -- the command ------------------------------------------------------------------------------------
@pytest.mark.integration
def test_cli_ensemble_writes_a_valid_csv(root256, tmp_path, capsys):
    from trashlib.cli import main

    rng = np.random.default_rng(3)
    names = TrashDataset(root256, "test").file_names
    folders = []
    for k in range(3):
        folders.append(str(write_index(tmp_path / f"c{k}", {n: random_probs(rng, (11, 256, 256)) for n in names},
                                       split="test", data_root=str(root256)).path))
    csv = tmp_path / "out" / "sub.csv"
    assert main(["ensemble", *folders, "--data", str(root256), "--split", "test", "--weights", "1", "2", "1",
                 "--submission", str(csv)]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(f"{csv}: OK") and "soft vote: 2 probability maps" in out
    assert validate_submission(csv, root256 / "test.json") == []


def test_cli_ensemble_errors_are_one_line(root256, tmp_path, capsys):
    from trashlib.cli import main

    p = np.full((11, 256, 256), 1 / 11, np.float32)
    names = TrashDataset(root256, "test").file_names
    val = write_index(tmp_path / "v", {n: p for n in names}, split="val")
    test = write_index(tmp_path / "t", {n: p for n in names}, split="test")
    other = write_index(tmp_path / "o", {n: p for n in names[:1]}, split="test")
    for argv, match in [([str(tmp_path)], "neither a probability index"),
                        ([str(val.path)], "holds predictions of split 'val', not --split test"),
                        ([str(test.path), str(test.path), "--weights", "1"], "1 weights for 2 inputs"),
                        ([str(test.path), str(other.path)], "cover different images"),
                        ([str(test.path), "--vote", "hard", "--weights", "1"], "weights apply to the soft vote"),
                        ([str(test.path), "--max-area", "5"], "--max-area applies to --overwrite")]:
        code = main(["ensemble", *argv, "--data", str(root256), "--split", "test"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
        if match:
            assert match in err


def test_cli_ensemble_help_documents_every_option():
    out = cli_help("ensemble", columns=200)
    for option in ("RUN_OR_INDEX", "--data", "--split", "--weights", "--fit-weights", "--vote", "--name", "--crf",
                   "--overwrite", "--max-area", "--workers", "--submission", "--force", "peers-a"):
        assert option in out
