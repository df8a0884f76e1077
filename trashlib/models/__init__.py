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
    "upernet-swin": _lazy("baselines", "build_upernet_swin"),
    "upernet-convnext": _lazy("baselines", "build_upernet_convnext"),
    "segformer": _lazy("baselines", "build_segformer"),
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
    return model


__all__ = ["MODELS", "MODEL_SIZES", "SegOutput", "SegmentationModel", "build_model"]
