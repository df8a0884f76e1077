"""One model factory: `build_model(name, *, num_classes, size, pretrained)` over the `MODELS` table.

Every entry returns a `SegmentationModel` (see base.py): `model(images, masks)` -> SegOutput with
`.loss`, `model.predict_proba(images)` -> (N, C, H, W) probabilities at the input resolution,
`backbone_parameters()` and `set_class_weights(weights)`. Sizes: `tiny` (random init, CPU-sized),
`base`, `large` (published shapes). transformers is imported only when a model is built.
"""
from __future__ import annotations

import importlib
import os
from typing import Callable

import torch
from torch import nn

from trashlib.classes import NUM_CLASSES
from trashlib.models.base import SegmentationModel, SegOutput
from trashlib.models.sizes import MODEL_SIZES


def _lazy(module: str, function: str) -> Callable[..., SegmentationModel]:
    """A builder that imports its module (and so transformers) only when a model is built."""

    def build(**kw) -> SegmentationModel:
        return getattr(importlib.import_module(f"trashlib.models.{module}"), function)(**kw)

    build.__name__ = function
    return build


MODELS: dict[str, Callable[..., SegmentationModel]] = {
    "mask2former-swin": _lazy("mask2former", "build_mask2former_swin"),
    "mask2former-dinat": _lazy("dinat", "build_mask2former_dinat"),
    "semask-swin": _lazy("semask", "build_semask_swin"),
    "semask-fapn": _lazy("fapn", "build_semask_fapn"),
    "maskdino": _lazy("maskdino", "build_maskdino_swin"),
    "upernet-swin": _lazy("baselines", "build_upernet_swin"),
    "upernet-convnext": _lazy("baselines", "build_upernet_convnext"),
    "segformer": _lazy("baselines", "build_segformer"),
    "segvit": _lazy("segvit", "build_segvit"),
}


def build_model(name: str, *, num_classes: int = NUM_CLASSES, size: str = "tiny",
                pretrained: str | os.PathLike | None = None) -> SegmentationModel:
    """A model from the `MODELS` table; raises ValueError listing the valid names (or sizes).

    `pretrained`: a hub id or a local checkpoint folder (see pretrained.py); its config then defines
    the architecture and `size` only picks size-specific settings that have no weights.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown size {size!r} for {name}; valid sizes: {', '.join(MODEL_SIZES)}")
    model = MODELS[name](num_classes=num_classes, size=size,
                         pretrained=None if pretrained is None else str(pretrained))
    model.name, model.size = name, size
    if not torch.cuda.is_available():
        use_eager_attention(model)
    return model


def use_eager_attention(model: nn.Module) -> int:
    """Switch every transformers sub-model that offers it to plain matmul + softmax attention; returns how many.

    transformers picks torch's scaled_dot_product_attention by default. On a CPU, with Swin's float mask
    (relative position bias plus the shifted-window mask), it is the slower one: a tiny Swin's forward and
    backward at 128 pixels took 233 ms with it against 167 ms eager (batch 8, bf16; 2 cores), and a single
    window attention's 8-10x. The arithmetic is the same. On CUDA the default stays.
    """
    switched = 0
    for module in model.modules():
        config = getattr(module, "config", None)
        if hasattr(module, "set_attn_implementation") and getattr(config, "_attn_implementation", None) == "sdpa":
            module.set_attn_implementation("eager")
            switched += 1
    return switched


__all__ = ["MODELS", "MODEL_SIZES", "SegOutput", "SegmentationModel", "build_model", "use_eager_attention"]
