"""Model cost: GFLOPs of one 512x512 image and inference time (parameters: `model.num_parameters()`).

GFLOPs are counted with torch.utils.flop_counter.FlopCounterMode over `predict_proba` (the inference
forward, probabilities included) and reported as 1e9 floating-point operations, counting a
multiply-add as 2 - papers that quote "FLOPs" usually count multiply-adds, i.e. half of this.
Only operators the counter knows (matmuls, convolutions, attention) are counted; gathers, softmax
and normalisations are not.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from trashlib.models.neighborhood_attention import matmul_path


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_gflops(model: torch.nn.Module, image_size: int = 512) -> float:
    """GFLOPs (1e9, multiply-add = 2) of `predict_proba` on one image_size x image_size image."""
    was_training = model.training
    model.eval()
    images = torch.rand(1, 3, image_size, image_size, device=_device(model))
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad(), matmul_path():  # DiNAT's attention as matmuls the counter sees
            model.predict_proba(images)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def time_inference(model: torch.nn.Module, image_size: int = 512, repeats: int = 3, *,
                   batch_size: int = 1, warmup: int = 1) -> float:
    """Median seconds of one `predict_proba` call on a (batch_size, 3, S, S) batch, after warm-up."""
    device = _device(model)
    was_training = model.training
    model.eval()
    images = torch.rand(batch_size, 3, image_size, image_size, device=device)
    times = []
    try:
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            model.predict_proba(images)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times)

