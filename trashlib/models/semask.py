"""SeMask (Jain et al. 2021): Swin stages followed by a semantic layer, with a Mask2Former head.

After each Swin stage's blocks, a semantic layer projects the features to per-class semantic maps and
uses them as query/key (class-space similarity between tokens of a window) to mix value features
back into the tokens, scaled by a learnable `gamma` that starts at 0. Unlike the original, whose
residual starts from LayerNorm(x), the residual here is around the raw stage output, so at
initialisation the layer is exactly the identity and pretrained Swin weights keep their meaning.

During training a parameter-free semantic decoder upsamples and sums the per-stage semantic maps into
per-class logits at the input resolution; their cross-entropy (ignore 255) joins the Mask2Former loss
with weight 0.4. Inference skips the decoder (the maps are a by-product of the backbone).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.swin.modeling_swin import SwinStage

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.models.base import SegOutput
from trashlib.models.baselines import cross_entropy
from trashlib.models.mask2former import Mask2FormerSegmenter, build_mask2former_swin

SEMANTIC_LOSS_WEIGHT = 0.4


class SemanticLayer(nn.Module):
    """Window semantic attention: features -> (features + gamma * class-mixed features, class maps)."""

    def __init__(self, dim: int, num_classes: int, *, window_size: int = 7):
        super().__init__()
        self.window_size = window_size
        self.norm = nn.LayerNorm(dim)
        self.class_query = nn.Linear(dim, num_classes)  # its output is the stage's semantic map
        self.class_key = nn.Linear(dim, num_classes)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(0.1)
        self.gamma = nn.Parameter(torch.zeros(1))
        for layer in (self.class_query, self.class_key, self.value):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, hidden_states: torch.Tensor, input_dimensions: tuple[int, int]):
        """Semantic attention within windows; padded tokens are never attended to.

        Shape:
            hidden_states: (B, H*W, C)
            returns: (B, H*W, C) features, (B, K, H, W) semantic map
        """
        b, _, dim = hidden_states.shape
        height, width = input_dimensions
        w = self.window_size
        x = self.norm(hidden_states).view(b, height, width, dim)
        pad_h, pad_w = (-height) % w, (-width) % w
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = height + pad_h, width + pad_w
        windows = x.view(b, hp // w, w, wp // w, w, dim).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, dim)
        seg = self.class_query(windows)  # (nW*B, w*w, K)
        scores = seg @ self.class_key(windows).transpose(-1, -2)
        valid = torch.zeros(hp, wp, dtype=torch.bool, device=x.device)
        valid[:height, :width] = True
        valid = valid.view(hp // w, w, wp // w, w).permute(0, 2, 1, 3).reshape(1, -1, 1, w * w)
        scores = scores.view(b, -1, w * w, w * w).masked_fill(~valid, float("-inf")).view_as(scores)
        mixed = self.dropout(self.proj(scores.softmax(-1) @ self.value(windows)))

        def unwindow(t):  # (nW*B, w*w, c) -> (B, H, W, c) without padding
            c = t.shape[-1]
            t = t.view(b, hp // w, wp // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
            return t[:, :height, :width]

        out = hidden_states + self.gamma * unwindow(mixed).reshape(b, height * width, dim)
        return out, unwindow(seg).permute(0, 3, 1, 2)


class SeMaskSwinStage(SwinStage):
    """A Swin stage whose blocks are followed by a `semantic_layer` (before downsampling)."""

    def forward(self, hidden_states, input_dimensions, always_partition=False,
                output_hidden_states_before_downsampling=False, **kwargs):
        height, width = input_dimensions
        last_attn_weights = None
        for layer_module in self.blocks:
            hidden_states, last_attn_weights = layer_module(
                hidden_states, input_dimensions, always_partition=always_partition, **kwargs)
        hidden_states, self.semantic_map = self.semantic_layer(hidden_states, input_dimensions)
        before = hidden_states
        if self.downsample is not None:
            hidden_states = self.downsample(before, input_dimensions)
        reshaped = self.get_reshaped_hidden_states(hidden_states, before, height, width,
                                                   output_hidden_states_before_downsampling)
        return hidden_states, reshaped, last_attn_weights


def add_semantic_layers(swin_backbone: nn.Module, num_classes: int) -> list[nn.Module]:
    """Turn each stage of a transformers SwinBackbone into a SeMask stage (in place); returns the stages."""
    window = swin_backbone.config.window_size
    stages = list(swin_backbone.swin.encoder.layers)
    for stage in stages:
        dim = stage.blocks[0].layernorm_before.normalized_shape[0]
        stage.__class__ = SeMaskSwinStage
        param = next(stage.parameters())
        stage.semantic_layer = SemanticLayer(dim, num_classes, window_size=window).to(param.device, param.dtype)
        stage.semantic_map = None
    return stages


class SeMaskSegmenter(Mask2FormerSegmenter):
    """Mask2Former on a SeMask-Swin backbone; the semantic decoder's loss is added in training. It grows from
    Mask2Former-Swin: a branch of a Swin trunk takes every weight but the semantic layers', which start at
    the identity (`grown_parts`)."""

    grown_parts = (".semantic_layer.",)

    def __init__(self, hf_model: nn.Module, *, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
                 semantic_loss_weight: float = SEMANTIC_LOSS_WEIGHT):
        super().__init__(hf_model, num_classes=num_classes, ignore_index=ignore_index)
        self.stages = add_semantic_layers(self.backbone, num_classes)
        self.semantic_loss_weight = semantic_loss_weight
        self.register_buffer("class_weights", None, persistent=False)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Pretrained Swin parameters only: the new semantic layers train at the head's rate."""
        return [p for n, p in self.backbone.named_parameters() if ".semantic_layer." not in n]

    def set_class_weights(self, weights: torch.Tensor | None) -> None:
        super().set_class_weights(weights)
        self.class_weights = None if weights is None else torch.as_tensor(
            weights, dtype=torch.float32, device=self.pixel_mean.device).flatten()

    def decode_semantic(self, maps: list[torch.Tensor], size) -> torch.Tensor:
        """Semantic decoder: per-stage maps upsampled to the first stage, summed, upsampled to `size`.

        Shape:
            maps: per stage (N, K, H_i, W_i), finest first
            returns: (N, K, *size) logits
        """
        out = maps[0]
        for m in maps[1:]:
            out = out + F.interpolate(m, size=out.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> SegOutput:
        out = super().forward(images, masks)
        if masks is not None:
            semantic = self.decode_semantic([s.semantic_map for s in self.stages], images.shape[-2:])
            loss_semantic = cross_entropy(semantic, masks, weight=self.class_weights, ignore_index=self.ignore_index)
            out.extras["loss_mask2former"] = out.loss.detach()
            out.extras["loss_semantic"] = loss_semantic.detach()
            out.loss = out.loss + self.semantic_loss_weight * loss_semantic
        self._release_maps()
        return out

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        try:
            return super().predict_proba(images)
        finally:
            self._release_maps()

    def _release_maps(self) -> None:
        for stage in self.stages:
            stage.semantic_map = None  # do not keep activations alive between calls


def build_semask_swin(*, num_classes: int = NUM_CLASSES, size: str = "tiny", pretrained: str | None = None):
    """SeMask-Swin + Mask2Former; `pretrained` is a Mask2Former-Swin checkpoint (the semantic layers start new)."""
    base = build_mask2former_swin(num_classes=num_classes, size=size, pretrained=pretrained)
    return SeMaskSegmenter(base.hf, num_classes=num_classes)
