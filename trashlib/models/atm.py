"""SegViT's Attention-to-Mask (ATM) decoder and its loss (Zhang et al., NeurIPS 2022).

One learnable query per class. Each stage projects one ViT layer's tokens (Linear + LayerNorm) and runs
post-norm transformer-decoder layers over the class queries (self-attention, cross-attention to the
tokens, a ReLU feed-forward). The cross-attention's scaled query-key similarity, averaged over heads and
taken before the softmax, is each class's mask logit on the token grid; a stage's mask is the sum of its
last layer's map and the earlier stages' masks. The queries after each stage give class logits over
`num_classes + 1` (the last one "no object"). Query c is bound to class c, so the loss needs no matching.

Loss per stage (deep supervision: every stage counts alike): the class cross-entropy (query c's target is c
where the image has class c, "no object" elsewhere, weighted 0.1 as in DETR), plus, for the classes
present, a sigmoid focal loss (alpha 0.25, gamma 2; weight 20) and a Dice loss (weight 1) on the mask
logits upsampled bilinearly to the label map. Unlike the official code, pixels labelled `ignore_index`
count in no mask loss (weight 0 in the focal mean and the Dice sums), as in mask2former_loss.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trashlib.models.mask2former_loss import weighted_dice

CLASS_WEIGHT, FOCAL_WEIGHT, DICE_WEIGHT = 1.0, 20.0, 1.0  # the official ATMLoss weights
NO_OBJECT_WEIGHT = 0.1


class ATMLayer(nn.Module):
    """A post-norm decoder layer whose cross-attention also returns its pre-softmax similarity map."""

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.1):
        super().__init__()
        self.num_heads, self.scale = num_heads, (dim // num_heads) ** -0.5
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(dim) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor):
        """Updated queries and the similarity map (mask logits) of every query and token.

        Shape:
            queries: (N, Q, D); memory: (N, L, D)
            returns: (N, Q, D), (N, Q, L)
        """
        x = self.norm1(queries + self.dropout(self.self_attn(queries, queries, queries, need_weights=False)[0]))
        scores = (self._heads(self.q(x)) @ self._heads(self.k(memory)).transpose(-1, -2)) * self.scale
        attended = self.dropout(scores.softmax(-1)) @ self._heads(self.v(memory))
        x = self.norm2(x + self.dropout(self.proj(attended.transpose(1, 2).flatten(2))))
        x = self.norm3(x + self.dropout(self.ffn(x)))
        return x, scores.mean(1)


class ATMStage(nn.Module):
    """One backbone layer's tokens projected to the decoder width, then `num_layers` ATM layers."""

    def __init__(self, in_dim: int, dim: int, num_heads: int, num_layers: int, *, dropout: float):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(ATMLayer(dim, num_heads, dropout=dropout) for _ in range(num_layers))

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor):
        memory = self.norm(self.proj(tokens))
        for layer in self.layers:
            queries, scores = layer(queries, memory)
        return queries, scores


class ATMDecoder(nn.Module):
    """Class queries through one `ATMStage` per backbone feature, deepest first (as the official head)."""

    def __init__(self, in_dim: int, num_classes: int, *, num_stages: int, layers_per_stage: int, dim: int,
                 num_heads: int, dropout: float = 0.1):
        super().__init__()
        self.stages = nn.ModuleList(ATMStage(in_dim, dim, num_heads, layers_per_stage, dropout=dropout)
                                    for _ in range(num_stages))
        self.queries = nn.Embedding(num_classes, dim)
        self.class_embed = nn.Linear(dim, num_classes + 1)
        for module in self.modules():  # the official init_weights; the query table keeps N(0, 1)
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, features: list[torch.Tensor], grid: tuple[int, int]):
        """Per stage: class logits and mask logits (cumulative over stages), last stage last.

        Shape:
            features: per stage (N, h*w, in_dim), in the order the stages run
            returns: lists of (N, K, K+1) and (N, K, h, w)
        """
        # a copy, not an expanded view: under no_grad a view of the table still claims requires_grad
        queries = self.queries.weight.unsqueeze(0).repeat(features[0].shape[0], 1, 1)
        class_logits, mask_logits, total = [], [], None
        for stage, tokens in zip(self.stages, features):
            queries, scores = stage(queries, tokens)
            total = scores if total is None else total + scores
            class_logits.append(self.class_embed(queries))
            mask_logits.append(total.unflatten(-1, grid))
        return class_logits, mask_logits


def sigmoid_focal(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, num_masks,
                  *, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per mask the weighted mean focal loss over its pixels, summed over masks / num_masks.

    Shape:
        logits, labels, weights: (M, P)
    """
    probs = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    p_t = probs * labels + (1 - probs) * (1 - labels)
    loss = (alpha * labels + (1 - alpha) * (1 - labels)) * bce * (1 - p_t) ** gamma
    return ((loss * weights).sum(1) / weights.sum(1).clamp_min(1e-6)).sum() / num_masks


def atm_loss(class_logits: torch.Tensor, mask_logits: torch.Tensor, masks: torch.Tensor, *,
             class_weight: torch.Tensor, ignore_index: int, padded_size=None) -> dict[str, torch.Tensor]:
    """One stage's class cross-entropy, focal and Dice losses (unweighted), with query c bound to class c.

    The mask logits of the classes present are upsampled bilinearly to `padded_size` (default: the label
    maps' size) and cropped to the label maps (the image was padded at the bottom and right).

    Shape:
        class_logits: (N, K, K+1); mask_logits: (N, K, h, w)
        masks: (N, H, W) long label maps; class_weight: (K+1,), the last entry "no object"
    """
    class_logits, mask_logits = class_logits.float(), mask_logits.float()
    num_classes = class_logits.shape[1]
    classes = torch.arange(num_classes, device=masks.device)
    one_hot = masks[:, None] == classes[None, :, None, None]  # ignored pixels are in no class
    present = one_hot.flatten(2).any(-1)  # (N, K)
    targets = torch.where(present, classes, torch.full_like(classes, num_classes))
    loss_ce = F.cross_entropy(class_logits.transpose(1, 2), targets, weight=class_weight.float())
    num_masks = present.sum().clamp_min(1)
    valid = (masks != ignore_index)[:, None].expand_as(one_hot)[present].flatten(1).float()
    height, width = masks.shape[-2:]
    logits = F.interpolate(mask_logits[present][:, None], size=tuple(padded_size or (height, width)),
                           mode="bilinear", align_corners=False)[:, 0, :height, :width].flatten(1)
    labels = one_hot[present].flatten(1).float()
    return {"loss_ce": loss_ce, "loss_focal": sigmoid_focal(logits, labels, valid, num_masks),
            "loss_dice": weighted_dice(logits, labels, valid, num_masks)}
