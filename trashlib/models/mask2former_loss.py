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


def sample_cycled(maps: torch.Tensor, coords: torch.Tensor, **kwargs) -> torch.Tensor:
    """`sample_point(maps[arange(M) % N], coords)` without copying the maps for every row.

    Rows cycle through the N images (layer-major: every decoder layer's rows of images 0..N-1), so the
    rows of one image are its grid's lines in a single grid_sample. In a CPU step the copies cost more
    than the sampling.

    Shape:
        maps: (N, C, H, W); coords: (M, P, 2) in [0, 1], M a multiple of N; returns: (M, C, P)
    """
    n, c = maps.shape[:2]
    m, p = coords.shape[:2]
    if m == n:  # a row per image (none, too: an image without targets matches no mask)
        return sample_point(maps, coords, **kwargs)
    grid = coords.reshape(m // n, n, p, 2).transpose(0, 1)  # (N, L, P, 2): image i's rows i, i + N, ...
    out = sample_point(maps, grid, **kwargs)  # (N, C, L, P)
    return out.permute(2, 0, 1, 3).reshape(m, c, p)


def point_weights(valid: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Weights of sampled points: the fraction of valid pixels among each point's bilinear neighbours.

    Shape:
        valid: (N, 1, H, W) float 0/1, row r's image r % N (`sample_cycled`); coords: (M, P, 2) in [0, 1]
        returns: (M, P)
    """
    # border padding: the image edge is no ignored area (targets keep transformers' zero padding)
    return sample_cycled(valid, coords, align_corners=False, padding_mode="border")[:, 0]


def point_targets(target_masks: torch.Tensor, valid: torch.Tensor, coords: torch.Tensor):
    """Targets and weights of sampled points: each binary mask's mean over the valid neighbours, the weights.

    Shape:
        target_masks: (N, C, H, W) float binary, 0 where ignored; valid: (N, 1, H, W) float 0/1; row r samples
            image r % N (`sample_cycled`); coords: (M, P, 2) in [0, 1]
        returns: (M, C, P) targets in [0, 1], (M, P) weights in [0, 1]
    """
    weights = point_weights(valid, coords)
    labels = sample_cycled(target_masks, coords, align_corners=False)
    return (labels / weights[:, None].clamp_min(1e-6)).clamp(max=1.0), weights


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
    """The matcher's weighted BCE and Dice costs between every prediction and every target, per row.

    BCE(x, y) = softplus(x) - x y, so the weighted sums over points are matrix products with the weights
    folded into the (small) label side: no product of the weights with every prediction's points.

    Shape:
        logits: (M, Q, P); labels: (M, T, P); weights: (M, P), shared by all pairs of a row
        returns: (M, Q, T) BCE cost, (M, Q, T) Dice cost
    """
    w = weights[:, :, None]  # (M, P, 1)
    weighted = labels.transpose(1, 2) * w  # (M, P, T)
    bce = (F.softplus(logits) @ w - logits @ weighted) / weights.sum(1).clamp_min(1e-6)[:, None, None]
    probs = logits.sigmoid()
    dice = 1 - (2 * probs @ weighted + 1) / (probs @ w + weighted.sum(1)[:, None, :] + 1)
    return bce, dice


def _all_valid(mask_labels: list[torch.Tensor]) -> torch.Tensor:
    return mask_labels[0].new_ones(len(mask_labels), 1, *mask_labels[0].shape[-2:])


def pad_targets(mask_labels: list[torch.Tensor], class_labels: list[torch.Tensor]):
    """Per-image targets stacked with padding: masks, classes, and which entries are real.

    Shape:
        mask_labels: N x (T_i, H, W); class_labels: N x (T_i,)
        returns: (N, T, H, W) float masks (0 where padded), (N, T) long classes (0 where padded),
            (N,) long T_i; T = max T_i (at least 1)
    """
    counts = torch.tensor([len(c) for c in class_labels], dtype=torch.long)
    t = max(1, int(counts.max())) if len(counts) else 1
    masks = mask_labels[0].new_zeros(len(mask_labels), t, *mask_labels[0].shape[-2:], dtype=torch.float32)
    classes = torch.zeros(len(class_labels), t, dtype=torch.long, device=masks.device)
    for i, (m, c) in enumerate(zip(mask_labels, class_labels)):
        masks[i, :len(c)] = m
        classes[i, :len(c)] = c
    return masks, classes, counts


def batched_costs(mask_logits, class_logits, targets, target_classes, valid, coords, *, cost_mask, cost_class,
                  cost_dice) -> torch.Tensor:
    """The matcher's cost between every query and every target, for many (layer, image) rows at once.

    The same cost as one image at a time (`pairwise_costs` plus the class term), with each row's own points,
    computed in float32 (outside autocast: the assignment compares sums over a thousand points).

    Shape:
        mask_logits: (M, Q, h, w); class_logits: (M, Q, C+1); targets: (N, T, H, W) float, row r's image
            r % N (N = M: one row per image); target_classes: (M, T) long; valid: (N, 1, H, W) float
        coords: (M, P, 2) in [0, 1]
        returns: (M, Q, T) float32
    """
    with torch.autocast(mask_logits.device.type, enabled=False):
        mask_logits, class_logits = mask_logits.float(), class_logits.float()
        labels, weights = point_targets(targets, valid, coords)  # (M, T, P), (M, P)
        logits = sample_point(mask_logits, coords, align_corners=False)  # (M, Q, P)
        bce, dice = pairwise_costs(logits, labels, weights)
        cls = -class_logits.softmax(-1).gather(-1, target_classes[:, None, :].expand(-1, class_logits.shape[1], -1))
        cost = cost_mask * bce + cost_class * cls + cost_dice * dice
    big = torch.finfo(cost.dtype).max
    return torch.nan_to_num(cost, nan=big, posinf=big, neginf=big)


class IgnoreAwareHungarianMatcher(Mask2FormerHungarianMatcher):
    """transformers' matcher whose mask and Dice costs weight each sampled point by its validity.

    `match` matches many (decoder layer, image) rows in one pass: the cost matrices of every row are
    computed together and only the assignment runs per row (scipy). One image at a time, a training
    step of the cpu profile issued some 10,000 small tensor operations in its loss alone.
    """

    valid: torch.Tensor | None = None  # (N, 1, H, W) float, set by IgnoreAwareMask2FormerLoss.ignoring

    @torch.no_grad()
    def match(self, mask_logits, class_logits, targets, target_classes, counts, valid):
        """Hungarian indices per row: a list of (query indices, target indices), each (T_row,) long.

        Shape:
            mask_logits: (M, Q, h, w); class_logits: (M, Q, C+1); targets: (N, T, H, W) padded, row r's
                image r % N; target_classes: (M, T); counts: (M,) real targets per row; valid: (N, 1, H, W)
        """
        coords = torch.rand(len(mask_logits), self.num_points, 2, device=mask_logits.device)
        cost = batched_costs(mask_logits, class_logits, targets, target_classes, valid, coords,
                             cost_mask=self.cost_mask, cost_class=self.cost_class, cost_dice=self.cost_dice)
        cost = cost.cpu().numpy()
        indices = []
        for row, n in zip(cost, counts.tolist()):
            i, j = linear_sum_assignment(row[:, :n])
            indices.append((torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64)))
        return indices

    @torch.no_grad()
    def forward(self, masks_queries_logits, class_queries_logits, mask_labels, class_labels):
        valid = self.valid if self.valid is not None else _all_valid(mask_labels)
        targets, classes, counts = pad_targets(mask_labels, class_labels)
        return self.match(masks_queries_logits, class_queries_logits, targets.to(masks_queries_logits.device),
                          classes, counts, valid)


class IgnoreAwareMask2FormerLoss(Mask2FormerLoss):
    """transformers' Mask2FormerLoss honouring a per-image validity mask (the rule in the module docstring).

    Every decoder layer's predictions (the last and the auxiliary ones) are matched and scored in one
    batched pass. The losses are transformers' sums over layers: `loss_mask` and `loss_dice` add every
    layer's masks over `num_masks`, `loss_cross_entropy` adds each layer's weighted mean; transformers
    returns one key per layer (`loss_mask_0`, ...), these keys hold their sum, which is what the model's
    total loss adds up.
    """

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

        The points of a mask are a set (the losses sum over them), so the uncertain ones are picked unsorted.

        Shape:
            pred_masks, valid: (M, 1, h, w), (M, 1, H, W)
            returns: (M, num_points, 2) in [0, 1]
        """
        m, device = pred_masks.shape[0], pred_masks.device
        candidates = torch.rand(m, int(self.num_points * self.oversample_ratio), 2, device=device)
        uncertainty = -sample_point(pred_masks, candidates, align_corners=False).abs().squeeze(1)
        uncertainty = uncertainty.masked_fill(point_weights(valid, candidates) == 0, float("-inf"))
        k = int(self.importance_sample_ratio * self.num_points)
        picked = candidates.gather(1, uncertainty.topk(k, dim=1, sorted=False).indices[..., None].expand(-1, -1, 2))
        if k == self.num_points:
            return picked
        return torch.cat([picked, torch.rand(m, self.num_points - k, 2, device=device)], dim=1)

    def forward(self, masks_queries_logits, class_queries_logits, mask_labels, class_labels,
                auxiliary_predictions=None) -> dict[str, torch.Tensor]:
        """Losses summed over the last and the auxiliary layers (keys loss_cross_entropy, loss_mask, loss_dice).

        Shape:
            masks_queries_logits: (N, Q, h, w); class_queries_logits: (N, Q, C+1)
            mask_labels: N x (T_i, H, W); class_labels: N x (T_i,)
        """
        layers = [(masks_queries_logits, class_queries_logits)] + [
            (aux["masks_queries_logits"], aux["class_queries_logits"]) for aux in auxiliary_predictions or []]
        n, q = class_queries_logits.shape[:2]
        mask_logits = torch.cat([m for m, _ in layers])  # (L * N, Q, h, w), layer-major
        class_logits = torch.cat([c for _, c in layers])  # (L * N, Q, C+1)
        rows = len(layers) * n
        image = torch.arange(rows) % n
        valid = self.valid if self.valid is not None else _all_valid(mask_labels)
        targets, classes, counts = pad_targets(mask_labels, class_labels)
        targets = targets.to(mask_logits.device)
        indices = self.matcher.match(mask_logits, class_logits, targets, classes[image], counts[image], valid)
        num_masks = self.get_num_masks(class_labels, device=class_labels[0].device)
        row = torch.cat([torch.full_like(src, r) for r, (src, _) in enumerate(indices)])
        query = torch.cat([src for src, _ in indices])
        target = torch.cat([tgt for _, tgt in indices])
        return {**self._mask_losses(mask_logits, targets, valid, image[row], row, query, target, num_masks),
                "loss_cross_entropy": self._class_loss(class_logits, classes, image, row, query, target, n)}

    def _mask_losses(self, mask_logits, targets, valid, image, row, query, target, num_masks):
        pred_masks = mask_logits[row, query][:, None]  # (K, 1, h, w), K matched pairs of every layer
        target_masks = targets[image, target][:, None]
        valid = valid[image]
        with torch.no_grad():
            coords = self.sample_points(pred_masks, valid)
            labels, weights = point_targets(target_masks, valid, coords)
            labels = labels[:, 0]
        logits = sample_point(pred_masks, coords, align_corners=False).squeeze(1)
        return {"loss_mask": weighted_sigmoid_ce(logits, labels, weights, num_masks),
                "loss_dice": weighted_dice(logits, labels, weights, num_masks)}

    def _class_loss(self, class_logits, classes, image, row, query, target, n):
        """Each layer's weighted mean cross-entropy ("no object" for unmatched queries), summed over layers."""
        rows, q, c1 = class_logits.shape
        wanted = torch.full((rows, q), self.num_labels, dtype=torch.long, device=class_logits.device)
        wanted[row, query] = classes[image[row], target].to(wanted.device)
        ce = F.cross_entropy(class_logits.float().reshape(-1, c1), wanted.reshape(-1), reduction="none")
        weight = self.empty_weight[wanted].reshape(rows // n, n * q)
        ce = ce.reshape(rows // n, n * q) * weight
        return (ce.sum(1) / weight.sum(1)).sum()
