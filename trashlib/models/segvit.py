"""SegViT (Zhang et al., NeurIPS 2022): a plain ViT backbone under the Attention-to-Mask decoder (atm.py).

As in the official code (github.com/zbwxp/SegVit, configs/segvit/*.py and decode_heads/atm_head.py): the
ViT runs without its class token (the token and its position embedding are dropped before the first
layer; the token is frozen), without a final LayerNorm, with stochastic depth rising linearly over the
layers, and position embeddings resized bicubically to the working resolution. The raw outputs of three
layers feed the ATM decoder's stages, deepest first, at half the ViT's width with its number of heads;
inputs are normalised with mean and std 0.5 (the JAX-trained ViTs). The backbone is transformers'
ViTModel, so `pretrained` takes a transformers ViT checkpoint (a folder or a hub id such as
google/vit-large-patch16-384); the ATM decoder always starts from random init (no SegViT checkpoint
exists in transformers' format). Differences: the official ViT-L weights are the AugReg ("jax") ones
converted for mmsegmentation, which transformers cannot read; ignored pixels count in no mask loss (see
atm.py); inputs are padded to a multiple of the patch size, where the official code slides a fixed crop.

Probabilities: softmax of the last stage's class logits without "no object" times the sigmoid of its mask
logits (upsampled bilinearly to the input), summed over queries as the paper's semantic inference and
normalised over classes (`mask2former.semantic_probs`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES
from trashlib.models.atm import CLASS_WEIGHT, DICE_WEIGHT, FOCAL_WEIGHT, NO_OBJECT_WEIGHT, ATMDecoder, atm_loss
from trashlib.models.base import SegmentationModel, SegOutput, with_no_object
from trashlib.models.mask2former import semantic_probs
from trashlib.models.pretrained import from_pretrained
from trashlib.models.sizes import ATM_HEAD, VIT, size_config

JAX_MEAN = JAX_STD = (0.5, 0.5, 0.5)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for a random subset of the batch, rescale the rest."""
    if rate == 0.0 or not training:
        return x
    keep = x.new_empty(x.shape[0], *(1,) * (x.ndim - 1)).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


def resize_position_embeddings(vit: nn.Module, image_size: int) -> None:
    """Resize a ViTModel's position embeddings (bicubic, as transformers interpolates) to image_size."""
    emb = vit.embeddings
    grid = image_size // vit.config.patch_size
    if emb.position_embeddings.shape[1] - 1 == grid * grid:
        return
    with torch.no_grad():
        dummy = emb.position_embeddings.new_zeros(1, 1 + grid * grid, emb.position_embeddings.shape[-1])
        resized = emb.interpolate_pos_encoding(dummy, image_size, image_size)
    emb.position_embeddings = nn.Parameter(resized.clone())
    vit.config.image_size = image_size
    emb.image_size = emb.patch_embeddings.image_size = (image_size, image_size)
    emb.patch_embeddings.num_patches = grid * grid


class SegViTSegmenter(SegmentationModel):
    """A transformers ViTModel (the backbone) and an `ATMDecoder` fed by its layers `out_indices`."""

    def __init__(self, vit: nn.Module, *, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
                 out_indices: list[int], layers_per_stage: int, dropout: float = 0.1, drop_path_rate: float = 0.0):
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, mean=JAX_MEAN, std=JAX_STD)
        depth = max(out_indices) + 1
        if depth > len(vit.layers):
            raise ValueError(f"out_indices {out_indices} need {depth} ViT layers, the backbone has {len(vit.layers)}")
        vit.layers = vit.layers[:depth]  # layers after the last one used would get no gradient
        vit.layernorm, vit.pooler = nn.Identity(), None  # final_norm=False in the official configs
        vit.embeddings.cls_token.requires_grad_(False)  # with_cls_token=False: the token is never used
        self.vit = vit
        self.out_indices = tuple(sorted(out_indices))
        self.drop_path_rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear, as mmseg
        config = vit.config
        self.decoder = ATMDecoder(config.hidden_size, num_classes, num_stages=len(out_indices),
                                  layers_per_stage=layers_per_stage, dim=config.hidden_size // 2,
                                  num_heads=config.num_attention_heads, dropout=dropout)
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = NO_OBJECT_WEIGHT
        self.register_buffer("class_weight", class_weight, persistent=False)

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.vit.parameters())

    def set_class_weights(self, weights: torch.Tensor | None) -> None:
        """Per-class weights of the classification cross-entropy; "no object" keeps its weight."""
        self.class_weight.copy_(with_no_object(weights, self.num_classes, no_object=NO_OBJECT_WEIGHT,
                                               like=self.class_weight))

    def _layer(self, layer: nn.Module, x: torch.Tensor, rate: float) -> torch.Tensor:
        """transformers' pre-norm ViTLayer with stochastic depth on both residual branches."""
        attended = layer.attention(layer.layernorm_before(x))[0]
        x = x + drop_path(layer.dropout(attended), rate, self.training)
        return x + drop_path(layer.dropout(layer.mlp(layer.layernorm_after(x))), rate, self.training)

    def features(self, pixel_values: torch.Tensor):
        """The tokens of the layers `out_indices`, deepest first, and the (padded) token grid.

        Shape:
            pixel_values: (N, 3, H, W) normalised
            returns: list of (N, h*w, D), (h, w) with h = ceil(H / patch)
        """
        patch = self.vit.config.patch_size
        pad_h, pad_w = (-pixel_values.shape[-2]) % patch, (-pixel_values.shape[-1]) % patch
        if pad_h or pad_w:
            pixel_values = F.pad(pixel_values, (0, pad_w, 0, pad_h))
        x = self.vit.embeddings(pixel_values, interpolate_pos_encoding=True)[:, 1:]
        features = []
        for i, (layer, rate) in enumerate(zip(self.vit.layers, self.drop_path_rates)):
            x = self._layer(layer, x, rate)
            if i in self.out_indices:
                features.append(x)
        return features[::-1], (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)

    def decode(self, images: torch.Tensor):
        """Per ATM stage class and mask logits, and the padded input size the masks cover.

        Shape:
            images: (N, 3, H, W) float in [0, 1]
            returns: lists of (N, K, K+1) and (N, K, h, w), (H', W') with H' = h * patch
        """
        features, grid = self.features(self.normalize(images))
        class_logits, mask_logits = self.decoder(features, grid)
        patch = self.vit.config.patch_size
        return class_logits, mask_logits, (grid[0] * patch, grid[1] * patch)

    def _probs(self, class_logits, mask_logits, padded, size) -> torch.Tensor:
        mask_logits = F.interpolate(mask_logits.float(), size=padded, mode="bilinear", align_corners=False)
        return semantic_probs(class_logits, mask_logits[..., :size[0], :size[1]])

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> SegOutput:
        """Loss over every ATM stage (with masks); log_probs only without masks (no per-pixel logits).

        Shape:
            images: (N, 3, H, W) float in [0, 1]
            masks: (N, H, W) long label maps
        """
        class_logits, mask_logits, padded = self.decode(images)
        extras = {"class_queries_logits": class_logits[-1], "masks_queries_logits": mask_logits[-1]}
        if masks is None:
            probs = self._probs(class_logits[-1], mask_logits[-1], padded, images.shape[-2:])
            return SegOutput(log_probs=probs.log(), extras=extras)
        loss, parts = 0.0, {}
        for stage_class, stage_masks in zip(class_logits, mask_logits):
            losses = atm_loss(stage_class, stage_masks, masks, class_weight=self.class_weight,
                              ignore_index=self.ignore_index, padded_size=padded)
            loss = loss + (CLASS_WEIGHT * losses["loss_ce"] + FOCAL_WEIGHT * losses["loss_focal"]
                           + DICE_WEIGHT * losses["loss_dice"])
            for key, value in losses.items():
                parts[key] = parts.get(key, 0.0) + value.detach()
        return SegOutput(loss=loss, extras={**extras, **parts})

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        class_logits, mask_logits, padded = self.decode(images)
        return self._probs(class_logits[-1], mask_logits[-1], padded, images.shape[-2:])


def vit_config(size: str, **kwargs):
    """A ViTConfig of a size from `sizes.VIT` (LayerNorm eps 1e-6 as the official backbone)."""
    from transformers import ViTConfig

    shape = size_config(VIT, size, "ViT")
    shape.pop("drop_path_rate")
    return ViTConfig(**{**shape, "layer_norm_eps": 1e-6, **kwargs})


def build_segvit(*, num_classes: int = NUM_CLASSES, size: str = "tiny", pretrained: str | None = None):
    """SegViT: random init of a size, or a transformers ViT checkpoint as the backbone (a new ATM decoder)."""
    from transformers import ViTModel

    shape, head = size_config(VIT, size, "ViT"), size_config(ATM_HEAD, size, "ATM head")
    if pretrained is not None:
        vit = from_pretrained(ViTModel, pretrained, add_pooling_layer=False)
        resize_position_embeddings(vit, shape["image_size"])
    else:
        vit = ViTModel(vit_config(size), add_pooling_layer=False)
    return SegViTSegmenter(vit, num_classes=num_classes, drop_path_rate=shape["drop_path_rate"], **head)
