"""The model factory: every entry (tiny, random init) trains, predicts probabilities and loads checkpoints."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_model

from trashlib.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from trashlib.models import MODEL_SIZES, MODELS, build_model



def batch(n: int = 2, size: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g)
    masks = torch.randint(0, NUM_CLASSES, (n, size, size), generator=g)
    masks[:, :6] = IGNORE_INDEX  # a band of ignored pixels in every image
    masks[0, 20:40, 20:40] = 3
    return images, masks


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA keeps transformers' default attention")
def test_on_a_cpu_swin_attends_eagerly_with_the_same_output():
    from trashlib.models import use_eager_attention

    torch.manual_seed(0)
    model = build_model("mask2former-swin", size="tiny").eval()
    backbone = model.hf.model.pixel_level_module.encoder
    assert backbone.config._attn_implementation == "eager" and use_eager_attention(model) == 0
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = model.predict_proba(x)
        backbone.set_attn_implementation("sdpa")
        torch.testing.assert_close(model.predict_proba(x), eager, rtol=1e-4, atol=1e-5)


def test_unknown_name_and_size_list_the_valid_ones():
    with pytest.raises(ValueError) as err:
        build_model("mask3former")
    assert all(name in str(err.value) for name in MODELS)
    with pytest.raises(ValueError) as err:
        build_model("segformer", size="huge")
    assert all(size in str(err.value) for size in MODEL_SIZES)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.integration
def test_forward_backward_gives_finite_loss_and_gradients(name):
    model = tiny_model(name).train()
    assert (model.name, model.size) == (name, "tiny")
    model.zero_grad(set_to_none=True)
    images, masks = batch()
    torch.manual_seed(0)
    out = model(images, masks)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out["loss"] is out.loss
    out.loss.backward()
    # every trainable parameter gets a gradient (DistributedDataParallel needs that); SwinBackbone's
    # never-used final LayerNorm is frozen by the builders for this reason
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for _, p in params)
    # zero-initialised branches (deformable offsets, SeMask's gamma-scaled path) may get exactly 0 at init
    nonzero = sum(p.numel() for _, p in params if p.grad.abs().sum() > 0)
    assert nonzero / sum(p.numel() for _, p in params) > 0.8
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.integration
def test_predict_proba_is_a_deterministic_distribution_at_input_resolution(name):
    model = tiny_model(name).eval()
    images, _ = batch()
    probs = model.predict_proba(images)
    assert probs.shape == (2, NUM_CLASSES, 64, 64)
    assert probs.min() >= 0
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 64, 64), atol=1e-4, rtol=0)
    torch.testing.assert_close(model.predict_proba(images), probs, atol=0, rtol=0)
    assert model.predict_proba(torch.rand(1, 3, 64, 96)).shape == (1, NUM_CLASSES, 64, 96)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.integration
def test_forward_without_masks_names_its_scores_honestly(name):
    # per-pixel classifiers give logits; Mask2Former, which has none, gives log-probabilities
    model = tiny_model(name).eval()
    images, _ = batch()
    with torch.no_grad():
        out = model(images)
    probs = model.predict_proba(images)
    if name.startswith(("mask2former", "semask", "maskdino", "segvit")):  # no per-pixel logits
        assert out.logits is None and out["log_probs"] is out.log_probs
        torch.testing.assert_close(out.log_probs.exp(), probs)
    else:
        assert out.log_probs is None and out["logits"] is out.logits
        torch.testing.assert_close(out.logits.softmax(1), probs)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.integration
def test_class_weights_change_the_loss_and_reset(name):
    model = tiny_model(name).eval()  # eval: no dropout / drop-path; the seed fixes Mask2Former's point sampling
    images, masks = batch(n=1, seed=1)

    def loss():
        torch.manual_seed(0)
        with torch.no_grad():
            return model(images, masks).loss.item()

    plain = loss()
    weights = torch.linspace(0.2, 3.0, NUM_CLASSES)
    model.set_class_weights(weights)
    weighted = loss()
    model.set_class_weights(None)
    assert not math.isclose(plain, weighted, rel_tol=1e-4)
    assert math.isclose(loss(), plain, rel_tol=1e-6)
    with pytest.raises(ValueError, match="11 entries"):
        model.set_class_weights(torch.ones(3))


@pytest.mark.parametrize("name", list(MODELS))
def test_backbone_parameters_are_a_proper_subset(name):
    model = tiny_model(name)
    backbone = {id(p) for p in model.backbone_parameters()}
    everything = {id(p) for p in model.parameters()}
    assert backbone and backbone < everything
    groups = model.param_groups(lr=1e-4, weight_decay=0.05)
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)
    assert all(g["lr"] == pytest.approx(1e-5) for g in groups if g["name"].startswith("backbone"))


def test_no_weight_decay_on_relative_position_bias_and_query_embeddings():
    model = tiny_model("mask2former-dinat")
    groups = model.param_groups(lr=1e-4, weight_decay=0.05)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    rpb = [p for n, p in model.named_parameters() if n.endswith(".rpb")]
    assert rpb and all(id(p) in no_decay for p in rpb)
    assert id(model.hf.model.transformer_module.queries_embedder.weight) in no_decay
    assert id(model.hf.class_predictor.weight) not in no_decay


def test_all_ignored_masks_give_a_finite_loss():
    images, masks = batch()  # n=2: UperNet's pooling-pyramid BatchNorm cannot train on one image
    masks[:] = IGNORE_INDEX
    for name in ("upernet-convnext", "mask2former-swin"):
        model = tiny_model(name).train()
        loss = model(images, masks).loss
        assert torch.isfinite(loss)
        loss.backward()
        model.zero_grad(set_to_none=True)


def test_masks_to_targets_by_hand():
    from trashlib.models.mask2former import masks_to_targets

    mask = torch.tensor([[[0, 2, 255], [2, 2, 0]]])
    mask_labels, class_labels = masks_to_targets(mask)
    assert class_labels[0].tolist() == [0, 2]
    # the ignore pixel is 0 in every binary mask (the loss leaves it out through a validity mask)
    assert mask_labels[0].tolist() == [[[1, 0, 0], [0, 0, 1]], [[0, 1, 0], [1, 1, 0]]]


def test_semantic_probs_with_one_query_is_its_class_distribution():
    from trashlib.models.mask2former import semantic_probs

    class_logits = torch.tensor([[[0.0, math.log(3.0), 5.0]]])  # 2 classes + "no object"
    mask_logits = torch.randn(1, 1, 4, 4)  # a single query's mask cancels in the normalisation
    probs = semantic_probs(class_logits, mask_logits, (8, 8))
    assert probs.shape == (1, 2, 8, 8)
    torch.testing.assert_close(probs[0, :, 3, 5], torch.tensor([0.25, 0.75]))


def _tiny_hf_mask2former(num_labels: int):
    from transformers import Mask2FormerForUniversalSegmentation

    from trashlib.models.mask2former import mask2former_config, swin_backbone_config
    from trashlib.models.sizes import MASK2FORMER_HEAD

    config = mask2former_config(swin_backbone_config("tiny"), MASK2FORMER_HEAD["tiny"], num_classes=num_labels)
    torch.manual_seed(1)
    return Mask2FormerForUniversalSegmentation(config)


@pytest.mark.integration
def test_mask2former_swin_loads_a_checkpoint_with_another_head(tmp_path):
    saved = _tiny_hf_mask2former(150)
    saved.save_pretrained(tmp_path)
    model = build_model("mask2former-swin", pretrained=tmp_path)
    assert model.hf.class_predictor.out_features == NUM_CLASSES + 1
    assert model.hf.config.id2label[2] == CLASS_NAMES[2]
    assert model.hf.criterion.empty_weight.shape == (NUM_CLASSES + 1,)
    saved_backbone = saved.model.pixel_level_module.encoder.state_dict()
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, saved_backbone[key], atol=0, rtol=0)


def test_missing_checkpoint_says_what_to_download(tmp_path, monkeypatch):
    from trashlib.models import pretrained

    monkeypatch.setattr(pretrained, "weights_dir", lambda: tmp_path / "weights")
    with pytest.raises(pretrained.PretrainedNotFoundError) as err:
        build_model("mask2former-swin", size="base", pretrained="no-such-org/no-such-mask2former")
    message = str(err.value)
    assert "hf download no-such-org/no-such-mask2former --local-dir" in message
    assert str(tmp_path / "weights" / "no-such-mask2former") in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(pretrained.PretrainedNotFoundError, match="config.json"):
        build_model("segformer", pretrained=tmp_path / "empty")


def test_dinat_state_dict_keys_match_transformers_backbone():
    from transformers import DinatBackbone

    from trashlib.models.dinat import PyTorchNeighborhoodAttention, dinat_config, natten_check_disabled

    with natten_check_disabled():
        reference = DinatBackbone(dinat_config("tiny"))
    encoder = tiny_model("mask2former-dinat").backbone
    assert set(encoder.state_dict()) == set(reference.state_dict())
    assert any(isinstance(m, PyTorchNeighborhoodAttention) for m in encoder.modules())


def test_dinat_backbone_loads_an_imagenet_checkpoint(tmp_path):
    from transformers import DinatForImageClassification

    from trashlib.models.dinat import dinat_config, natten_check_disabled

    with natten_check_disabled():
        torch.manual_seed(2)
        saved = DinatForImageClassification(dinat_config("tiny", num_labels=7))
    saved.save_pretrained(tmp_path)
    model = build_model("mask2former-dinat", pretrained=tmp_path)
    loaded = model.backbone.state_dict()
    for key, value in saved.dinat.state_dict().items():
        if key.startswith(("embeddings.", "encoder.")):
            torch.testing.assert_close(loaded[key], value, atol=0, rtol=0)


def test_dinat_attention_module_splits_heads_correctly():
    # kernel == grid size: every query sees the whole 5x5 grid, so the module must equal
    # multi-head full attention with the bias table indexed by (key - query + k - 1)
    from trashlib.models.dinat import dinat_config, natten_check_disabled, use_pytorch_attention
    from transformers.models.dinat.modeling_dinat import NeighborhoodAttention

    with natten_check_disabled():
        module = use_pytorch_attention(NeighborhoodAttention(dinat_config("tiny"), 8, 2, 5, 1)).eval()
    torch.nn.init.normal_(module.rpb)
    x = torch.randn(2, 5, 5, 8)
    out = module(x)[0]
    q, k, v = (layer(x).view(2, 25, 2, 4).transpose(1, 2) for layer in (module.query, module.key, module.value))
    yy, xx = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    dy = (yy.reshape(-1)[None, :] - yy.reshape(-1)[:, None]) + 4
    dx = (xx.reshape(-1)[None, :] - xx.reshape(-1)[:, None]) + 4
    scores = q @ k.transpose(-1, -2) / 2.0 + module.rpb[:, dy, dx]
    expected = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 5, 8)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_semask_layers_are_identity_at_init_and_add_a_training_loss(monkeypatch):
    from transformers import SwinBackbone

    from trashlib.models.semask import SEMANTIC_LOSS_WEIGHT

    model = tiny_model("semask-swin").eval()
    images, masks = batch()
    plain = SwinBackbone(model.backbone.config).eval()
    missing, unexpected = plain.load_state_dict(model.backbone.state_dict(), strict=False)
    assert not missing and unexpected and all(".semantic_layer." in k for k in unexpected)
    pixels = model.normalize(images)
    with torch.no_grad():
        for ours, ref in zip(model.backbone(pixels).feature_maps, plain(pixels).feature_maps):
            torch.testing.assert_close(ours, ref, atol=0, rtol=0)

    model.train()
    torch.manual_seed(0)
    out = model(images, masks)
    assert out.extras["loss_semantic"] > 0
    expected = out.extras["loss_mask2former"] + SEMANTIC_LOSS_WEIGHT * out.extras["loss_semantic"]
    torch.testing.assert_close(out.loss.detach(), expected)

    def fail(*args, **kwargs):
        raise AssertionError("the semantic decoder ran at inference")

    monkeypatch.setattr(model, "decode_semantic", fail)
    model.eval()
    assert model.predict_proba(images).shape == (2, NUM_CLASSES, 64, 64)


def test_cost_helpers():
    from trashlib.models.cost import count_gflops, time_inference

    model = tiny_model("upernet-convnext")
    assert 1e6 < model.num_parameters() < 1e7  # tiny: millions of parameters, not tens of millions
    gflops_64, gflops_128 = count_gflops(model, 64), count_gflops(model, 128)
    assert gflops_64 > 0 and 3.5 < gflops_128 / gflops_64 < 4.5  # a conv net's cost scales with the area
    assert time_inference(model, 64, 1, warmup=0) > 0


def test_dinat_under_mask2former_builds_without_transformers_compatibility_warning():
    """transformers warns that DiNAT "may not be compatible with Mask2Former"; the factory wires it on purpose."""
    import logging

    from transformers import Mask2FormerConfig
    from transformers.utils import logging as hf_logging

    from trashlib.models.dinat import dinat_config
    from trashlib.models.mask2former import mask2former_config

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    log = hf_logging.get_logger("transformers.models.mask2former.configuration_mask2former")
    handler = Keep()
    log.addHandler(handler)
    try:
        hf_logging.get_logger().warning_once.__func__.cache_clear()  # transformers says it once per process
        mask2former_config(dinat_config("tiny"), {}, num_classes=NUM_CLASSES)
        assert not [m for m in records if "not a supported model" in m]
        hf_logging.get_logger().warning_once.__func__.cache_clear()
        Mask2FormerConfig(backbone_config=dinat_config("tiny"))  # the same config built plainly does warn
        assert [m for m in records if "not a supported model" in m]
    finally:
        log.removeHandler(handler)


@pytest.mark.integration
def test_cost_table_measures_every_model_in_one_place():
    from trashlib.models.cost import cost_table, synthetic_batch

    images, masks = synthetic_batch(2, 32)
    assert images.shape == (2, 3, 32, 32) and 1 < len(masks.unique()) <= 4  # background and up to 3 classes
    table = cost_table(["segformer", "upernet-convnext"], infer_size=64, work_size=32, batch_size=2, rounds=1,
                       progress=False)
    assert list(table.index) == ["segformer", "upernet-convnext"]
    assert list(table.columns) == ["params (M)", "GFLOPs@64", "train s/step (b2@32)", "infer s/img@64"]
    assert (table.to_numpy() > 0).all()
    assert table.loc["upernet-convnext", "params (M)"] * 1e6 == build_model("upernet-convnext").num_parameters()
    with pytest.raises(ValueError, match="distinct"):
        cost_table(["segformer", "segformer"])
