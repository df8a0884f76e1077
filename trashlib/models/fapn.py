"""SeMask-FaPN: SeMask-Swin with a feature-aligned pixel decoder (FaPN, Huang et al. ICCV 2021) under Mask2Former.

The SeMask authors' MSFaPN-Mask2Former (Picsart-AI-Research/SeMask-Segmentation, SeMask-FAPN/, pixel
decoder `MSDeformAttnPixelFANDecoder`, 224 M parameters with SeMask Swin-L) keeps Mask2Former's pixel
decoder - a multi-scale deformable-attention encoder over the 1/8, 1/16 and 1/32 features, which also
go to the transformer decoder's masked attention - and puts FaPN's feature alignment into the one FPN
fusion it has, the 1/4 level that makes the per-pixel mask features. So does this model: transformers'
Mask2FormerPixelDecoder with its own modules (state-dict names included), the backbone, the semantic
layers and loss (semask.py) and the Mask2Former loss (mask2former_loss.py) are the project's.

At the 1/4 level, as in the FaPN paper: the feature selection module (FSM) re-weights the backbone's
lateral channels by x + x * sigmoid(conv1x1(global average of x)) before the lateral 1x1 projection; the
feature alignment module (FAM) learns DCNv2 offsets and masks (8 offset groups, 3x3, deform_conv.py)
from the concatenated lateral feature and twice the bilinearly upsampled top-down feature, aligns
the upsampled feature with them, and adds ReLU(aligned) to the lateral one; the pixel decoder's 3x3
output conv and 1x1 mask projection follow. Differences: the SeMask code has no FSM ("Without FSM") and
aligns the sum lateral + upsampled rather than the upsampled map, where this follows the paper; the
FSM's projection is the pixel decoder's own lateral conv (1x1 + GroupNorm), so a trunk's weights fit it;
the deformable convolution is pure PyTorch (no compiled DCNv2, no torchvision here), and most of the
model's extra training-step time on a CPU (notebook 03's cost table; docs/experiments.md).

It grows from a SeMask-Swin (or Mask2Former-Swin) trunk: every trunk weight carries over, and the FSM
and FAM (`grown_parts`) start fresh, as do the semantic layers from a Mask2Former-Swin trunk.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoder,
    Mask2FormerPixelDecoderOutput,
)

from trashlib.classes import NUM_CLASSES
from trashlib.models.deform_conv import ModulatedDeformConv
from trashlib.models.mask2former import build_mask2former_swin
from trashlib.models.semask import SeMaskSegmenter

DEFORMABLE_GROUPS = 8  # FaPN's and the SeMask authors' DCNv2 offset groups


class FeatureSelection(nn.Module):
    """FaPN's FSM without its projection: channels re-weighted by their global context, x * (1 + attention)."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        nn.init.xavier_uniform_(self.attention.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x (N, C, H, W); returns (N, C, H, W)."""
        return x + x * self.attention(x.mean((2, 3), keepdim=True)).sigmoid()


class FeatureAlign(nn.Module):
    """FaPN's FAM: the upsampled top-down feature deformed towards the lateral one, ReLU, plus the lateral."""

    def __init__(self, channels: int, *, groups: int = DEFORMABLE_GROUPS):
        super().__init__()
        self.offset = nn.Sequential(nn.Conv2d(2 * channels, channels, kernel_size=1, bias=False),
                                    nn.GroupNorm(32, channels))
        nn.init.xavier_uniform_(self.offset[0].weight)
        self.align = ModulatedDeformConv(channels, channels, 3, groups=groups)

    def forward(self, lateral: torch.Tensor, top_down: torch.Tensor) -> torch.Tensor:
        """Shape: lateral (N, C, H, W); top_down (N, C, h, w), upsampled here; returns (N, C, H, W)."""
        up = F.interpolate(top_down, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        guide = self.offset(torch.cat([lateral, 2 * up], dim=1))
        return F.relu(self.align(up, guide)) + lateral


class FaPNPixelDecoder(Mask2FormerPixelDecoder):
    """transformers' Mask2Former pixel decoder whose 1/4-level FPN fusion is FaPN's (FSM + FAM).

    Its outputs are the parent's: the deformable encoder's 1/32, 1/16, 1/8 maps as `multi_scale_features`
    and the 1/4 `mask_features`; the parent's modules and their names are all kept.
    """

    def __init__(self, config, feature_channels, *, groups: int = DEFORMABLE_GROUPS):
        super().__init__(config, feature_channels)
        levels = range(self.num_fpn_levels)  # finest first, as feature_channels
        self.feature_selection = nn.ModuleList(FeatureSelection(feature_channels[i]) for i in levels)
        self.feature_align = nn.ModuleList(FeatureAlign(config.feature_size, groups=groups) for _ in levels)

    @classmethod
    def replacing(cls, decoder: Mask2FormerPixelDecoder) -> FaPNPixelDecoder:
        """A FaPN decoder holding `decoder`'s weights (random init or pretrained); the FSM and FAM are new."""
        new = cls(decoder.config, list(decoder.feature_channels))  # on the default device, as `decoder` was made
        missing, unexpected = new.load_state_dict(decoder.state_dict(), strict=False)
        if unexpected or any(not k.startswith(("feature_selection.", "feature_align.")) for k in missing):
            raise ValueError(f"pixel decoder weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return new

    def encode(self, features) -> list[torch.Tensor]:
        """The multi-scale deformable-attention encoder over the coarsest three maps, coarsest first.

        Shape:
            features: the backbone's maps, finest first, (N, C_i, H_i, W_i)
            returns: three (N, feature_size, H_i, W_i), 1/32 first
        """
        maps = list(features[::-1][: self.num_feature_levels])
        embeds = [proj(x) for proj, x in zip(self.input_projections, maps)]
        shapes = [tuple(e.shape[-2:]) for e in embeds]
        sizes = [h * w for h, w in shapes]
        flat = torch.cat([e.flatten(2).transpose(1, 2) for e in embeds], 1)
        positions = torch.cat([self.position_embedding(x.shape, x.device, x.dtype).flatten(2).transpose(1, 2)
                               + self.level_embed[i].view(1, 1, -1) for i, x in enumerate(maps)], 1)
        starts = torch.tensor([0, *sizes[:-1]], device=flat.device).cumsum(0)
        padding = torch.zeros(flat.shape[:2], dtype=torch.bool, device=flat.device)  # no padded pixels
        valid_ratios = flat.new_ones(len(flat), len(maps), 2)
        hidden = self.encoder(inputs_embeds=flat, attention_mask=padding, position_embeddings=positions,
                              spatial_shapes_list=shapes, level_start_index=starts,
                              valid_ratios=valid_ratios).last_hidden_state
        return [z.transpose(1, 2).reshape(len(flat), -1, h, w) for z, (h, w) in zip(hidden.split(sizes, 1), shapes)]

    def forward(self, features, encoder_outputs=None, output_attentions=None, output_hidden_states=None,
                return_dict=None) -> Mask2FormerPixelDecoderOutput:
        if encoder_outputs is not None or output_attentions:
            raise NotImplementedError("FaPNPixelDecoder takes no precomputed encoder outputs nor returns attentions")
        outputs = self.encode(features)
        finest_first = range(self.num_fpn_levels)
        for idx, level in enumerate(reversed(finest_first)):  # coarse to fine, as the parent's lists are ordered
            lateral = self.lateral_convolutions[idx](self.feature_selection[level](features[level]))
            outputs.append(self.output_convolutions[idx](self.feature_align[level](lateral, outputs[-1])))
        return Mask2FormerPixelDecoderOutput(mask_features=self.mask_projection(outputs[-1]),
                                             multi_scale_features=tuple(outputs[: self.num_feature_levels]))


class SeMaskFaPNSegmenter(SeMaskSegmenter):
    """SeMask-Swin + FaPN pixel decoder + Mask2Former; trains with the Mask2Former and the semantic loss."""

    grown_parts = (".semantic_layer.", "pixel_level_module.decoder.feature_selection.",
                   "pixel_level_module.decoder.feature_align.")


def build_semask_fapn(*, num_classes: int = NUM_CLASSES, size: str = "tiny", pretrained: str | None = None):
    """SeMask-FaPN: `pretrained` is a Mask2Former-Swin checkpoint; semantic layers, FSM and FAM start new."""
    base = build_mask2former_swin(num_classes=num_classes, size=size, pretrained=pretrained)
    pixel_level = base.hf.model.pixel_level_module
    pixel_level.decoder = FaPNPixelDecoder.replacing(pixel_level.decoder)
    return SeMaskFaPNSegmenter(base.hf, num_classes=num_classes)
