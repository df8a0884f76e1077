"""The one interface every model in the factory offers to the training loop and to inference.

`model(images, masks)` returns a `SegOutput` whose `.loss` (also `out["loss"]`) is the training loss;
`model.predict_proba(images)` returns class probabilities at the input resolution. Images come in
as floats in [0, 1]; each model applies its own normalisation, so callers never need to know which
statistics a backbone was pretrained with.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trashlib.classes import IGNORE_INDEX, NUM_CLASSES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SegOutput:
    """What `forward` returns: the loss (None without masks), per-pixel scores, extras (aux losses, raw outputs).

    `logits` are true per-pixel logits (softmax gives `predict_proba`), from per-pixel classifiers;
    `log_probs` are log-probabilities, from models that have no per-pixel logits (Mask2Former). A
    model fills at most one of them.

    Shape:
        logits, log_probs: (N, C, H, W) at the input resolution
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str):
        if key in ("loss", "logits", "log_probs"):
            return getattr(self, key)
        return self.extras[key]


class SegmentationModel(nn.Module):
    """Base class: normalisation, the loss/probability interface and optimiser parameter groups."""

    #: factory name and size, set by `build_model`
    name: str = ""
    size: str = ""
    #: parts of parameter names that this model adds to the architecture it grows from (SeMask's semantic
    #: layers over a Swin Mask2Former): a branch from a trunk of that architecture starts them fresh
    grown_parts: tuple[str, ...] = ()

    def __init__(self, *, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images to the backbone's input statistics.

        Shape:
            images: (N, 3, H, W) float in [0, 1]
        """
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> SegOutput:
        """Loss (when masks are given) and per-pixel scores (`logits` or `log_probs`).

        Shape:
            images: (N, 3, H, W) float in [0, 1]
            masks: (N, H, W) long label maps, `ignore_index` ignored
        """
        raise NotImplementedError

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities at the input resolution, summing to 1 over classes.

        Shape:
            images: (N, 3, H, W) float in [0, 1]
            returns: (N, num_classes, H, W) float
        """
        raise NotImplementedError

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters of the pretrained backbone (trained with a smaller learning rate)."""
        return []

    def param_groups(self, *, lr: float, weight_decay: float, backbone_lr_mult: float = 0.1) -> list[dict]:
        """AdamW groups: backbone at lr x backbone_lr_mult; no weight decay on norms, biases, embeddings."""
        backbone = {id(p) for p in self.backbone_parameters()}
        # nn.Embedding tables (e.g. Mask2Former's queries) and DiNAT's relative position bias `rpb`
        # are not decayed either, as in the Mask2Former / DiNAT training recipes
        embeddings = {id(p) for m in self.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
        groups: dict[tuple[bool, bool], list] = {}
        for pname, p in self.named_parameters():
            if not p.requires_grad:
                continue
            no_decay = (p.ndim <= 1 or id(p) in embeddings or "norm" in pname or "position" in pname
                        or pname.endswith(".rpb"))
            groups.setdefault((id(p) in backbone, no_decay), []).append(p)
        return [
            {"params": ps, "lr": lr * (backbone_lr_mult if is_bb else 1.0),
             "weight_decay": 0.0 if no_decay else weight_decay, "name": f"{'backbone' if is_bb else 'head'}{'_no_decay' if no_decay else ''}"}
            for (is_bb, no_decay), ps in sorted(groups.items())
        ]

    def num_parameters(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())


def with_no_object(weights: torch.Tensor | None, num_classes: int, *, no_object: float,
                   like: torch.Tensor) -> torch.Tensor:
    """The classification weights of a head with a "no object" class last: `weights` per class (all 1 when None)
    followed by `no_object`; ValueError unless `weights` has `num_classes` entries.

    Shape:
        returns: (num_classes + 1,) of `like`'s dtype and device
    """
    new = torch.ones_like(like)
    new[-1] = no_object
    if weights is not None:
        weights = torch.as_tensor(weights, dtype=new.dtype).flatten()
        if weights.numel() != num_classes:
            raise ValueError(f"class weights must have {num_classes} entries, got {weights.numel()}")
        new[:-1] = weights
    return new
