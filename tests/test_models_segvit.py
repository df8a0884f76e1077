"""SegViT (plain ViT + ATM decoder): the loss by hand, ignored pixels, checkpoints and the published sizes."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_model
from test_models_ignore import half_ignored_batch, ignored_columns

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.models import build_model

# The official SegViT (github.com/zbwxp/SegVit) publishes GFLOPs, not parameter counts. These are the
# counts of its modules at ADE20K's 150 classes and a 512 crop, summed by hand from its configs
# (configs/_base_/models/seg_vit-b16.py; configs/segvit/segvit_vit-l_jax_512x512_80k_cocostuff10k.py with
# 150 classes) and decode_heads/atm_head.py: mmseg's ViT (patch conv, class token, 1 + 32^2 position
# embeddings, 12 D^2 + 13 D per layer, no final norm) plus the ATM head (per stage Linear(D, D/2) +
# LayerNorm + 3 decoder layers of self-attention, q/k/v/proj cross-attention, a 4x feed-forward, 3 norms;
# the class queries and a Linear(D/2, 151)).
OFFICIAL_PARAMETERS = {"base": 108_736_279, "large": 343_715_479}


def test_loss_by_hand_binds_each_query_to_its_class():
    from trashlib.models.atm import atm_loss

    class_logits = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0))
    mask_logits = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    masks = torch.tensor([[[0, 0], [2, IGNORE_INDEX]]])  # classes 0 and 2 present, class 1 absent
    weight = torch.tensor([1.0, 1.0, 1.0, 0.1])
    losses = atm_loss(class_logits, mask_logits, masks, class_weight=weight, ignore_index=IGNORE_INDEX)
    expected_ce = F.cross_entropy(class_logits[0], torch.tensor([0, 3, 2]), weight=weight)  # 3 = "no object"
    torch.testing.assert_close(losses["loss_ce"], expected_ce)
    valid = torch.tensor([True, True, True, False])
    focal, dice = 0.0, 0.0
    for query, target in ((0, [1.0, 1.0, 0.0]), (2, [0.0, 0.0, 1.0])):  # the valid pixels only
        logits, labels = mask_logits[0, query].flatten()[valid], torch.tensor(target)
        p = logits.sigmoid()
        p_t = p * labels + (1 - p) * (1 - labels)
        alpha_t = 0.25 * labels + 0.75 * (1 - labels)
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        focal += (alpha_t * bce * (1 - p_t) ** 2).mean()
        dice += 1 - (2 * (p * labels).sum() + 1) / (p.sum() + labels.sum() + 1)
    torch.testing.assert_close(losses["loss_focal"], focal / 2)
    torch.testing.assert_close(losses["loss_dice"], dice / 2)


def test_every_stage_is_supervised_with_the_official_weights():
    from trashlib.models.atm import atm_loss

    model = tiny_model("segvit").eval()  # eval: no dropout
    images, masks = half_ignored_batch()
    with torch.no_grad():
        out = model(images, masks)
        class_logits, mask_logits, padded = model.decode(images)
    assert len(class_logits) == len(mask_logits) == 3
    expected = 0.0
    for c, m in zip(class_logits, mask_logits):
        parts = atm_loss(c, m, masks, class_weight=model.class_weight, ignore_index=IGNORE_INDEX, padded_size=padded)
        expected += parts["loss_ce"] + 20 * parts["loss_focal"] + parts["loss_dice"]
    torch.testing.assert_close(out.loss, expected)
    # a stage's mask is the running sum of the stages' similarity maps, so later masks differ
    assert not torch.equal(mask_logits[0], mask_logits[-1])


def test_training_step_gives_no_gradient_where_only_ignored_pixels_look():
    model = tiny_model("segvit").train()
    images, masks = half_ignored_batch()
    kept = []

    def keep(module, args, output):
        for scores in output[1]:
            scores.retain_grad()
            kept.append(scores)

    handle = model.decoder.register_forward_hook(keep)
    try:
        loss = model(images, masks).loss
    finally:
        handle.remove()
    loss.backward()
    model.zero_grad(set_to_none=True)
    for scores in kept:  # 8x8 token grids (patch 8 on 64 pixels)
        n = ignored_columns(scores.shape[-1])
        assert n > 0 and torch.equal(scores.grad[..., :n], torch.zeros_like(scores.grad[..., :n]))
        assert scores.grad[..., scores.shape[-1] // 2 + 1:].abs().sum() > 0


def test_images_ignored_everywhere_give_a_finite_loss():
    model = tiny_model("segvit").train()
    images, masks = half_ignored_batch()
    masks[0] = IGNORE_INDEX
    for labels in (masks, torch.full_like(masks, IGNORE_INDEX)):
        loss = model(images, labels).loss
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad(set_to_none=True)


def test_sizes_off_the_patch_grid_are_padded_and_cropped():
    model = tiny_model("segvit").eval()
    probs = model.predict_proba(torch.rand(2, 3, 60, 70, generator=torch.Generator().manual_seed(0)))
    assert probs.shape == (2, NUM_CLASSES, 60, 70)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 60, 70), atol=1e-4, rtol=0)


def test_the_layer_loop_is_transformers_vit_layer_and_drops_the_class_token():
    model = tiny_model("segvit").eval()
    x = torch.randn(2, 5, model.vit.config.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for layer in model.vit.layers:
            torch.testing.assert_close(model._layer(layer, x, 0.3), layer(x))
        features, grid = model.features(torch.rand(1, 3, 64, 48))
    assert grid == (8, 6) and [f.shape for f in features] == [(1, 48, model.vit.config.hidden_size)] * 3
    assert not model.vit.embeddings.cls_token.requires_grad


def test_backbone_loads_a_vit_checkpoint_and_resizes_its_position_embeddings(tmp_path):
    from transformers import ViTForImageClassification

    from trashlib.models.segvit import vit_config

    torch.manual_seed(3)
    saved = ViTForImageClassification(vit_config("tiny", image_size=64, num_labels=5))  # an 8x8 position grid
    saved.save_pretrained(tmp_path)
    model = build_model("segvit", pretrained=tmp_path)
    reference = saved.vit.state_dict()
    for key, value in model.vit.state_dict().items():
        if key != "embeddings.position_embeddings":
            torch.testing.assert_close(value, reference[key], atol=0, rtol=0)
    assert model.vit.embeddings.position_embeddings.shape == (1, 1 + 16 * 16, 192)  # 128 px, patch 8
    assert model.predict_proba(torch.rand(1, 3, 128, 128)).shape == (1, NUM_CLASSES, 128, 128)
    with pytest.raises(ValueError, match="need 24 ViT layers"):
        build_model("segvit", size="large", pretrained=tmp_path)


@pytest.mark.parametrize("size", ["base", "large"])
def test_published_shapes_match_the_official_parameter_counts(size):
    with torch.device("meta"):
        ade = build_model("segvit", size=size, num_classes=150)
        ours = build_model("segvit", size=size)
    assert ade.num_parameters() == OFFICIAL_PARAMETERS[size]  # the same modules, counted exactly
    assert math.isclose(ours.num_parameters(), OFFICIAL_PARAMETERS[size], rel_tol=0.05)
    assert ours.vit.config.patch_size == 16 and ours.vit.embeddings.position_embeddings.shape[1] == 1 + 32 * 32
