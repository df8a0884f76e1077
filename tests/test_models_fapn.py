"""SeMask-FaPN: the deformable convolution, FaPN's modules by hand, transformers' pixel decoder kept, growth from
a SeMask-Swin trunk, a checkpoint, and the published sizes (the shared model tests cover the interface)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_model

from trashlib.classes import NUM_CLASSES
from trashlib.models import build_model
from trashlib.models.deform_conv import deform_conv2d
from trashlib.models.fapn import FeatureAlign, FeatureSelection


def reference_deform_conv(x, offset, weight, bias, *, stride, padding, dilation, mask):
    """DCNv2 by its definition, one output value at a time (float64): bilinear reads, 0 outside the map."""
    n, c, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    h_out, w_out = offset.shape[-2:]
    taps = kh * kw
    groups = offset.shape[1] // (2 * taps)

    def read(image, y, xx):
        y0, x0 = math.floor(y), math.floor(xx)
        value = 0.0
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            for xc, wx in ((x0, 1 - (xx - x0)), (x0 + 1, xx - x0)):
                if 0 <= yy < h and 0 <= xc < w:
                    value += wy * wx * float(image[yy, xc])
        return value

    out = bias.double().view(1, -1, 1, 1).repeat(n, 1, h_out, w_out)
    for b in range(n):
        for i in range(h_out):
            for j in range(w_out):
                for ch in range(c):
                    g = ch // (c // groups)
                    for t in range(taps):
                        ky, kx = divmod(t, kw)
                        dy, dx = offset[b, 2 * (g * taps + t), i, j], offset[b, 2 * (g * taps + t) + 1, i, j]
                        v = read(x[b, ch], i * stride - padding + ky * dilation + float(dy),
                                 j * stride - padding + kx * dilation + float(dx))
                        out[b, :, i, j] += float(mask[b, g * taps + t, i, j]) * v * weight[:, ch, ky, kx].double()
    return out


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 2), (2, 1, 1, 1), (1, 2, 2, 4)])
def test_deform_conv_matches_its_definition(stride, padding, dilation, groups):
    g = torch.Generator().manual_seed(stride + 10 * dilation)
    x, weight, bias = torch.randn(2, 4, 5, 6, generator=g), torch.randn(3, 4, 3, 3, generator=g), torch.randn(3, generator=g)
    h_out = (5 + 2 * padding - 2 * dilation - 1) // stride + 1
    w_out = (6 + 2 * padding - 2 * dilation - 1) // stride + 1
    offset = 2 * torch.randn(2, 2 * groups * 9, h_out, w_out, generator=g)  # many points outside the map
    mask = torch.rand(2, groups * 9, h_out, w_out, generator=g)
    ours = deform_conv2d(x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask)
    expected = reference_deform_conv(x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation,
                                     mask=mask)
    torch.testing.assert_close(ours.double(), expected, atol=1e-4, rtol=1e-5)
    # zero offsets and no mask: a plain convolution
    plain = deform_conv2d(x, torch.zeros_like(offset), weight, bias, stride=stride, padding=padding, dilation=dilation)
    torch.testing.assert_close(plain, F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation),
                               atol=1e-5, rtol=1e-5)


def test_deform_conv_gradients():
    g = torch.Generator().manual_seed(3)
    inputs = (torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64), 0.7 * torch.randn(1, 18, 4, 4, generator=g, dtype=torch.float64),
              torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64), torch.rand(1, 9, 4, 4, generator=g, dtype=torch.float64))
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(lambda x, off, w, m: deform_conv2d(x, off, w, padding=1, mask=m), inputs)


def test_feature_selection_and_alignment_by_hand():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    fsm = FeatureSelection(8)
    attention = torch.sigmoid(x.mean((2, 3)) @ fsm.attention.weight[:, :, 0, 0].T)[:, :, None, None]
    torch.testing.assert_close(fsm(x), x * (1 + attention))

    fam = FeatureAlign(32, groups=4)
    lateral, top_down = torch.randn(2, 32, 6, 6), torch.randn(2, 32, 3, 3)
    up = F.interpolate(top_down, size=(6, 6), mode="bilinear", align_corners=False)
    # at initialisation the offsets are 0 and every mask sigmoid(0) = 1/2: half a plain 3x3 convolution's taps
    aligned = F.conv2d(up, fam.align.weight / 2, fam.align.bias, padding=1)
    torch.testing.assert_close(fam(lateral, top_down), F.relu(aligned) + lateral, atol=1e-5, rtol=1e-5)
    # the offsets are learnt from the lateral feature and twice the upsampled one
    torch.nn.init.normal_(fam.align.offset_mask.weight, std=0.1)
    seen = {}
    fam.offset.register_forward_hook(lambda module, args, out: seen.update(input=args[0]))
    fam(lateral, top_down)
    torch.testing.assert_close(seen["input"], torch.cat([lateral, 2 * up], 1))


def test_pixel_decoder_is_transformers_one_but_for_the_fapn_fusion():
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerPixelDecoder

    decoder = tiny_model("semask-fapn").hf.model.pixel_level_module.decoder
    plain = Mask2FormerPixelDecoder(decoder.config, decoder.feature_channels)
    missing, unexpected = plain.load_state_dict(decoder.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith(("feature_selection.", "feature_align.")) for k in unexpected)
    g = torch.Generator().manual_seed(0)
    features = [torch.randn(2, c, 32 // 2 ** i, 32 // 2 ** i, generator=g) for i, c in enumerate(decoder.feature_channels)]
    with torch.no_grad():
        ours, theirs = decoder(features), plain(features)
        for a, b in zip(ours.multi_scale_features, theirs.multi_scale_features, strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)  # 1/32, 1/16, 1/8 for the masked attention
        assert ours.mask_features.shape == theirs.mask_features.shape == (2, decoder.config.mask_feature_size, 32, 32)
        # with FSM as the identity and FAM as FPN's sum, the mask features are transformers' too
        selection, align = decoder.feature_selection[0], decoder.feature_align[0]
        try:
            decoder.feature_selection[0], decoder.feature_align[0] = torch.nn.Identity(), _UpsampledSum()
            torch.testing.assert_close(decoder(features).mask_features, theirs.mask_features, atol=0, rtol=0)
        finally:
            decoder.feature_selection[0], decoder.feature_align[0] = selection, align


class _UpsampledSum(torch.nn.Module):
    def forward(self, lateral, top_down):
        return lateral + F.interpolate(top_down, size=lateral.shape[-2:], mode="bilinear", align_corners=False)


@pytest.mark.integration
def test_grows_from_a_semask_swin_trunk_with_fresh_fapn_modules():
    from trashlib.training.loop import _load_trunk

    trunk = tiny_model("semask-swin").state_dict()
    torch.manual_seed(1)
    model = build_model("semask-fapn")
    grown = _load_trunk(model, SimpleNamespace(weights=lambda which: trunk, path="trunk"), SimpleNamespace())
    names = {id(p): n for n, p in model.named_parameters()}
    assert grown and all(".feature_selection." in names[i] or ".feature_align." in names[i] for i in grown)
    assert {n for n in model.state_dict() if n not in trunk} == {names[i] for i in grown}
    for key, value in trunk.items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=0, rtol=0)
    # the trunk's parameters keep their order among the model's (the AdamW moments are matched by position)
    trunk_names = [n for n, _ in tiny_model("semask-swin").named_parameters()]
    assert [n for n, p in model.named_parameters() if id(p) not in grown] == trunk_names


@pytest.mark.integration
def test_loads_a_mask2former_swin_checkpoint(tmp_path):
    from transformers import Mask2FormerForUniversalSegmentation

    from trashlib.models.mask2former import mask2former_config, swin_backbone_config
    from trashlib.models.sizes import MASK2FORMER_HEAD

    torch.manual_seed(1)
    saved = Mask2FormerForUniversalSegmentation(
        mask2former_config(swin_backbone_config("tiny"), MASK2FORMER_HEAD["tiny"], num_classes=150))
    saved.save_pretrained(tmp_path)
    model = build_model("semask-fapn", pretrained=tmp_path)
    assert model.hf.class_predictor.out_features == NUM_CLASSES + 1
    loaded = model.hf.model.pixel_level_module.state_dict()
    for key, value in saved.model.pixel_level_module.state_dict().items():  # backbone and pixel decoder
        torch.testing.assert_close(loaded[key], value, atol=0, rtol=0)


# Published: SeMask-L Mask2Former MSFaPN, 224M parameters (ADE20K, 150 classes; Picsart-AI-Research/SeMask-Segmentation,
# README.md and SeMask-FAPN/README.md). No SeMask(-FaPN)-B is published: base is held to Mask2Former Swin-B's 107M
# (Cheng et al. 2022, ADE20K semantic table), which the semantic layers and FaPN enlarge by about 3.7%.
@pytest.mark.parametrize("size,num_classes,published", [("large", 150, 224e6), ("large", NUM_CLASSES, 224e6),
                                                         ("base", 150, 107e6)])
def test_parameter_count_matches_the_published_model(size, num_classes, published):
    with torch.device("meta"):
        model = build_model("semask-fapn", size=size, num_classes=num_classes)
    assert abs(model.num_parameters() / published - 1) < 0.05
