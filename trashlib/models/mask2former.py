"""Mask2Former (transformers) behind the SegmentationModel interface, with any backbone config.

Training targets: one binary mask per class present in the label map (background 0 is a real class).
Ignore pixels (255) are in no binary mask and, through the validity mask that `Mask2FormerSegmenter`
hands to its criterion for each forward, count in no mask loss: every builder's model trains with
`mask2former_loss.IgnoreAwareMask2FormerLoss` (transformers' loss with point weights 0 where ignored, in
the matching too; the rule is in that module). The class cross-entropy is unchanged, so an image that
is ignored everywhere has no targets and trains its queries towards "no object".

Probabilities: softmax(class logits) without the "no object" column, combined with sigmoid(mask
logits) upsampled bilinearly from 1/4 to the input resolution, summed over queries and normalised
over classes - not transformers' post-processing, which works at a fixed 384x384 and returns scores
that are not probabilities.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.models.base import SegmentationModel, SegOutput, with_no_object
from trashlib.models.mask2former_loss import IgnoreAwareMask2FormerLoss
from trashlib.models.pretrained import label_kwargs, load_with_head
from trashlib.models.sizes import MASK2FORMER_HEAD, SWIN, size_config


def masks_to_targets(masks: torch.Tensor, *, ignore_index: int = IGNORE_INDEX):
    """Label maps -> per-image (binary masks of the classes present, their class ids); ignored pixels are 0.

    Shape:
        masks: (N, H, W) long
        returns: list of (n_i, H, W) float, list of (n_i,) long
    """
    mask_labels, class_labels = [], []
    for mask in masks:
        classes = torch.unique(mask)
        classes = classes[classes != ignore_index]
        mask_labels.append((mask[None] == classes[:, None, None]).float())
        class_labels.append(classes.long())
    return mask_labels, class_labels


def semantic_probs(class_logits: torch.Tensor, mask_logits: torch.Tensor, size=None) -> torch.Tensor:
    """Per-class probabilities from query outputs, normalised over classes.

    Shape:
        class_logits: (N, Q, C+1), the last column "no object"
        mask_logits: (N, Q, h, w)
        size: output (H, W); None keeps (h, w)
        returns: (N, C, H, W), sums to 1 over C
    """
    class_logits, mask_logits = class_logits.float(), mask_logits.float()  # fp32 even under autocast
    cls = class_logits.softmax(-1)[..., :-1]
    if size is not None and tuple(size) != tuple(mask_logits.shape[-2:]):
        mask_logits = F.interpolate(mask_logits, size=tuple(size), mode="bilinear", align_corners=False)
    seg = torch.einsum("nqc,nqhw->nchw", cls, mask_logits.sigmoid())
    seg = seg.clamp_min(1e-12)  # keeps the normalisation defined where every query is ~0
    return seg / seg.sum(1, keepdim=True)


def mask2former_config(backbone_config, head: dict, *, num_classes: int):
    """A Mask2FormerConfig for `backbone_config` with head overrides and trashlib's labels."""
    from transformers import Mask2FormerConfig
    from transformers.utils import logging

    # transformers warns (once, in red in a notebook) that a backbone outside its list, DiNAT here, "may not be
    # compatible with Mask2Former"; trashlib wires DiNAT's four stages on purpose, and tests them
    log = logging.get_logger("transformers.models.mask2former.configuration_mask2former")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return Mask2FormerConfig(backbone_config=backbone_config, ignore_value=IGNORE_INDEX,
                                 **label_kwargs(num_classes), **head)
    finally:
        log.setLevel(level)


class Mask2FormerSegmenter(SegmentationModel):
    """A transformers Mask2FormerForUniversalSegmentation trained on semantic label maps.

    Its criterion is replaced by the ignore-aware one (class weights kept).
    """

    def __init__(self, hf_model: nn.Module, *, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX):
        super().__init__(num_classes=num_classes, ignore_index=ignore_index)
        if hf_model.config.num_labels != num_classes:
            raise ValueError(f"Mask2Former head has {hf_model.config.num_labels} labels, expected {num_classes}")
        if not isinstance(hf_model.criterion, IgnoreAwareMask2FormerLoss):
            hf_model.criterion = IgnoreAwareMask2FormerLoss.replacing(hf_model.criterion, hf_model.config)
        freeze_unread_levels(hf_model)
        self.hf = hf_model

    @property
    def backbone(self) -> nn.Module:
        """The backbone (transformers *Backbone) inside the pixel-level module."""
        return self.hf.model.pixel_level_module.encoder

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def set_class_weights(self, weights: torch.Tensor | None) -> None:
        """Per-class weights of the classification cross-entropy; "no object" keeps its weight."""
        criterion = self.hf.criterion
        criterion.empty_weight.copy_(with_no_object(weights, self.num_classes, no_object=criterion.eos_coef,
                                                    like=criterion.empty_weight))

    def _run(self, images: torch.Tensor, masks: torch.Tensor | None):
        pixel_values = self.normalize(images)
        if masks is None:
            return self.hf(pixel_values=pixel_values)
        mask_labels, class_labels = masks_to_targets(masks, ignore_index=self.ignore_index)
        with self.hf.criterion.ignoring(masks != self.ignore_index):
            return self.hf(pixel_values=pixel_values, mask_labels=mask_labels, class_labels=class_labels)

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> SegOutput:
        """Loss (with masks); always the raw query outputs in extras; log_probs only without masks.

        Mask2Former has no per-pixel logits: `log_probs` (log of `semantic_probs` at the input
        resolution) fills that role, and is computed only when no masks are given, so training steps
        do not pay for full-resolution query masks; `logits` stays None.

        Shape:
            images: (N, 3, H, W) float in [0, 1]
            masks: (N, H, W) long label maps
        """
        out = self._run(images, masks)
        extras = {"class_queries_logits": out.class_queries_logits,
                  "masks_queries_logits": out.masks_queries_logits}
        log_probs = None
        if masks is None:
            log_probs = semantic_probs(out.class_queries_logits, out.masks_queries_logits, images.shape[-2:]).log()
        return SegOutput(loss=out.loss, log_probs=log_probs, extras=extras)

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        out = self.hf(pixel_values=self.normalize(images))
        return semantic_probs(out.class_queries_logits, out.masks_queries_logits, images.shape[-2:])


def swin_backbone_config(size: str):
    """SwinConfig of a size from `sizes.SWIN`, exposing all four stages."""
    from transformers import SwinConfig

    return SwinConfig(**size_config(SWIN, size, "Swin"), out_features=["stage1", "stage2", "stage3", "stage4"])


def freeze_unread_levels(hf_model: nn.Module) -> None:
    """Freeze the input projection of each pixel-decoder level that no masked-attention layer reads.

    The decoder's layers attend to the three levels in turn (layer i to level i % 3), so one of fewer than
    three layers (tiny's two) never reads the last level, whose projection (a 1x1 convolution where
    feature_size differs from hidden_dim) is computed and unused: a trainable parameter without gradients,
    which DistributedDataParallel rejects. Training is the same either way: AdamW skips a parameter without
    a gradient.
    """
    module = getattr(getattr(hf_model, "model", None), "transformer_module", None)
    if module is None or not hasattr(module, "input_projections"):
        return
    read = {i % module.num_feature_levels for i in range(len(module.decoder.layers))}
    for level, projection in enumerate(module.input_projections):
        if level not in read:
            projection.requires_grad_(False)


def freeze_unused_swin_norm(model: nn.Module) -> None:
    """Freeze the final LayerNorm that every transformers SwinBackbone carries but never uses.

    It would otherwise be a trainable parameter without gradients, which DistributedDataParallel
    rejects unless find_unused_parameters=True.
    """
    for name, module in model.named_modules():
        if name.endswith("swin.layernorm") and isinstance(module, nn.LayerNorm):
            module.requires_grad_(False)


def build_mask2former_swin(*, num_classes: int = NUM_CLASSES, size: str = "tiny",
                           pretrained: str | None = None) -> Mask2FormerSegmenter:
    """Mask2Former + Swin: random init of a size, or a whole Mask2Former checkpoint with a new class head."""
    from transformers import Mask2FormerForUniversalSegmentation

    head = size_config(MASK2FORMER_HEAD, size, "Mask2Former")
    if pretrained is not None:
        hf = load_with_head(Mask2FormerForUniversalSegmentation, pretrained, num_classes=num_classes)
        hf.config.ignore_value = IGNORE_INDEX
    else:
        config = mask2former_config(swin_backbone_config(size), head, num_classes=num_classes)
        hf = Mask2FormerForUniversalSegmentation(config)
    freeze_unused_swin_norm(hf)
    return Mask2FormerSegmenter(hf, num_classes=num_classes)
