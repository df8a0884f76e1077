"""DiNAT backbones from transformers' own classes, with trashlib's neighbourhood attention inside.

transformers >= 4.54 (5.24 included) mislays the head axis in DiNAT's attention and needs natten's old
API, which current natten no longer has. We keep transformers' modules - so state_dict keys, and with
them public DiNAT checkpoints, stay exactly DinatModel's / DinatBackbone's - and only swap the class of
each `NeighborhoodAttention` for one whose forward uses `neighborhood_attention.na2d_qk/na2d_av`.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.models.mask2former import Mask2FormerSegmenter, mask2former_config
from trashlib.models.neighborhood_attention import na2d_av, na2d_qk
from trashlib.models.pretrained import from_pretrained, load_config
from trashlib.models.sizes import DINAT, MASK2FORMER_HEAD, size_config

STAGES = ["stage1", "stage2", "stage3", "stage4"]


def _modeling():
    from transformers.models.dinat import modeling_dinat

    return modeling_dinat


class PyTorchNeighborhoodAttention(_modeling().NeighborhoodAttention):
    """transformers' DiNAT attention module (same parameters), computed with trashlib's NA."""

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool | None = False) -> tuple[torch.Tensor]:
        """Multi-head neighbourhood self-attention.

        Shape:
            hidden_states: (B, H, W, C)
            returns: ((B, H, W, C),) plus (B, heads, H, W, k*k) probabilities when output_attentions
        """
        b, height, width, _ = hidden_states.shape
        heads, head_dim = self.num_attention_heads, self.attention_head_size

        def split(x):  # (B, H, W, C) -> (B, heads, H, W, D)
            return x.view(b, height, width, heads, head_dim).permute(0, 3, 1, 2, 4)

        query = split(self.query(hidden_states)) / math.sqrt(head_dim)
        key, value = split(self.key(hidden_states)), split(self.value(hidden_states))
        scores = na2d_qk(query, key, self.rpb, kernel_size=self.kernel_size, dilation=self.dilation)
        probs = self.dropout(scores.softmax(-1))
        context = na2d_av(probs, value, kernel_size=self.kernel_size, dilation=self.dilation)
        context = context.permute(0, 2, 3, 1, 4).reshape(b, height, width, heads * head_dim)
        return (context, probs) if output_attentions else (context,)


@contextmanager
def natten_check_disabled():
    """Let transformers build Dinat* classes without natten (its attention is replaced right after)."""
    modeling = _modeling()
    original = modeling.requires_backends
    modeling.requires_backends = lambda *args, **kwargs: None
    try:
        yield
    finally:
        modeling.requires_backends = original


def use_pytorch_attention(module: nn.Module) -> nn.Module:
    """Swap every transformers NeighborhoodAttention inside `module` for the PyTorch one (in place)."""
    original = _modeling().NeighborhoodAttention
    for sub in module.modules():
        if type(sub) is original:
            sub.__class__ = PyTorchNeighborhoodAttention
    return module


def dinat_config(size: str, **overrides):
    """DinatConfig of a size from `sizes.DINAT`, exposing all four stages."""
    from transformers import DinatConfig

    return DinatConfig(**{**size_config(DINAT, size, "DiNAT"), "out_features": STAGES, **overrides})


def build_dinat_backbone(config) -> nn.Module:
    """A random-init transformers DinatBackbone running trashlib's attention."""
    from transformers import DinatBackbone

    with natten_check_disabled():
        return use_pytorch_attention(DinatBackbone(config))


def load_dinat_backbone(pretrained: str, *, size: str) -> nn.Module:
    """A DinatBackbone with weights from a DiNAT checkpoint (e.g. shi-labs/dinat-large-11x11-in22k-in1k-384).

    The checkpoint's config defines the architecture; the size's dilations replace the checkpoint's
    (classification at 224) when the depths agree, since dilation has no parameters.
    """
    from transformers import DinatBackbone, DinatConfig

    config = load_config(DinatConfig, pretrained, out_features=STAGES)
    if list(config.depths) == DINAT[size]["depths"]:
        config.dilations = [list(d) for d in DINAT[size]["dilations"]]
    with natten_check_disabled():
        backbone = from_pretrained(DinatBackbone, pretrained, config=config)
    return use_pytorch_attention(backbone)


def build_mask2former_dinat(*, num_classes: int = NUM_CLASSES, size: str = "tiny", pretrained: str | None = None):
    """Mask2Former + DiNAT: `pretrained` is a DiNAT ImageNet checkpoint for the backbone; the head is random."""
    from transformers import Mask2FormerForUniversalSegmentation

    head = size_config(MASK2FORMER_HEAD, size, "Mask2Former")
    backbone = load_dinat_backbone(pretrained, size=size) if pretrained is not None else None
    backbone_config = backbone.config if backbone is not None else dinat_config(size)
    config = mask2former_config(backbone_config, head, num_classes=num_classes)
    with natten_check_disabled():
        hf = Mask2FormerForUniversalSegmentation(config)
    use_pytorch_attention(hf)
    if backbone is not None:
        hf.model.pixel_level_module.encoder.load_state_dict(backbone.state_dict())
    hf.config.ignore_value = IGNORE_INDEX
    return Mask2FormerSegmenter(hf, num_classes=num_classes)
