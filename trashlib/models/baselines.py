"""Per-pixel classifiers trained with cross-entropy: UperNet (Swin or ConvNeXt) and SegFormer.

The transformers models compute the features and logits; trashlib computes the loss itself so that the
optional per-class weights apply (UperNet: decode head + 0.4 x auxiliary FCN head, as in UperNet).
Logits are upsampled bilinearly to the input size for both the loss and the probabilities.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.models.base import SegmentationModel, SegOutput
from trashlib.models.mask2former import freeze_unused_swin_norm, swin_backbone_config
from trashlib.models.pretrained import label_kwargs, load_with_head
from trashlib.models.sizes import CONVNEXT, SEGFORMER, UPERNET_HEAD, size_config

STAGES = ["stage1", "stage2", "stage3", "stage4"]


def cross_entropy(logits: torch.Tensor, masks: torch.Tensor, *, weight: torch.Tensor | None = None,
                  ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross-entropy over non-ignored pixels; 0 (with a graph) when every pixel is ignored.

    Shape:
        logits: (N, C, H, W); masks: (N, H, W) long
    """
    if not (masks != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, masks, weight=weight, ignore_index=ignore_index)


class CrossEntropySegmenter(SegmentationModel):
    """Shared loss/probability logic; subclasses return (logits, auxiliary logits or None)."""

    aux_weight: float = 0.4

    def __init__(self, hf_model: nn.Module, *, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX):
        super().__init__(num_classes=num_classes, ignore_index=ignore_index)
        self.hf = hf_model
        self.register_buffer("class_weights", None, persistent=False)

    def compute_logits(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def set_class_weights(self, weights: torch.Tensor | None) -> None:
        """Per-class weights of the cross-entropy (None = unweighted)."""
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=torch.float32, device=self.pixel_mean.device).flatten()
            if weights.numel() != self.num_classes:
                raise ValueError(f"class weights must have {self.num_classes} entries, got {weights.numel()}")
        self.class_weights = weights

    def _upsampled(self, images: torch.Tensor):
        logits, aux = self.compute_logits(self.normalize(images))
        size = images.shape[-2:]
        up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False)  # noqa: E731
        return up(logits), (up(aux) if aux is not None else None)

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> SegOutput:
        logits, aux = self._upsampled(images)
        loss, extras = None, {}
        if masks is not None:
            kw = dict(weight=self.class_weights, ignore_index=self.ignore_index)
            loss = cross_entropy(logits, masks, **kw)
            if aux is not None:
                loss_aux = cross_entropy(aux, masks, **kw)
                extras["loss_aux"] = loss_aux.detach()
                loss = loss + self.aux_weight * loss_aux
        return SegOutput(loss=loss, logits=logits, extras=extras)

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        logits, _ = self.compute_logits(self.normalize(images))
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits.softmax(1)


class UperNetSegmenter(CrossEntropySegmenter):
    """transformers UperNetForSemanticSegmentation (any backbone) with an auxiliary FCN head."""

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.hf.backbone.parameters())

    def compute_logits(self, pixel_values):
        features = self.hf.backbone(pixel_values).feature_maps
        logits = self.hf.decode_head(features)
        use_aux = self.training and self.hf.auxiliary_head is not None
        return logits, (self.hf.auxiliary_head(features) if use_aux else None)


class SegformerSegmenter(CrossEntropySegmenter):
    """transformers SegformerForSemanticSegmentation (MiT encoder + all-MLP decoder, logits at 1/4)."""

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.hf.segformer.parameters())

    def compute_logits(self, pixel_values):
        return self.hf(pixel_values=pixel_values).logits, None


def _upernet(backbone_config, *, num_classes: int, size: str, pretrained: str | None) -> UperNetSegmenter:
    from transformers import UperNetConfig, UperNetForSemanticSegmentation

    head = size_config(UPERNET_HEAD, size, "UperNet")
    if pretrained is not None:
        hf = load_with_head(UperNetForSemanticSegmentation, pretrained, num_classes=num_classes)
    else:
        config = UperNetConfig(backbone_config=backbone_config(), loss_ignore_index=IGNORE_INDEX,
                               auxiliary_loss_weight=CrossEntropySegmenter.aux_weight,
                               **label_kwargs(num_classes), **head)
        hf = UperNetForSemanticSegmentation(config)
    freeze_unused_swin_norm(hf)
    return UperNetSegmenter(hf, num_classes=num_classes)


def build_upernet_swin(*, num_classes: int = NUM_CLASSES, size: str = "tiny", pretrained: str | None = None):
    """UperNet + Swin; `pretrained` e.g. openmmlab/upernet-swin-base (class head resized)."""
    return _upernet(lambda: swin_backbone_config(size), num_classes=num_classes, size=size, pretrained=pretrained)


def build_upernet_convnext(*, num_classes: int = NUM_CLASSES, size: str = "tiny", pretrained: str | None = None):
    """UperNet + ConvNeXt; `pretrained` e.g. openmmlab/upernet-convnext-base (class head resized)."""
    from transformers import ConvNextConfig

    config = size_config(CONVNEXT, size, "ConvNeXt")  # validates the size before any loading
    return _upernet(lambda: ConvNextConfig(**config, out_features=STAGES), num_classes=num_classes,
                    size=size, pretrained=pretrained)


def build_segformer(*, num_classes: int = NUM_CLASSES, size: str = "tiny", pretrained: str | None = None):
    """SegFormer b0/b2/b5 shapes; `pretrained` e.g. nvidia/mit-b2 (encoder) or a finetuned SegFormer."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    shape = size_config(SEGFORMER, size, "SegFormer")
    if pretrained is not None:
        hf = load_with_head(SegformerForSemanticSegmentation, pretrained, num_classes=num_classes)
    else:
        config = SegformerConfig(**shape, semantic_loss_ignore_index=IGNORE_INDEX, **label_kwargs(num_classes))
        hf = SegformerForSemanticSegmentation(config)
    return SegformerSegmenter(hf, num_classes=num_classes)
