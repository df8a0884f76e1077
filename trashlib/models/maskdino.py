"""MaskDINO (Li et al., CVPR 2023) for semantic segmentation: Swin, the Mask2Former pixel decoder, a DINO decoder.

The same as the paper's semantic-segmentation model (the official ADE20K config,
configs/ade20k/semantic-segmentation/maskdino_R50_bs16_160k_steplr.yaml, with a Swin backbone): the
pixel decoder is transformers' Mask2Former one (6 multi-scale deformable-attention encoder layers over the
1/8-1/32 features, feed-forward 1024, an FPN level at 1/4), whose shapes match MaskDINO's encoder there;
the decoder (maskdino_decoder.py) has 9 deformable layers of width 256 with feed-forward 2048, 100 queries,
denoising in the config's "seg" mode (noised labels and boxes of 100 queries in all, masks reconstructed),
boxes predicted, matched and supervised (the config keeps BOX_LOSS on and initialises no box from masks),
and the cross-entropy class loss with semantic inference softmax(class) x sigmoid(mask) summed over queries.
Loss weights: class 4, mask 5, Dice 5, box L1 5, GIoU 2, "no object" 0.1, for every round and the
denoising queries alike.

What differs:
- Query selection is on (the paper's method; `query_selection: False` in sizes.MASKDINO_HEAD gives the
  learnt queries and anchor boxes that the official ADE20K semantic config uses with TWO_STAGE: False).
  Tokens are ranked by their best real-class logit (the official code's max includes "no object"), and
  tokens whose proposal box reaches outside (0.01, 0.99) are never selected (officially, infinite boxes).
- The matcher's class cost is Mask2Former's -softmax probability, not the official focal-style cost, and its
  mask costs and losses, as in every trashlib Mask2Former, give ignored (255) pixels no weight. The
  segment's box is that of its non-ignored pixels.
- Decoder outputs are layer-normed once (the official code norms them twice with the same LayerNorm) and
  each round's box is the one its layer refines the reference to.
- No padding masks: trashlib's batches are never padded.
- The tiny (CPU) preset has 10 denoising queries instead of 100 (sizes.MASKDINO_HEAD says why).
- `pretrained` loads a Swin checkpoint into the backbone only: the official weights are detectron2 files
  with other parameter names, and the official model zoo has no Swin-L ADE20K semantic checkpoint.
Images are normalised with ImageNet statistics inside the model, as everywhere in trashlib.
"""
from __future__ import annotations

import torch
from torch import nn

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.models.base import SegmentationModel, SegOutput, with_no_object
from trashlib.models.mask2former import (
    freeze_unused_swin_norm,
    mask2former_config,
    masks_to_targets,
    semantic_probs,
    swin_backbone_config,
)
from trashlib.models.maskdino_decoder import MaskDINODecoder
from trashlib.models.maskdino_loss import MaskDINOLoss, masks_to_boxes
from trashlib.models.pretrained import from_pretrained, load_config
from trashlib.models.sizes import MASKDINO_HEAD, SWIN, size_config

#: MASKDINO_HEAD keys of the DINO decoder and its box losses; the others are Mask2FormerConfig's
DINO_KEYS = ("query_selection", "dn_num", "dn_noise_scale", "decoder_points", "box_weight", "giou_weight")
STAGES = ["stage1", "stage2", "stage3", "stage4"]


def pixel_level_module(config) -> nn.Module:
    """transformers' Mask2Former backbone + pixel decoder for `config`, initialised as Mask2Former initialises them."""
    from transformers.models.mask2former.modeling_mask2former import (
        Mask2FormerPixelLevelModule,
        Mask2FormerPreTrainedModel,
    )

    class Holder(Mask2FormerPreTrainedModel):  # post_init applies Mask2Former's weight initialisation
        def __init__(self, config):
            super().__init__(config)
            self.pixel_level_module = Mask2FormerPixelLevelModule(config)
            self.post_init()

    return Holder(config).pixel_level_module


class MaskDINOSegmenter(SegmentationModel):
    """Backbone + pixel decoder (transformers' Mask2Former modules) and a MaskDINO decoder, on label maps."""

    def __init__(self, config, *, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
                 query_selection: bool = True, dn_num: int = 100, dn_noise_scale: float = 0.4,
                 decoder_points: int = 4, box_weight: float = 5.0, giou_weight: float = 2.0):
        super().__init__(num_classes=num_classes, ignore_index=ignore_index)
        if config.num_labels != num_classes:
            raise ValueError(f"MaskDINO config has {config.num_labels} labels, expected {num_classes}")
        if config.feature_size != config.hidden_dim:
            raise ValueError(f"MaskDINO's decoder attends to the pixel decoder's features: hidden_dim "
                             f"({config.hidden_dim}) must equal feature_size ({config.feature_size})")
        self.config = config
        self.pixel_level_module = pixel_level_module(config)
        self.decoder = MaskDINODecoder(
            num_classes=num_classes, hidden_dim=config.hidden_dim, num_queries=config.num_queries,
            num_layers=config.decoder_layers - 1, heads=config.num_attention_heads, ffn_dim=config.dim_feedforward,
            levels=3, points=decoder_points, mask_dim=config.mask_feature_size, dropout=config.dropout,
            query_selection=query_selection, dn_num=dn_num, dn_noise_scale=dn_noise_scale)
        weights = {"loss_cross_entropy": config.class_weight, "loss_mask": config.mask_weight,
                   "loss_dice": config.dice_weight}
        self.criterion = MaskDINOLoss(config, weights, box_weight=box_weight, giou_weight=giou_weight)

    @property
    def backbone(self) -> nn.Module:
        """The transformers SwinBackbone."""
        return self.pixel_level_module.encoder

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def set_class_weights(self, weights: torch.Tensor | None) -> None:
        """Per-class weights of the classification cross-entropy; "no object" keeps its weight."""
        criterion = self.criterion
        criterion.empty_weight.copy_(with_no_object(weights, self.num_classes, no_object=criterion.eos_coef,
                                                    like=criterion.empty_weight))

    def _decode(self, images: torch.Tensor, *, every_round: bool = False, targets=None):
        features = self.backbone(self.normalize(images)).feature_maps
        pixels = self.pixel_level_module.decoder(features)
        # the pixel decoder lists its levels coarsest first; the decoder's proposals grow with the level
        levels = list(pixels.multi_scale_features)[::-1]
        return self.decoder(levels, pixels.mask_features, every_round=every_round, targets=targets)

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> SegOutput:
        """Loss (with masks; denoising queries in training mode only); log_probs only without masks.

        Shape:
            images: (N, 3, H, W) float in [0, 1]
            masks: (N, H, W) long label maps
        """
        if masks is None:
            rounds, _ = self._decode(images)
            extras = {"class_queries_logits": rounds.class_logits[-1], "masks_queries_logits": rounds.mask_logits[-1]}
            probs = semantic_probs(rounds.class_logits[-1], rounds.mask_logits[-1], images.shape[-2:])
            return SegOutput(log_probs=probs.log(), extras=extras)
        mask_labels, class_labels = masks_to_targets(masks, ignore_index=self.ignore_index)
        boxes = [masks_to_boxes(m.bool()) for m in mask_labels]
        targets = (class_labels, boxes) if self.training else None
        rounds, denoising = self._decode(images, every_round=True, targets=targets)
        losses = self.criterion(rounds, mask_labels, class_labels, boxes, denoising=denoising,
                                valid=(masks != self.ignore_index)[:, None].float())
        loss = sum(self.criterion.weight_dict[k] * v for k, v in losses.items())
        extras = {"class_queries_logits": rounds.class_logits[-1], "masks_queries_logits": rounds.mask_logits[-1],
                  **{k: v.detach() for k, v in losses.items()}}
        return SegOutput(loss=loss, extras=extras)

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        rounds, _ = self._decode(images)
        return semantic_probs(rounds.class_logits[-1], rounds.mask_logits[-1], images.shape[-2:])


def load_swin_backbone(pretrained: str, *, size: str) -> nn.Module:
    """A SwinBackbone with the weights of a Swin checkpoint (a local transformers folder or a hub id, e.g.
    microsoft/swin-large-patch4-window12-384-in22k); the size's stochastic depth replaces the checkpoint's."""
    from transformers import SwinBackbone, SwinConfig

    config = load_config(SwinConfig, pretrained, out_features=STAGES)
    config.drop_path_rate = SWIN[size]["drop_path_rate"]
    return from_pretrained(SwinBackbone, pretrained, config=config)


def build_maskdino_swin(*, num_classes: int = NUM_CLASSES, size: str = "tiny",
                        pretrained: str | None = None) -> MaskDINOSegmenter:
    """MaskDINO + Swin: random init of a size, or `pretrained` a Swin checkpoint for the backbone (the head is new).

    No MaskDINO checkpoint loads into transformers, so only the backbone can start pretrained.
    """
    head = size_config(MASKDINO_HEAD, size, "MaskDINO")
    dino = {k: head.pop(k) for k in DINO_KEYS if k in head}
    backbone = load_swin_backbone(pretrained, size=size) if pretrained is not None else None
    backbone_config = backbone.config if backbone is not None else swin_backbone_config(size)
    model = MaskDINOSegmenter(mask2former_config(backbone_config, head, num_classes=num_classes),
                              num_classes=num_classes, **dino)
    if backbone is not None:
        model.backbone.load_state_dict(backbone.state_dict())
    freeze_unused_swin_norm(model)
    return model
