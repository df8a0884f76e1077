"""Inference: TTA by hand, sliding windows, the probability store, predict -> index -> submission, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import cli_help
from trashlib.models.base import SegmentationModel, SegOutput
from trashlib.predict.inference import TTA, predict, predict_tta, sliding_window
from trashlib.predict.probmap import load_probs, quantize_probs, save_probs
from trashlib.predict.probs import ProbIndex, ProbWriter
from trashlib.submission import index_to_submission


class Pointwise(SegmentationModel):
    """Per-pixel classifier (1x1 convolutions): equivariant to flips, crops and resizing of flat regions."""

    name, size = "pointwise", "tiny"

    def __init__(self, kernel: int = 1):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, kernel, padding=kernel // 2), nn.Tanh(),
                                 nn.Conv2d(8, self.num_classes, 1))

    def forward(self, images, masks=None):
        return SegOutput(logits=self.net(self.normalize(images)))

    @torch.no_grad()
    def predict_proba(self, images):
        return self.forward(images).logits.mul(3).softmax(1)


class Column(SegmentationModel):
    """Not flip-equivariant: P(class 0) = x / (W - 1), P(class 1) = 1 - that, from the column alone."""

    def predict_proba(self, images):
        n, _, h, w = images.shape
        x = torch.linspace(0, 1, w).expand(n, 1, h, w)
        return torch.cat([x, 1 - x, torch.zeros(n, self.num_classes - 2, h, w)], 1)


# -- storage ---------------------------------------------------------------------------------------
def test_quantize_gives_the_units_to_the_largest_remainders_lower_class_first_on_ties():
    rng = np.random.default_rng(0)
    p = rng.integers(0, 4, (6, 9, 7)).astype(np.float32) + rng.random((6, 9, 7)) * (rng.random((6, 9, 7)) < 0.3)
    p /= p.sum(0)  # many pixels whose remainders tie exactly
    q = quantize_probs(p)
    for y, x in np.ndindex(9, 7):
        scaled = np.clip(p[:, y, x], 0, 1).astype(np.float32) * np.float32(255)
        want = np.floor(scaled)
        order = sorted(range(6), key=lambda c: (-(scaled[c] - want[c]), c))
        for c in order[:int(round(255 - want.sum()))]:
            want[c] += 1
        assert q[:, y, x].tolist() == want.astype(int).tolist()


def test_quantize_by_hand():
    p = np.array([0.5, 0.3, 0.2]).reshape(3, 1, 1)
    # 127.5, 76.5, 51 floor to 127, 76, 51 (sum 254): the one missing unit goes to the first largest remainder
    assert quantize_probs(p).ravel().tolist() == [128, 76, 51]


def test_store_round_trip_error_and_sums(tmp_path):
    rng = np.random.default_rng(0)
    p = torch.from_numpy(rng.normal(size=(11, 32, 48)) * 3).softmax(0).numpy()
    q = quantize_probs(p)
    assert (q.astype(int).sum(0) == 255).all()
    sha1 = save_probs(tmp_path / "a.npz", p, file_name="x/a.jpg")
    back = load_probs(tmp_path / "a.npz", file_name="x/a.jpg", shape=p.shape, sha1=sha1)
    assert back.dtype == np.float32 and back.shape == p.shape
    assert np.abs(back - p).max() < 1 / 255
    np.testing.assert_allclose(back.sum(0), 1, atol=1e-5)
    save_probs(tmp_path / "b.npz", p, file_name="x/b.jpg", quantize=False)
    assert np.abs(load_probs(tmp_path / "b.npz", file_name="x/b.jpg") - p).max() < 1e-3  # float16
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


# -- TTA and windows -------------------------------------------------------------------------------
def test_hflip_tta_by_hand():
    probs = predict_tta(Column(), torch.rand(2, 3, 8, 5), TTA(hflip=True))
    # plain view: (x, 1 - x); flipped back: (1 - x, x); the average is one half everywhere
    torch.testing.assert_close(probs[:, :2], torch.full((2, 2, 8, 5), 0.5))
    assert probs[:, 2:].abs().max() == 0


def test_flip_equivariant_model_is_unchanged_by_tta_and_windows():
    model = Pointwise().eval()
    x = torch.rand(2, 3, 64, 64)
    plain = model.predict_proba(x)
    torch.testing.assert_close(predict_tta(model, x, TTA(hflip=True)), plain)
    for window in ((24, 16), (64, 64), (80, 80)):  # uneven tiling, one window, padded image
        torch.testing.assert_close(sliding_window(model, x, size=window[0], stride=window[1]), plain)
    flat = torch.ones(1, 3, 40, 40) * torch.tensor([0.2, 0.5, 0.7]).view(1, 3, 1, 1)
    torch.testing.assert_close(predict_tta(model, flat, TTA(scales=(0.5, 1.0, 1.5))), model.predict_proba(flat))


def test_window_of_full_size_equals_plain_inference():
    model = Pointwise(kernel=3).eval()  # 3x3: windows smaller than the image WOULD change the borders
    x = torch.rand(1, 3, 64, 64)
    plain = predict_tta(model, x)
    assert torch.equal(predict_tta(model, x, TTA(window=(64, 64))), plain)
    assert not torch.allclose(predict_tta(model, x, TTA(window=(32, 16))), plain)
    sums = predict_tta(model, x, TTA(hflip=True, scales=(0.75, 1.25), window=(32, 16))).sum(1)
    torch.testing.assert_close(sums, torch.ones_like(sums))


# -- predict ---------------------------------------------------------------------------------------
def test_predict_index_round_trip_and_reuse(tiny_root, tmp_path, monkeypatch):
    import trashlib.predict.inference as inference

    model = Pointwise(kernel=3).eval()
    index = predict(model, tiny_root, "test", out_dir=tmp_path, tta=TTA(hflip=True, scales=(1.0, 1.5)), progress=False)
    test = json.loads((tiny_root / "test.json").read_text())
    assert index.file_names == [im["file_name"] for im in test["images"]] and len(index) == 2
    assert index.path == tmp_path / f"{tiny_root.name}_test-hflip_s1-1.5"
    from trashlib.data import TrashDataset

    dataset = TrashDataset(tiny_root, "test")
    names = []
    for i, (name, probs) in enumerate(index):
        names.append(name)
        assert probs.shape == (11, 64, 64) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
        image = torch.from_numpy(dataset.load_image(i).copy()).permute(2, 0, 1)[None].float() / 255
        direct = predict_tta(model, image, TTA(hflip=True, scales=(1.0, 1.5)))[0].numpy()
        assert np.abs(probs - direct).max() < 1 / 255
        assert index.argmax(i).dtype == np.uint8 and index.argmax(i).shape == (64, 64)
    assert names == index.file_names
    meta = json.loads((index.path / "index.json").read_text())
    assert meta["settings"]["tta"] == {"hflip": True, "scales": [1.0, 1.5], "window": None, "size": None}
    assert meta["dtype"] == "uint8"

    def no_inference(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(inference, "predict_tta", no_inference)
    again = predict(model, tiny_root, "test", out_dir=tmp_path, tta=TTA(hflip=True, scales=(1.0, 1.5)), progress=False)
    assert isinstance(again, ProbIndex) and again.path == index.path
    with torch.no_grad():
        model.net[0].bias.add_(1.0)  # other weights, same name: must not reuse
    with pytest.raises(AssertionError, match="recomputed"):
        predict(model, tiny_root, "test", out_dir=tmp_path, tta=TTA(hflip=True, scales=(1.0, 1.5)), progress=False)


def test_tta_rejects_bad_settings_and_names_its_folder():
    with pytest.raises(ValueError, match="window must be"):
        TTA(window=(16, 32))
    with pytest.raises(ValueError, match="scales must be"):
        TTA(scales=(0.0, 1.0))
    assert TTA().tag == "plain"
    assert TTA(hflip=True, scales=[0.75, 1, 1.25], window=(512, 384)).tag == "hflip_s0.75-1-1.25_w512-384"


def test_bare_model_predictions_go_to_the_store(tiny_root, tmp_path, monkeypatch):
    import trashlib.paths as paths

    monkeypatch.setattr(paths, "PROBS_DIR", tmp_path / "probs")
    index = predict(Pointwise(), tiny_root, "test", tta=TTA(), progress=False)
    assert index.path.parent.parent == tmp_path / "probs" and index.path.name == f"{tiny_root.name}_test-plain"
    assert index.path.parent.name.startswith("pointwise-")


def test_writer_resumes_and_never_clears_foreign_folders(tmp_path):
    items = [{"image_id": i, "file_name": f"{i}.jpg", "shape": [2, 4, 4]} for i in range(3)]
    probs = np.full((2, 4, 4), 0.5, dtype=np.float32)
    writer = ProbWriter(tmp_path / "a", items, {"s": 1})
    writer.write(0, probs)
    writer._pool.shutdown(wait=True)  # an interruption after one map
    again = ProbWriter(tmp_path / "a", items, {"s": 1})
    assert again.todo == [1, 2]
    for i in again.todo:
        again.write(i, probs)
    index = again.close()
    assert len(index) == 3 and ProbWriter(tmp_path / "a", items, {"s": 1}).complete
    assert ProbWriter(tmp_path / "a", items, {"s": 2}).todo == [0, 1, 2]  # other settings: afresh
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="did not write"):
        ProbWriter(tmp_path / "mine", items, {"s": 1})
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.fixture(scope="module")
def root256(tmp_path_factory):
    """256x256 images: a size the submission format accepts."""
    from conftest import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("r256") / "data", n_train=2, n_val=1, n_test=2, size=256)


def test_index_to_submission_validates(root256, tmp_path):
    from trashlib.submission import read_submission, validate_submission

    index = predict(Pointwise(), root256, "test", out_dir=tmp_path, progress=False)
    csv = index_to_submission(index, tmp_path / "sub.csv")
    assert validate_submission(csv, root256 / "test.json") == []
    rows = list(read_submission(csv))
    assert [r[0] for r in rows] == index.file_names
    assert np.array_equal(rows[0][1], index.argmax(0))


@pytest.mark.integration
def test_cli_predict_writes_a_valid_submission(root256, tmp_path, capsys, monkeypatch):
    import trashlib.paths as paths

    from trashlib.cli import main
    from trashlib.config import TrainConfig
    from trashlib.training import train

    cfg = TrainConfig(model="segformer", data_root=str(root256), steps=1, batch_size=1, image_size=64,
                      val_split=None, num_workers=0, run_name="cli-predict", out_dir=str(tmp_path / "runs"))
    monkeypatch.setattr(paths, "PROBS_DIR", tmp_path / "probs")
    run = train(cfg, progress=False)
    csv = tmp_path / "sub.csv"
    assert main(["predict", str(run.path), "--data", str(root256), "--submission", str(csv), "--tta", "hflip"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{csv}: OK")
    assert (tmp_path / "probs" / "cli-predict" / f"{root256.name}_test-hflip" / "index.json").exists()


def test_cli_predict_help_documents_options():
    out = cli_help("predict")
    for option in ("RUN_DIR", "--data", "--split", "--submission", "--tta", "--scales", "--window"):
        assert option in out


def test_float16_store_keeps_float16(tiny_root, tmp_path):
    index = predict(Pointwise(), tiny_root, "test", tta=TTA(), out_dir=tmp_path, quantize=False, progress=False)
    with np.load(index.path / index.items[0]["path"]) as z:
        assert z["probs"].dtype == np.float16
    assert index.meta["dtype"] == "float16" and index.path.name == f"{tiny_root.name}_test-plain"
