"""MaskDINO: denoising queries, query selection, boxes, ignored pixels, published sizes, a Swin checkpoint.

The interface tests every model shares (forward/backward, probabilities, class weights, backbone
parameters) run on it from test_models.py.
"""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_model
from test_models_ignore import half_ignored_batch, ignored_columns

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.models import build_model
from trashlib.models.maskdino_decoder import MaskDINODecoder
from trashlib.models.maskdino_loss import generalized_iou, masks_to_boxes


def test_masks_to_boxes_by_hand():
    masks = torch.zeros(2, 4, 8, dtype=torch.bool)
    masks[0, 1:3, 2:6] = True  # rows 1-2, columns 2-5 of a 4 x 8 image
    boxes = masks_to_boxes(masks)
    torch.testing.assert_close(boxes[0], torch.tensor([4 / 8, 2 / 4, 4 / 8, 2 / 4]))
    torch.testing.assert_close(boxes[1], torch.zeros(4))  # an empty mask


def test_generalized_iou_by_hand():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    # half-overlapping: IoU 2 / 6, the hull is the union; disjoint: IoU 0, hull 3 x 1 minus union 2
    assert generalized_iou(a, torch.tensor([1.0, 0.0, 3.0, 2.0])).item() == pytest.approx(1 / 3)
    assert generalized_iou(torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([2.0, 0.0, 3.0, 1.0])).item() \
        == pytest.approx(-1 / 3)


def test_denoising_mask_hides_groups_from_each_other_and_from_the_matching_queries():
    blocked = MaskDINODecoder.denoising_mask(2, 3, 4, "cpu")  # 2 groups of 3 slots, 4 matching queries
    assert blocked.shape == (10, 10)
    assert blocked[6:, :6].all() and not blocked[6:, 6:].any()  # matching queries see only each other
    assert not blocked[:3, :3].any() and blocked[:3, 3:6].all() and not blocked[:6, 6:].any()


def test_query_selection_takes_the_tokens_with_the_best_class_score():
    torch.manual_seed(0)
    decoder = MaskDINODecoder(num_classes=3, hidden_dim=16, num_queries=2, num_layers=1, heads=2, ffn_dim=32,
                              mask_dim=16, levels=1).eval()
    memory = torch.randn(1, 9, 16)
    content, boxes = decoder.select_queries(memory, [(3, 3)])
    tokens = decoder.enc_output_norm(decoder.enc_output(memory))
    best = decoder.class_embed(tokens)[0, :, :-1].max(-1).values.topk(2).indices
    torch.testing.assert_close(content[0], tokens[0, best])
    # the box is the box head's correction of a 0.05-wide box centred on the token (the head starts at 0)
    torch.testing.assert_close(boxes.sigmoid()[0, :, 2:], torch.full((2, 2), 0.05))


def test_without_query_selection_the_queries_and_anchor_boxes_are_learnt():
    torch.manual_seed(0)
    decoder = MaskDINODecoder(num_classes=3, hidden_dim=16, num_queries=5, num_layers=2, heads=2, ffn_dim=32,
                              mask_dim=16, levels=2, query_selection=False)
    features, mask_features = [torch.randn(2, 16, 4, 4), torch.randn(2, 16, 2, 2)], torch.randn(2, 16, 8, 8)
    rounds, _ = decoder(features, mask_features, every_round=True)
    assert len(rounds.mask_logits) == 3 and rounds.mask_logits[0].shape == (2, 5, 8, 8)
    torch.testing.assert_close(rounds.boxes[0][0], decoder.query_embed.weight.sigmoid())
    assert not hasattr(decoder, "enc_output")


def test_denoising_queries_do_not_change_the_matching_queries_predictions():
    model = tiny_model("maskdino").train()  # dropout 0 in every preset: training mode is deterministic
    images, masks = half_ignored_batch()
    with torch.no_grad():
        torch.manual_seed(0)
        plain, none = model._decode(images, every_round=True)
        torch.manual_seed(0)
        out = model(images, masks)
        assert out.extras["loss_mask_dn"] > 0 and "loss_box" in out.extras
        with_dn, denoising = model._decode(images, every_round=True, targets=(
            [torch.tensor([1, 4, 7]), torch.tensor([0, 1, 4, 7])], [torch.rand(3, 4), torch.rand(4, 4)]))
    assert none is None and denoising.slots == 4 and denoising.groups == model.decoder.dn_num // 4
    assert denoising.predictions.class_logits[0].shape[1] == denoising.groups * denoising.slots
    for a, b in zip(plain.mask_logits, with_dn.mask_logits):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_evaluation_loss_has_no_denoising_terms_and_is_the_weighted_sum():
    model = tiny_model("maskdino").eval()
    images, masks = half_ignored_batch()
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(images, masks)
    terms = {k: v for k, v in out.extras.items() if k.startswith("loss_")}
    assert set(terms) == {"loss_cross_entropy", "loss_mask", "loss_dice", "loss_box", "loss_giou"}
    expected = sum(model.criterion.weight_dict[k] * v for k, v in terms.items())
    torch.testing.assert_close(out.loss, expected)


def test_training_step_gives_no_gradient_where_only_ignored_pixels_look(monkeypatch):
    model = tiny_model("maskdino").train()
    images, masks = half_ignored_batch()
    maps: list[torch.Tensor] = []
    heads = model.decoder.heads

    def keep(queries, mask_features):
        class_logits, mask_logits = heads(queries, mask_features)
        mask_logits.retain_grad()
        maps.append(mask_logits)
        return class_logits, mask_logits

    monkeypatch.setattr(model.decoder, "heads", keep)
    torch.manual_seed(0)
    model(images, masks).loss.backward()
    model.zero_grad(set_to_none=True)
    assert len(maps) == 1 + model.config.decoder_layers  # interm round, initial queries, each layer
    for scores in maps:
        n = ignored_columns(scores.shape[-1])
        assert torch.equal(scores.grad[..., :n], torch.zeros_like(scores.grad[..., :n]))
        assert scores.grad[..., scores.shape[-1] // 2 + 1:].abs().sum() > 0


def test_an_all_ignored_batch_trains_without_denoising_and_keeps_every_parameter_in_the_graph():
    model = tiny_model("maskdino").train()
    images, masks = half_ignored_batch()
    torch.manual_seed(0)
    out = model(images, torch.full_like(masks, IGNORE_INDEX))
    assert torch.isfinite(out.loss) and not any(k.endswith("_dn") for k in out.extras)
    out.loss.backward()
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for _, g in grads), [n for n, g in grads if g is None][:3]
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("size, published", [
    # MaskDINO Swin-L, ADE20K semantic: 223 M (paperswithcode's entry for the paper, arXiv 2206.02777; the
    # official README lists 223 M for its Swin-L models). No Swin-B MaskDINO is published: base is checked
    # against Mask2Former Swin-B's 107 M (Cheng et al. 2022), whose head MaskDINO's semantic head matches in size.
    ("large", 223e6), ("base", 107e6)])
def test_published_parameter_counts(size, published):
    with torch.device("meta"):
        model = build_model("maskdino", size=size)
    assert model.num_parameters() == pytest.approx(published, rel=0.05)
    decoder = model.decoder
    assert (len(decoder.layers), decoder.num_queries, decoder.hidden_dim, decoder.dn_num) == (9, 100, 256, 100)


def test_backbone_loads_a_local_swin_checkpoint(tmp_path):
    from transformers import SwinConfig, SwinForImageClassification

    from trashlib.models.sizes import SWIN

    torch.manual_seed(3)
    saved = SwinForImageClassification(SwinConfig(**{**SWIN["tiny"], "drop_path_rate": 0.2}, num_labels=5))
    saved.save_pretrained(tmp_path)
    model = build_model("maskdino", pretrained=tmp_path)
    loaded, weights = model.backbone.state_dict(), saved.state_dict()
    same = [k for k in weights if k.startswith(("swin.embeddings.", "swin.encoder."))]
    assert same and all(k in loaded for k in same)
    for key in same:
        torch.testing.assert_close(loaded[key], weights[key], atol=0, rtol=0)
    assert model.decoder.class_embed.out_features == NUM_CLASSES + 1
    assert model.backbone.config.drop_path_rate == 0.0  # the size's stochastic depth, not the checkpoint's
