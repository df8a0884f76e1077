"""MaskDINO's transformer decoder: DINO's deformable decoder with query selection, denoising queries and a mask branch.

Each layer: self-attention among the queries (positions from a sine embedding of each query's reference box),
multi-scale deformable cross-attention sampling the pixel decoder's features around that box (transformers'
Mask2Former deformable attention, which takes 4-d reference boxes), and a feed-forward block. A shared box
head refines the reference box after every layer (its update is detached between layers, as in DINO). After
the initial queries and after every layer, shared heads predict class logits and a mask (the query's
embedding dotted with the per-pixel mask features at 1/4 resolution).

Query selection: every token of the encoder's memory scores the classes; the top-k tokens (by their best
real-class logit) give the content queries (detached) and, through the box head over a fixed-size proposal
at the token, their reference boxes; their own predictions are supervised too ("interm").

Denoising (training only): each ground-truth segment, its class flipped at random with probability
noise_scale / 2 and its box jittered by up to noise_scale of its size, becomes an extra query, in as many
groups as `dn_num` allows. An attention mask keeps the matching queries from seeing them and each group
from seeing the others; their outputs are supervised against their own segment, without matching.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention as DeformableAttention,
)


class MLP(nn.Sequential):
    """Linear layers with ReLU between them."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < num_layers - 1 else [])
        super().__init__(*layers)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x) with x clamped away from 0 and 1."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp_min(eps) / (1 - x).clamp_min(eps))


def box_sine_embedding(boxes: torch.Tensor, dim: int) -> torch.Tensor:
    """Sine/cosine features of (cx, cy, w, h) boxes, `dim // 2` per coordinate, in the order y, x, w, h.

    Shape:
        boxes: (B, Q, 4) in [0, 1]; returns: (B, Q, 2 * dim)
    """
    half = dim // 2
    freq = 10000 ** (2 * (torch.arange(half, device=boxes.device) // 2) / half)
    pos = boxes.float()[..., None] * (2 * math.pi) / freq  # (B, Q, 4, half)
    pos = torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), -1).flatten(-2)
    cx, cy, w, h = pos.unbind(-2)
    return torch.cat([cy, cx, w, h], -1)


def encoder_proposals(spatial_shapes: list[tuple[int, int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """A box per memory token: centred on it, 0.05 x 2^level wide and high; logits and which are valid.

    Shape:
        returns: (S, 4) box logits (0 where invalid), (S,) bool; S = sum of h * w
    """
    boxes = []
    for level, (h, w) in enumerate(spatial_shapes):
        y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        centres = torch.stack([(x.flatten() + 0.5) / w, (y.flatten() + 0.5) / h], -1)
        boxes.append(torch.cat([centres, torch.full_like(centres, 0.05 * 2.0 ** level)], -1))
    boxes = torch.cat(boxes)
    valid = ((boxes > 0.01) & (boxes < 0.99)).all(-1)
    return inverse_sigmoid(boxes).masked_fill(~valid[:, None], 0.0), valid


class DINODecoderLayer(nn.Module):
    """Self-attention, deformable cross-attention around the reference box, feed-forward; post-norm."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, levels: int, points: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_self = nn.LayerNorm(dim)
        self.cross_attn = DeformableAttention(dim, heads, levels, points)
        self.norm_cross = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm_ffn = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, query_pos, boxes, memory, spatial_shapes, level_start, attn_mask=None):
        """Shape: queries, query_pos (B, Q, D); boxes (B, Q, 4) in [0, 1]; memory (B, S, D); returns (B, Q, D)."""
        q = queries + query_pos
        queries = self.norm_self(queries + self.dropout(self.self_attn(q, q, queries, attn_mask=attn_mask)[0]))
        attended, _ = self.cross_attn(queries, encoder_hidden_states=memory, position_embeddings=query_pos,
                                      reference_points=boxes[:, :, None].expand(-1, -1, len(spatial_shapes), -1),
                                      spatial_shapes_list=spatial_shapes, level_start_index=level_start)
        queries = self.norm_cross(queries + self.dropout(attended))
        return self.norm_ffn(queries + self.dropout(self.ffn(queries)))


@dataclass
class Predictions:
    """Per prediction round (interm, initial queries, each layer): class logits (B, Q, C+1), mask logits
    (B, Q, h, w), boxes (B, Q, 4) as (cx, cy, w, h) in [0, 1]."""

    class_logits: list[torch.Tensor]
    mask_logits: list[torch.Tensor]
    boxes: list[torch.Tensor]


@dataclass
class Denoising:
    """The denoising queries' predictions and their layout: `groups` groups of `slots` queries each; slot t
    of every group reconstructs target t of its image (slots past an image's targets are padding)."""

    predictions: Predictions
    groups: int
    slots: int


def reset_deformable_attention(module: DeformableAttention) -> None:
    """Deformable DETR's initialisation: each head's offsets start on a ray of its own direction."""
    nn.init.zeros_(module.sampling_offsets.weight)
    angles = torch.arange(module.n_heads, dtype=torch.float32) * (2 * math.pi / module.n_heads)
    grid = torch.stack([angles.cos(), angles.sin()], -1)
    grid = grid / grid.abs().max(-1, keepdim=True).values
    grid = grid[:, None, None].repeat(1, module.n_levels, module.n_points, 1)
    grid *= torch.arange(1, module.n_points + 1, dtype=torch.float32)[None, None, :, None]
    with torch.no_grad():
        module.sampling_offsets.bias.copy_(grid.flatten())
    nn.init.zeros_(module.attention_weights.weight)
    nn.init.zeros_(module.attention_weights.bias)
    for layer in (module.value_proj, module.output_proj):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)


class MaskDINODecoder(nn.Module):
    """Queries (selected from the memory, or learnt), optional denoising queries, deformable layers, heads.

    `num_layers` deformable layers give num_layers + 1 prediction rounds (the initial queries' and each
    layer's), plus the selected tokens' own round ("interm") with query selection.
    """

    def __init__(self, *, num_classes: int, hidden_dim: int = 256, num_queries: int = 100, num_layers: int = 9,
                 heads: int = 8, ffn_dim: int = 2048, levels: int = 3, points: int = 4, mask_dim: int = 256,
                 dropout: float = 0.0, query_selection: bool = True, dn_num: int = 100, dn_noise_scale: float = 0.4):
        super().__init__()
        self.num_classes, self.num_queries, self.hidden_dim = num_classes, num_queries, hidden_dim
        self.query_selection, self.dn_num, self.dn_noise_scale = query_selection, dn_num, dn_noise_scale
        self.layers = nn.ModuleList(DINODecoderLayer(hidden_dim, heads, ffn_dim, levels, points, dropout)
                                    for _ in range(num_layers))
        self.ref_point_head = MLP(2 * hidden_dim, hidden_dim, hidden_dim, 2)
        self.norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)  # the last column is "no object"
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)  # shared by every layer and the selection
        self.label_enc = nn.Embedding(num_classes, hidden_dim)  # denoising queries' content
        if query_selection:
            self.enc_output = nn.Linear(hidden_dim, hidden_dim)
            self.enc_output_norm = nn.LayerNorm(hidden_dim)
        else:  # learnt content queries and anchor boxes
            self.query_feat = nn.Embedding(num_queries, hidden_dim)
            self.query_embed = nn.Embedding(num_queries, 4)
        for layer in self.layers:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            reset_deformable_attention(layer.cross_attn)
        nn.init.zeros_(self.bbox_embed[-1].weight)
        nn.init.zeros_(self.bbox_embed[-1].bias)

    def heads(self, queries: torch.Tensor, mask_features: torch.Tensor):
        """Class logits and mask logits of queries. Shape: (B, Q, D), (B, M, h, w) -> (B, Q, C+1), (B, Q, h, w)."""
        x = self.norm(queries)
        return self.class_embed(x), torch.einsum("bqc,bchw->bqhw", self.mask_embed(x), mask_features)

    def select_queries(self, memory: torch.Tensor, spatial_shapes):
        """The top-k memory tokens by their best class logit: (content (B, K, D), box logits (B, K, 4))."""
        proposals, valid = encoder_proposals(spatial_shapes, memory.device)
        tokens = self.enc_output_norm(self.enc_output(memory.masked_fill(~valid[None, :, None], 0.0)))
        scores = self.class_embed(tokens)[..., :-1].max(-1).values.masked_fill(~valid[None], float("-inf"))
        top = scores.topk(min(self.num_queries, scores.shape[1]), dim=1).indices  # (B, K)
        content = tokens.gather(1, top[..., None].expand(-1, -1, tokens.shape[-1]))
        boxes = self.bbox_embed(content) + proposals[top]
        return content, boxes

    def denoising_queries(self, class_labels: list[torch.Tensor], boxes: list[torch.Tensor]):
        """Noised ground truth as queries: (content (B, P, D), box logits (B, P, 4), groups, slots), or None
        when there is no target or `dn_num` is smaller than an image's number of targets."""
        slots = max(len(c) for c in class_labels)
        groups = self.dn_num // slots if slots else 0
        if groups == 0:
            return None
        device, b = self.label_enc.weight.device, len(class_labels)
        labels = torch.zeros(b, groups, slots, dtype=torch.long, device=device)
        targets = torch.zeros(b, groups, slots, 4, device=device)
        real = torch.zeros(b, groups, slots, 1, device=device)
        for i, (c, box) in enumerate(zip(class_labels, boxes)):
            labels[i, :, :len(c)] = c.to(device)
            targets[i, :, :len(c)] = box.to(device)
            real[i, :, :len(c)] = 1.0
        flip = torch.rand(labels.shape, device=device) < self.dn_noise_scale * 0.5
        labels = torch.where(flip, torch.randint_like(labels, self.num_classes), labels)
        scale = torch.cat([targets[..., 2:] / 2, targets[..., 2:]], -1)  # centres move by up to half the size
        noised = (targets + (torch.rand_like(targets) * 2 - 1) * scale * self.dn_noise_scale).clamp(0, 1)
        content = (self.label_enc(labels) * real).flatten(1, 2)
        return content, (inverse_sigmoid(noised) * real).flatten(1, 2), groups, slots

    @staticmethod
    def denoising_mask(groups: int, slots: int, num_queries: int, device) -> torch.Tensor:
        """Self-attention mask (True = blocked): the matching queries see no denoising query, and a denoising
        group sees the matching queries and itself only."""
        pad = groups * slots
        group = torch.arange(pad + num_queries, device=device) // slots
        blocked = group[:, None] != group[None, :]
        blocked[:, pad:] = False
        blocked[pad:, :pad] = True
        return blocked

    def forward(self, features: list[torch.Tensor], mask_features: torch.Tensor, *, every_round: bool = False,
                targets: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None):
        """Predictions of every round (`every_round`, for a loss) or of the last only; denoising with `targets`.

        Shape:
            features: levels of (B, D, h_l, w_l), finest first; mask_features: (B, M, H/4, W/4)
            targets: per image class ids (T_i,) and boxes (T_i, 4), or None (no denoising queries)
            returns: Predictions of the matching queries, Denoising or None
        """
        spatial_shapes = [tuple(f.shape[-2:]) for f in features]
        memory = torch.cat([f.flatten(2).transpose(1, 2) for f in features], 1)
        sizes = torch.tensor([h * w for h, w in spatial_shapes], device=memory.device)
        level_start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
        b = memory.shape[0]
        rounds = Predictions([], [], [])

        def record(queries, boxes):
            class_logits, mask_logits = self.heads(queries, mask_features)
            rounds.class_logits.append(class_logits)
            rounds.mask_logits.append(mask_logits)
            rounds.boxes.append(boxes.sigmoid())

        if self.query_selection:
            content, boxes = self.select_queries(memory, spatial_shapes)
            if every_round:
                record(content, boxes)
            queries, boxes = content.detach(), boxes.detach()
        else:
            queries = self.query_feat.weight[None].expand(b, -1, -1)
            boxes = self.query_embed.weight[None].expand(b, -1, -1)
        dn = self.denoising_queries(*targets) if targets is not None else None
        attn_mask = None
        if dn is not None:
            dn_content, dn_boxes, groups, slots = dn
            attn_mask = self.denoising_mask(groups, slots, queries.shape[1], memory.device)
            queries, boxes = torch.cat([dn_content, queries], 1), torch.cat([dn_boxes, boxes], 1)
        start = len(rounds.class_logits)  # the interm round, if any, has no denoising queries
        if every_round:
            record(queries, boxes)
        for i, layer in enumerate(self.layers):
            reference = boxes.sigmoid()
            query_pos = self.ref_point_head(box_sine_embedding(reference, self.hidden_dim).to(queries.dtype))
            queries = layer(queries, query_pos, reference, memory, spatial_shapes, level_start, attn_mask)
            refined = self.bbox_embed(queries) + boxes
            if every_round or i == len(self.layers) - 1:
                record(queries, refined)
            boxes = refined.detach()
        if targets is not None and dn is None:  # keeps every parameter in the graph (DistributedDataParallel)
            rounds.class_logits[-1] = rounds.class_logits[-1] + 0.0 * self.label_enc.weight.sum()
        if dn is None:
            return rounds, None
        return split_denoising(rounds, start, groups, slots)


def split_denoising(rounds: Predictions, start: int, groups: int, slots: int) -> tuple[Predictions, Denoising]:
    """Separate the groups x slots leading (denoising) queries of the rounds from `start` on from the matching ones."""
    pad = groups * slots
    dn_rounds = Predictions([], [], [])
    for name in ("class_logits", "mask_logits", "boxes"):
        every = getattr(rounds, name)
        getattr(dn_rounds, name).extend(t[:, :pad] for t in every[start:])
        setattr(rounds, name, every[:start] + [t[:, pad:] for t in every[start:]])
    return rounds, Denoising(dn_rounds, groups, slots)
