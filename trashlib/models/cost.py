"""Model cost: parameters, GFLOPs of one 512x512 image, training-step and inference time; `cost_table` for many.

GFLOPs are counted with torch.utils.flop_counter.FlopCounterMode over `predict_proba` (the inference
forward, probabilities included) and reported as 1e9 floating-point operations, counting a
multiply-add as 2 - papers that quote "FLOPs" usually count multiply-adds, i.e. half of this.
Only operators the counter knows (matmuls, convolutions, attention) are counted; gathers, softmax
and normalisations are not.
"""
from __future__ import annotations

import statistics
import time
from typing import Sequence

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from trashlib.classes import NUM_CLASSES
from trashlib.models import build_model
from trashlib.models.neighborhood_attention import matmul_path
from trashlib.progress import shown


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


def synthetic_batch(batch_size: int, image_size: int, *, seed: int = 0, num_classes: int = NUM_CLASSES):
    """Random images and label maps of a background and three rectangles of random classes, a scene's few
    segments (a mask of random pixels would give every image every class and inflate the matching).

    Shape:
        returns: (B, 3, S, S) float in [0, 1], (B, S, S) long
    """
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 3, image_size, image_size, generator=g)
    masks = torch.zeros(batch_size, image_size, image_size, dtype=torch.long)
    for b in range(batch_size):
        for _ in range(3):
            y, x = torch.randint(0, image_size // 2, (2,), generator=g).tolist()
            h, w = torch.randint(image_size // 8, image_size // 2, (2,), generator=g).tolist()
            masks[b, y:y + h, x:x + w] = int(torch.randint(1, num_classes, (1,), generator=g))
    return images, masks


class _Stepper:
    """One model's training step (forward with masks, backward, AdamW) on a fixed batch, timed per call."""

    def __init__(self, model: torch.nn.Module, batch, *, bf16: bool):
        self.model, self.bf16 = model, bf16
        device = _device(model)
        self.images, self.masks = (t.to(device) for t in batch)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def __call__(self) -> float:
        device = self.images.device
        self.model.train()
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(self.images, self.masks).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        _sync(device)
        return time.perf_counter() - start


def cost_table(names: Sequence[str], *, size: str = "tiny", infer_size: int = 512, work_size: int = 128,
               batch_size: int = 8, rounds: int = 3, bf16: bool = False, device: str = "cpu",
               progress: bool | None = None) -> pd.DataFrame:
    """One row per model of the factory, every one measured here under the same conditions: parameters (M),
    GFLOPs of one infer_size image, the median seconds of a training step (batch_size images at work_size,
    bf16 autocast if asked) and of inferring one infer_size image.

    Timings alternate between the models, one step each per round after one warm-up, so a machine that
    speeds up or slows down during the table moves every row alike.
    """
    if rounds < 1 or not names or len(set(names)) != len(names):
        raise ValueError(f"cost_table needs rounds >= 1 and distinct model names, got rounds={rounds}, names={names}")
    models, rows = {}, {}
    batch = synthetic_batch(batch_size, work_size)
    for name in tqdm(names, desc="model costs: build and count", disable=not shown(progress)):
        model = build_model(name, size=size).to(device)
        rows[name] = {"params (M)": model.num_parameters() / 1e6,
                      f"GFLOPs@{infer_size}": count_gflops(model, infer_size)}
        models[name] = _Stepper(model, batch, bf16=bf16)
    times = {name: {"train": [], "infer": []} for name in names}
    for r in tqdm(range(rounds + 1), desc="model costs: timing rounds", disable=not shown(progress)):
        for name, step in models.items():
            train_s = step()
            infer_s = time_inference(step.model, infer_size, repeats=1, warmup=0)
            if r:  # round 0 warms up
                times[name]["train"].append(train_s)
                times[name]["infer"].append(infer_s)
    for name in names:
        rows[name][f"train s/step (b{batch_size}@{work_size})"] = statistics.median(times[name]["train"])
        rows[name][f"infer s/img@{infer_size}"] = statistics.median(times[name]["infer"])
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table
