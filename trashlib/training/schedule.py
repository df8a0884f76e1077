"""Learning-rate schedules: linear warmup, then polynomial decay to zero (`poly`: the Mask2Former/SegFormer
recipe), or warmup-stable-decay (`wsd`: Hagele et al. 2024, "Scaling Laws and Compute-Optimal Training
Beyond Fixed Training Durations"; MiniCPM): the peak rate held, then a cooldown to zero over the last
`decay_fraction` of the steps, shaped 1 - sqrt(t), which that paper found to match or beat a linear one.
A stable phase can be continued by runs that each end with a cooldown of their own.

The factor is a pure function of the step, so a resumed run needs only the step counter.
"""
from __future__ import annotations

from trashlib.config import SCHEDULES


def lr_factor(step: int, *, steps: int, warmup: int = 0, power: float = 0.9, schedule: str = "poly",
              decay_fraction: float = 0.15) -> float:
    """Multiplier of the base learning rate for optimizer update `step` (0-based).

    Warmup: (step + 1) / warmup for step < warmup. Then `poly`: (1 - (step - warmup) / (steps - warmup))^power,
    which is 1 at the first step after warmup and decays towards 0 at `steps`; `wsd`: 1 until the last
    d = round(decay_fraction x steps) steps (at least one), then 1 - sqrt((step - (steps - d)) / d), from 1
    down towards 0 at `steps`, as poly ends.
    """
    if not 0 <= step < steps:
        raise ValueError(f"step {step} outside 0..{steps - 1}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "wsd":
        decay = max(1, round(decay_fraction * steps))
        start = steps - decay
        return 1.0 if step < start else 1.0 - ((step - start) / decay) ** 0.5
    return (1.0 - (step - warmup) / (steps - warmup)) ** power


def set_lr(optimizer, factor: float) -> None:
    """Set every parameter group's lr to its base lr (`initial_lr`) times `factor`."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * factor
