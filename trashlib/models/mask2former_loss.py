"""transformers' Mask2Former loss with an ignore mask: ignored pixels count in no mask loss.

The rule: pixels labelled `ignore_index` (255) belong to no target mask and contribute nothing to the
mask losses or to the matching. Each point sampled in [0, 1]^2 gets a weight, the validity mask
(pixel != 255) sampled bilinearly there - 0 inside ignored areas, the fraction of valid neighbours on
their edge - and as target the mean of the binary mask over those valid neighbours. Sigmoid BCE is the
weighted mean over a mask's points, Dice uses weighted sums, and the Hungarian matcher's mask and
Dice costs use the same weights. Importance sampling (the 3/4 of the points picked for uncertainty)
chooses among valid candidates only; the uniformly random rest keeps its draw and ignored points there
weigh 0. The class cross-entropy is transformers' own. With no pixel ignored this is transformers'
loss, random draws included.

Usage: `with criterion.ignoring(masks != 255): hf_model(pixel_values, mask_labels=…, class_labels=…)`.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment  # transformers' matcher needs scipy too
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerHungarianMatcher,
    Mask2FormerLoss,
    sample_point,
)


def point_weights(valid: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Weights of sampled points: the fraction of valid pixels among each point's bilinear neighbours.

    Shape:
        valid: (M, 1, H, W) float 0/1; coords: (M, P, 2) in [0, 1]; returns: (M, P)
    """
    # border padding: the image edge is no ignored area (targets keep transformers' zero padding)
    return sample_point(valid, coords, align_corners=False, padding_mode="border").squeeze(1)


def point_targets(target_masks: torch.Tensor, valid: torch.Tensor, coords: torch.Tensor):
    """Targets and weights of sampled points: each binary mask's mean over the valid neighbours, the weights.

    Shape:
        target_masks: (M, 1, H, W) float binary, 0 where ignored; valid: (M, 1, H, W) float 0/1
        coords: (M, P, 2) in [0, 1]
        returns: (M, P) targets in [0, 1], (M, P) weights in [0, 1]
    """
    weights = point_weights(valid, coords)
    labels = sample_point(target_masks, coords, align_corners=False).squeeze(1)
    return (labels / weights.clamp_min(1e-6)).clamp(max=1.0), weights


def weighted_sigmoid_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, num_masks) -> torch.Tensor:
    """Per mask the weighted mean BCE over its points, summed over masks / num_masks (0 for weight 0).

    Shape:
        logits, labels, weights: (M, P)
    """
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return ((bce * weights).sum(1) / weights.sum(1).clamp_min(1e-6)).sum() / num_masks


def weighted_dice(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, num_masks) -> torch.Tensor:
    """Dice loss 1 - (2 sum w p y + 1) / (sum w p + sum w y + 1) per mask, summed / num_masks.

    Shape:
        logits, labels, weights: (M, P)
    """
    probs = logits.sigmoid() * weights
    loss = 1 - (2 * (probs * labels).sum(1) + 1) / (probs.sum(1) + (labels * weights).sum(1) + 1)
    return loss.sum() / num_masks


def pairwise_costs(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor):
    """The matcher's weighted BCE and Dice costs between every prediction and every target.

    Shape:
        logits: (Q, P); labels: (T, P); weights: (P,) shared by all pairs
        returns: (Q, T) BCE cost, (Q, T) Dice cost
    """
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none") * weights
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none") * weights
    bce = (pos @ labels.T + neg @ (1 - labels).T) / weights.sum().clamp_min(1e-6)
    probs = logits.sigmoid() * weights
    dice = 1 - (2 * probs @ labels.T + 1) / (probs.sum(1)[:, None] + (labels * weights).sum(1)[None] + 1)
    return bce, dice


def _all_valid(mask_labels: list[torch.Tensor]) -> torch.Tensor:
    return mask_labels[0].new_ones(len(mask_labels), 1, *mask_labels[0].shape[-2:])


class IgnoreAwareHungarianMatcher(Mask2FormerHungarianMatcher):
    """transformers' matcher whose mask and Dice costs weight each sampled point by its validity."""

    valid: torch.Tensor | None = None  # (N, 1, H, W) float, set by IgnoreAwareMask2FormerLoss.ignoring

    @torch.no_grad()
    def forward(self, masks_queries_logits, class_queries_logits, mask_labels, class_labels):
        valid = self.valid if self.valid is not None else _all_valid(mask_labels)
        indices = []
        for i, (pred, target, classes) in enumerate(zip(masks_queries_logits, mask_labels, class_labels)):
            cost_class = -class_queries_logits[i].softmax(-1)[:, classes]
            coords = torch.rand(1, self.num_points, 2, device=pred.device)
            target = target.to(pred)[:, None]  # (T, 1, H, W)
            labels, _ = point_targets(target, valid[i].expand_as(target), coords.expand(len(target), -1, -1))
            logits = sample_point(pred[:, None], coords.expand(len(pred), -1, -1), align_corners=False).squeeze(1)
            cost_mask, cost_dice = pairwise_costs(logits, labels, point_weights(valid[i:i + 1], coords)[0])
            cost = self.cost_mask * cost_mask + self.cost_class * cost_class + self.cost_dice * cost_dice
            big = torch.finfo(cost.dtype).max
            cost = torch.nan_to_num(cost, nan=big, posinf=big, neginf=big)
            indices.append(linear_sum_assignment(cost.cpu()))
        return [(torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64)) for i, j in indices]


class IgnoreAwareMask2FormerLoss(Mask2FormerLoss):
    """transformers' Mask2FormerLoss honouring a per-image validity mask (the rule in the module docstring)."""

    valid: torch.Tensor | None = None

    def __init__(self, config, weight_dict: dict[str, float]):
        super().__init__(config, weight_dict)
        self.matcher = IgnoreAwareHungarianMatcher(cost_class=config.class_weight, cost_dice=config.dice_weight,
                                                   cost_mask=config.mask_weight, num_points=self.num_points)

    @classmethod
    def replacing(cls, criterion: Mask2FormerLoss, config) -> IgnoreAwareMask2FormerLoss:
        """An ignore-aware copy of a model's criterion (its class weights included)."""
        new = cls(config, criterion.weight_dict).to(criterion.empty_weight.device)
        new.load_state_dict(criterion.state_dict())
        return new

    @contextmanager
    def ignoring(self, valid: torch.Tensor):
        """Within the block, pixels where `valid` is False count in no mask loss nor matching cost.

        Shape:
            valid: (N, H, W) bool, the label maps' resolution
        """
        self.valid = self.matcher.valid = valid[:, None].float()
        try:
            yield
        finally:
            self.valid = self.matcher.valid = None

    @torch.no_grad()
    def sample_points(self, pred_masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """transformers' uncertainty sampling with the uncertain points taken among valid candidates.

        Shape:
            pred_masks, valid: (M, 1, h, w), (M, 1, H, W)
            returns: (M, num_points, 2) in [0, 1]
        """
        m, device = pred_masks.shape[0], pred_masks.device
        candidates = torch.rand(m, int(self.num_points * self.oversample_ratio), 2, device=device)
        uncertainty = -sample_point(pred_masks, candidates, align_corners=False).abs().squeeze(1)
        uncertainty = uncertainty.masked_fill(point_weights(valid, candidates) == 0, float("-inf"))
        k = int(self.importance_sample_ratio * self.num_points)
        picked = candidates.gather(1, uncertainty.topk(k, dim=1).indices[..., None].expand(-1, -1, 2))
        if k == self.num_points:
            return picked
        return torch.cat([picked, torch.rand(m, self.num_points - k, 2, device=device)], dim=1)

    def loss_masks(self, masks_queries_logits, mask_labels, indices, num_masks) -> dict[str, torch.Tensor]:
        valid = self.valid if self.valid is not None else _all_valid(mask_labels)
        src_idx = self._get_predictions_permutation_indices(indices)
        tgt_idx = self._get_targets_permutation_indices(indices)
        pred_masks = masks_queries_logits[src_idx][:, None]
        target_masks, _ = self._pad_images_to_max_in_batch(mask_labels)
        target_masks = target_masks[tgt_idx][:, None]
        valid = valid[tgt_idx[0]]
        with torch.no_grad():
            coords = self.sample_points(pred_masks, valid)
            labels, weights = point_targets(target_masks, valid, coords)
        logits = sample_point(pred_masks, coords, align_corners=False).squeeze(1)
        return {"loss_mask": weighted_sigmoid_ce(logits, labels, weights, num_masks),
                "loss_dice": weighted_dice(logits, labels, weights, num_masks)}
