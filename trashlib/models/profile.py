"""Model cost: parameters, GFLOPs of one 512x512 image, inference and training-step times.

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

from trashlib.classes import NUM_CLASSES


def count_parameters(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_gflops(model: torch.nn.Module, image_size: int = 512) -> float:
    """GFLOPs (1e9, multiply-add = 2) of `predict_proba` on one image_size x image_size image."""
    from torch.utils.flop_counter import FlopCounterMode

    from trashlib.models.neighborhood_attention import matmul_path

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


def time_train_step(model: torch.nn.Module, batch: int = 2, image_size: int = 256, repeats: int = 3, *,
                    num_classes: int = NUM_CLASSES, lr: float = 1e-4, warmup: int = 1) -> float:
    """Median seconds of one AdamW step (forward, backward, update) on random data of `batch` images.

    The model's weights ARE updated: time a throwaway model, not one you are about to use.
    """
    device = _device(model)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, image_size, image_size, generator=generator).to(device)
    masks = torch.randint(0, num_classes, (batch, image_size, image_size), generator=generator).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    was_training = model.training
    model.train()
    times = []
    try:
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            model(images, masks).loss.backward()
            optimizer.step()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
        optimizer.zero_grad(set_to_none=True)
    return statistics.median(times)


def profile_model(model: torch.nn.Module, *, train_size: int = 256, train_batch: int = 2,
                  infer_size: int = 512, repeats: int = 3) -> dict:
    """One row of the comparison table: params (M), GFLOPs at infer_size, inference and train-step seconds."""
    row = {"params_m": count_parameters(model) / 1e6, "gflops": count_gflops(model, infer_size),
           "infer_s": time_inference(model, infer_size, repeats)}
    row["train_step_s"] = time_train_step(model, train_batch, train_size, repeats)
    return row
