"""Every model's loss honours ignore_index 255: ignored pixels count in no loss term.

Label maps here ignore the left half (columns < 32 of 64). A low-resolution score map of width w
(scale s = 64 / w) is read at a valid pixel x >= 32, or at a sampled point touching one (x > 31), through
bilinear weights on the columns j with |(x + 0.5) / s - 0.5 - j| < 1, so columns j <= 31.5 / s - 1.5
never reach a valid pixel: the loss must not depend on them at all.
"""
from __future__ import annotations

import contextlib
import math

import pytest
import torch
from transformers.models.mask2former.modeling_mask2former import (Mask2FormerLoss, dice_loss, pair_wise_dice_loss,
                                                                  pair_wise_sigmoid_cross_entropy_loss,
                                                                  sample_point, sigmoid_cross_entropy_loss)

from conftest import tiny_model

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.models.mask2former import masks_to_targets
from trashlib.models.mask2former_loss import (
    pairwise_costs,
    point_targets,
    sample_cycled,
    weighted_dice,
    weighted_sigmoid_ce,
)

# whole models forward and backward (`make test` runs it; `make test-fast` leaves it out)
pytestmark = pytest.mark.integration

MASK2FORMER = ["mask2former-swin", "semask-swin", "mask2former-dinat"]
MASK2FORMER.append("semask-fapn")
ALL = MASK2FORMER + ["segformer", "upernet-swin"]


def half_ignored_batch():
    """Two 64x64 images whose label maps ignore columns < 32; blocks of classes 1, 4, 7 on the right."""
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    masks = torch.full((2, 64, 64), IGNORE_INDEX)
    masks[:, :, 32:48] = 1
    masks[:, :32, 48:] = 4
    masks[:, 32:, 48:] = 7
    masks[1, 40:, 32:] = 0
    return images, masks


def ignored_columns(width: int) -> int:
    """How many leading columns of a width-`width` map reach no valid pixel (see the module docstring)."""
    return max(0, math.floor(31.5 / (64 / width) - 1.5) + 1)


def perturb_ignored(logits: torch.Tensor) -> torch.Tensor:
    """Mask logits changed where only ignored pixels see them: 0 (most uncertain) or +-8."""
    out = logits.clone()
    n = ignored_columns(out.shape[-1])
    noise = torch.randn(out[..., :n].shape, generator=torch.Generator().manual_seed(1)).sign() * 8
    noise[:, ::2] = 0
    out[..., :n] = noise
    return out


# --- the weighted point losses, against transformers' unweighted ones -------------------------------

def test_point_targets_by_hand():
    valid = torch.tensor([[[[1.0, 0.0]]]])  # one row: a valid pixel, then an ignored one
    target = torch.tensor([[[[1.0, 0.0]]]])  # the valid pixel belongs to the mask
    coords = torch.tensor([[[0.25, 0.5], [0.5, 0.5], [0.75, 0.5]]])  # (x, y): centre, midway, centre
    labels, weights = point_targets(target, valid, coords)
    labels = labels[:, 0]  # the one mask's
    torch.testing.assert_close(weights, torch.tensor([[1.0, 0.5, 0.0]]))
    # midway: half the neighbourhood is valid and all of that half is in the mask
    torch.testing.assert_close(labels, torch.tensor([[1.0, 1.0, 0.0]]))


def test_zero_weight_points_drop_out_of_the_point_losses():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(3, 10, generator=g), (torch.rand(3, 10, generator=g) > 0.5).float()
    weights = torch.cat([torch.ones(3, 6), torch.zeros(3, 4)], 1)
    for ours, theirs in ((weighted_sigmoid_ce, sigmoid_cross_entropy_loss), (weighted_dice, dice_loss)):
        torch.testing.assert_close(ours(logits, labels, torch.ones(3, 10), 2), theirs(logits, labels, 2))
        torch.testing.assert_close(ours(logits, labels, weights, 2), theirs(logits[:, :6], labels[:, :6], 2))
    bce, dice = (c[0] for c in pairwise_costs(logits[None], labels[None, :2], weights[:1]))
    torch.testing.assert_close(bce, pair_wise_sigmoid_cross_entropy_loss(logits[:, :6], labels[:2, :6]))
    torch.testing.assert_close(dice, pair_wise_dice_loss(logits[:, :6], labels[:2, :6]))
    # one point, logit 0, label 1: BCE log 2; Dice 1 - (2 * 0.5 + 1) / (0.5 + 1 + 1) = 0.2
    one = (torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), 1)
    assert weighted_sigmoid_ce(*one).item() == pytest.approx(math.log(2))
    assert weighted_dice(*one).item() == pytest.approx(0.2)


# --- the criterion ------------------------------------------------------------------------------------

def criterion_inputs():
    g = torch.Generator().manual_seed(0)
    _, masks = half_ignored_batch()
    mask_labels, class_labels = masks_to_targets(masks)
    return torch.randn(2, 8, 16, 16, generator=g), torch.randn(2, 8, NUM_CLASSES + 1, generator=g), \
        mask_labels, class_labels, masks


_RAND = torch.rand


def fixed_points(*shape, **kwargs):
    """torch.rand's stand-in: the same points in every row, so a batched and a looped loss sample alike."""
    *rows, n, two = shape
    return _RAND(n, two, generator=torch.Generator().manual_seed(n)).expand(*rows, n, two).clone()


@pytest.mark.parametrize("layers", [1, 3])
def test_without_ignored_pixels_the_criterion_is_transformers_loss(monkeypatch, layers):
    """Every layer and image matched and scored in one batch: transformers' per-layer, per-image losses, summed."""
    criterion = tiny_model("mask2former-swin").hf.criterion
    g = torch.Generator().manual_seed(3)
    predictions = [(torch.randn(2, 8, 16, 16, generator=g), torch.randn(2, 8, NUM_CLASSES + 1, generator=g))
                   for _ in range(layers)]
    aux = [{"masks_queries_logits": m, "class_queries_logits": c} for m, c in predictions[1:]] or None
    masks = torch.randint(0, NUM_CLASSES, (2, 64, 64), generator=torch.Generator().manual_seed(2))
    masks[1, :, :40] = 3  # images with different numbers of classes: the targets are padded
    mask_labels, class_labels = masks_to_targets(masks)
    reference = Mask2FormerLoss(tiny_model("mask2former-swin").hf.config, criterion.weight_dict)
    monkeypatch.setattr(torch, "rand", fixed_points)
    expected = reference(*predictions[0], mask_labels, class_labels, auxiliary_predictions=aux)
    with criterion.ignoring(masks != IGNORE_INDEX):
        got = criterion(*predictions[0], mask_labels, class_labels, auxiliary_predictions=aux)
    assert set(got) == {"loss_cross_entropy", "loss_mask", "loss_dice"}
    for key, value in got.items():  # transformers: loss_mask, loss_mask_0, loss_mask_1, ...
        torch.testing.assert_close(value, sum(v for k, v in expected.items() if k.startswith(key)))


def test_criterion_ignores_mask_logits_in_ignored_areas_in_sampling_matching_and_loss():
    criterion = tiny_model("mask2former-swin").hf.criterion
    mask_logits, class_logits, mask_labels, class_labels, masks = criterion_inputs()

    def losses(logits, ignoring=True):
        context = criterion.ignoring(masks != IGNORE_INDEX) if ignoring else contextlib.nullcontext()
        with context:
            torch.manual_seed(0)
            return criterion(logits, class_logits, mask_labels, class_labels)

    torch.testing.assert_close(losses(perturb_ignored(mask_logits)), losses(mask_logits))
    # the same change moves transformers' loss, where ignored pixels are negatives of every mask
    changed = losses(perturb_ignored(mask_logits), ignoring=False)["loss_mask"].item()
    assert not math.isclose(changed, losses(mask_logits, ignoring=False)["loss_mask"].item(), rel_tol=1e-3)


# --- every model: training steps on label maps with ignored regions ------------------------------------

@contextlib.contextmanager
def score_maps(model):
    """The low-resolution score maps the forwards in the block compute their loss from (gradients retained)."""
    maps: list[torch.Tensor] = []
    if hasattr(model, "compute_logits"):  # per-pixel classifiers: main (and auxiliary) logits
        original = model.compute_logits

        def compute_logits(pixel_values):
            outs = original(pixel_values)
            for t in outs:
                if t is not None:
                    t.retain_grad()
                    maps.append(t)
            return outs

        model.compute_logits = compute_logits
        try:
            yield maps
        finally:
            del model.compute_logits
    else:  # Mask2Former: every decoder layer's mask logits
        def keep(module, args, output):
            output[0].retain_grad()
            maps.append(output[0])

        handle = model.hf.model.transformer_module.decoder.mask_predictor.register_forward_hook(keep)
        try:
            yield maps
        finally:
            handle.remove()


@pytest.mark.parametrize("name", ALL)
def test_training_step_gives_no_gradient_where_only_ignored_pixels_look(name):
    model = tiny_model(name).train()
    images, masks = half_ignored_batch()
    with score_maps(model) as maps:
        torch.manual_seed(0)
        loss = model(images, masks).loss
    assert torch.isfinite(loss)
    loss.backward()
    model.zero_grad(set_to_none=True)
    assert maps
    for scores in maps:
        width = scores.shape[-1]
        n = ignored_columns(width)
        assert n > 0, width
        assert torch.equal(scores.grad[..., :n], torch.zeros_like(scores.grad[..., :n])), (name, width)
        assert scores.grad[..., width // 2 + 1:].abs().sum() > 0, (name, width)


@pytest.mark.parametrize("name", MASK2FORMER)
def test_mask2former_loss_does_not_see_mask_logits_in_ignored_areas(name):
    model = tiny_model(name).eval()  # eval: no dropout; the seed fixes point sampling
    images, masks = half_ignored_batch()
    criterion = model.hf.criterion

    def perturb(module, args, kwargs):
        kwargs["masks_queries_logits"] = perturb_ignored(kwargs["masks_queries_logits"])
        for aux in kwargs["auxiliary_predictions"] or []:
            aux["masks_queries_logits"] = perturb_ignored(aux["masks_queries_logits"])
        return args, kwargs

    def loss(perturbed: bool) -> float:
        handle = criterion.register_forward_pre_hook(perturb, with_kwargs=True) if perturbed else None
        try:
            torch.manual_seed(0)
            with torch.no_grad():
                return model(images, masks).loss.item()
        finally:
            if handle is not None:
                handle.remove()

    assert loss(True) == pytest.approx(loss(False), rel=1e-6)
    # without the validity masks (transformers' behaviour) the same change moves the loss
    criterion.ignoring = lambda valid: contextlib.nullcontext()
    try:
        assert loss(True) != pytest.approx(loss(False), rel=1e-3)
    finally:
        del criterion.ignoring


@pytest.mark.parametrize("name", ALL)
def test_an_image_ignored_everywhere_gives_a_finite_loss(name):
    model = tiny_model(name).train()  # n=2: UperNet's pooling-pyramid BatchNorm cannot train on one image
    images, masks = half_ignored_batch()
    masks[0] = IGNORE_INDEX
    for labels in (masks, torch.full_like(masks, IGNORE_INDEX)):
        torch.manual_seed(0)
        loss = model(images, labels).loss
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad(set_to_none=True)


def test_sample_cycled_is_sample_point_on_the_copied_maps():
    """Rows that cycle through the images sample the same values as the per-row copies, past the edges too."""
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 4, 9, 7, generator=g)
    coords = torch.rand(6, 40, 2, generator=g) * 1.2 - 0.1  # some points past the border
    for padding in ("zeros", "border"):
        copied = sample_point(maps[torch.arange(6) % 3], coords, align_corners=False, padding_mode=padding)
        torch.testing.assert_close(sample_cycled(maps, coords, align_corners=False, padding_mode=padding), copied,
                                   rtol=0, atol=0)
