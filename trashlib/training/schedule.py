"""Learning-rate schedule: linear warmup, then polynomial decay to zero (the Mask2Former/SegFormer recipe).

The factor is a pure function of the step, so a resumed run needs only the step counter.
"""
from __future__ import annotations


def lr_factor(step: int, *, steps: int, warmup: int = 0, power: float = 0.9) -> float:
    """Multiplier of the base learning rate for optimizer update `step` (0-based).

    Warmup: (step + 1) / warmup for step < warmup; then (1 - (step - warmup) / (steps - warmup))^power,
    which is 1 at the first step after warmup and decays towards 0 at `steps`.
    """
    if not 0 <= step < steps:
        raise ValueError(f"step {step} outside 0..{steps - 1}")
    if step < warmup:
        return (step + 1) / warmup
    return (1.0 - (step - warmup) / (steps - warmup)) ** power


def set_lr(optimizer, factor: float) -> None:
    """Set every parameter group's lr to its base lr (`initial_lr`) times `factor`."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * factor
