"""MaskDINO's set criterion on trashlib's ignore-aware Mask2Former loss, plus boxes and denoising.

Every prediction round (the selected tokens', the initial queries', each layer's) is Hungarian-matched on
its own with the Mask2Former costs (class, sigmoid BCE and Dice on sampled points, each point weighted by
its validity: see mask2former_loss.py) plus MaskDINO's box costs (L1 and generalised IoU against the
target segment's bounding box), all rounds in one batch. Matched pairs get the cross-entropy, mask, Dice,
box L1 and GIoU losses; the denoising queries get the same losses against the segment they were made
from, normalised by the number of targets times the number of denoising groups.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from trashlib.models.mask2former_loss import (
    IgnoreAwareHungarianMatcher,
    IgnoreAwareMask2FormerLoss,
    _all_valid,
    batched_costs,
    pad_targets,
)
from trashlib.models.maskdino_decoder import Denoising, Predictions


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Bounding boxes of binary masks as (cx, cy, w, h) in [0, 1] of the image; (0, 0, 0, 0) for an empty mask.

    Shape:
        masks: (T, H, W); returns: (T, 4) float
    """
    h, w = masks.shape[-2:]
    rows, cols = masks.any(2), masks.any(1)

    def extent(hit: torch.Tensor, n: int):
        index = torch.arange(n, device=hit.device)
        first = torch.where(hit, index, n).min(1).values
        last = torch.where(hit, index + 1, 0).max(1).values
        return first / n, last / n

    y0, y1 = extent(rows, h)
    x0, x1 = extent(cols, w)
    boxes = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1).float()
    return boxes * rows.any(1, keepdim=True)


def to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1)."""
    centre, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], -1)


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of (x0, y0, x1, y1) boxes, broadcast over the leading dimensions.

    Shape:
        a, b: (..., 4) broadcastable; returns: (...)
    """
    def area(box):
        return (box[..., 2:] - box[..., :2]).clamp_min(0).prod(-1)

    inter = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp_min(0).prod(-1)
    union = area(a) + area(b) - inter
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp_min(0).prod(-1)
    return inter / union.clamp_min(1e-7) - (hull - union) / hull.clamp_min(1e-7)


class BoxAwareMatcher(IgnoreAwareHungarianMatcher):
    """The ignore-aware matcher with MaskDINO's box costs (L1 and -GIoU) added."""

    def __init__(self, *, cost_box: float, cost_giou: float, **kwargs):
        super().__init__(**kwargs)
        self.cost_box, self.cost_giou = cost_box, cost_giou

    @torch.no_grad()
    def match_with_boxes(self, mask_logits, class_logits, boxes, targets, target_classes, target_boxes, counts, valid):
        """Hungarian indices per row, as `match`, with box costs.

        Shape:
            boxes: (M, Q, 4); target_boxes: (M, T, 4), both (cx, cy, w, h); the rest as in `match`
        """
        coords = torch.rand(len(mask_logits), self.num_points, 2, device=mask_logits.device)
        cost = batched_costs(mask_logits, class_logits, targets, target_classes, valid, coords,
                             cost_mask=self.cost_mask, cost_class=self.cost_class, cost_dice=self.cost_dice)
        boxes, target_boxes = boxes.float(), target_boxes.float()
        cost = cost + self.cost_box * torch.cdist(boxes, target_boxes, p=1)
        cost = cost - self.cost_giou * generalized_iou(to_corners(boxes)[:, :, None], to_corners(target_boxes)[:, None])
        cost = torch.nan_to_num(cost, nan=1e30, posinf=1e30, neginf=1e30).cpu().numpy()
        indices = []
        for row, n in zip(cost, counts.tolist()):
            i, j = linear_sum_assignment(row[:, :n])
            indices.append((torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64)))
        return indices


class MaskDINOLoss(IgnoreAwareMask2FormerLoss):
    """Losses of every round of MaskDINO's predictions (module docstring), as a dict of unweighted sums."""

    def __init__(self, config, weight_dict: dict[str, float], *, box_weight: float = 5.0, giou_weight: float = 2.0):
        super().__init__(config, {**weight_dict, "loss_box": box_weight, "loss_giou": giou_weight})
        self.matcher = BoxAwareMatcher(cost_class=config.class_weight, cost_dice=config.dice_weight,
                                       cost_mask=config.mask_weight, num_points=self.num_points,
                                       cost_box=box_weight, cost_giou=giou_weight)
        self.weight_dict.update({f"{k}_dn": v for k, v in self.weight_dict.items()})

    def forward(self, predictions: Predictions, mask_labels, class_labels, boxes, *, denoising: Denoising | None = None,
                valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Losses summed over rounds: loss_cross_entropy, loss_mask, loss_dice, loss_box, loss_giou (+ "_dn" keys).

        Shape:
            mask_labels: N x (T_i, H, W); class_labels: N x (T_i,); boxes: N x (T_i, 4) (cx, cy, w, h)
            valid: (N, 1, H, W) float, 1 where the label is not ignored (None: all valid)
        """
        n = len(class_labels)
        valid = valid if valid is not None else _all_valid(mask_labels)
        targets, classes, counts = pad_targets(mask_labels, class_labels)
        target_boxes = torch.zeros(*classes.shape, 4, device=targets.device)
        for i, box in enumerate(boxes):
            target_boxes[i, :len(box)] = box.to(target_boxes.device)
        num_masks = self.get_num_masks(class_labels, device=targets.device)
        mask_logits = torch.cat(predictions.mask_logits)  # (rounds * N, Q, h, w), round-major
        class_logits = torch.cat(predictions.class_logits)
        pred_boxes = torch.cat(predictions.boxes)
        image = torch.arange(len(class_logits), device=targets.device) % n
        indices = self.matcher.match_with_boxes(mask_logits, class_logits, pred_boxes, targets, classes[image],
                                                target_boxes[image], counts[image.cpu()], valid)
        row = torch.cat([torch.full_like(src, r) for r, (src, _) in enumerate(indices)]).to(targets.device)
        query = torch.cat([src for src, _ in indices]).to(targets.device)
        target = torch.cat([tgt for _, tgt in indices]).to(targets.device)
        losses = self._losses(mask_logits, class_logits, pred_boxes, targets, classes, target_boxes, valid,
                              image, row, query, target, n, num_masks)
        if denoising is not None:
            losses.update({f"{k}_dn": v for k, v in self._denoising_losses(
                denoising, targets, classes, target_boxes, counts, valid, n, num_masks).items()})
        return losses

    def _losses(self, mask_logits, class_logits, pred_boxes, targets, classes, target_boxes, valid, image, row,
                query, target, n, num_masks):
        src = pred_boxes[row, query].float()
        tgt = target_boxes[image[row], target]
        return {**self._mask_losses(mask_logits, targets, valid, image[row], row, query, target, num_masks),
                "loss_cross_entropy": self._class_loss(class_logits, classes, image, row, query, target, n),
                "loss_box": F.l1_loss(src, tgt, reduction="sum") / num_masks,
                "loss_giou": (1 - generalized_iou(to_corners(src), to_corners(tgt))).sum() / num_masks}

    def _denoising_losses(self, denoising: Denoising, targets, classes, target_boxes, counts, valid, n, num_masks):
        """Slot t of group g of image i reconstructs target t of image i, in every round."""
        p = denoising.predictions
        mask_logits, class_logits, pred_boxes = (torch.cat(x) for x in (p.mask_logits, p.class_logits, p.boxes))
        device = targets.device
        rows, queries, tgts = [], [], []
        for r in range(len(class_logits)):
            t = torch.arange(int(counts[r % n]), device=device)
            for g in range(denoising.groups):
                rows.append(torch.full_like(t, r))
                queries.append(g * denoising.slots + t)
                tgts.append(t)
        row, query, target = torch.cat(rows), torch.cat(queries), torch.cat(tgts)
        image = torch.arange(len(class_logits), device=device) % n
        return self._losses(mask_logits, class_logits, pred_boxes, targets, classes, target_boxes, valid, image,
                            row, query, target, n, num_masks * denoising.groups)
