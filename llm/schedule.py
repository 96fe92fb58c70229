"""Learning-rate schedule of `llm.train`: linear warmup, then constant, cosine or linear decay.

The rate is a pure function of the training step (`lr_at`), applied once per training step to every
optimizer step of that step (all PPO epochs and minibatches share it). Nothing about the schedule is
stored in a checkpoint: a resumed run recomputes the rate of its next step from the step counter, so
it continues exactly.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(step: int, total: int, warmup: int = 0, schedule: str = "constant", min_ratio: float = 0.0) -> float:
    """Multiplier of the base rate for training step `step` (0-based) of `total`.

    Warmup (step < warmup): (step + 1) / (warmup + 1), rising linearly from near 0 and reaching 1 at
    step `warmup`. After it, with progress p = (step - warmup) / (total - warmup) in [0, 1):
    constant 1; cosine min + (1 - min) (1 + cos(pi p)) / 2; linear min + (1 - min) (1 - p), so both
    decays reach min_ratio at step `total` (the end of the run).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule = {schedule!r} is invalid; allowed: {', '.join(SCHEDULES)}")
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    p = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    decay = 0.5 * (1.0 + math.cos(math.pi * p)) if schedule == "cosine" else 1.0 - p
    return min_ratio + (1.0 - min_ratio) * decay


def lr_at(step: int, ocfg, total: int) -> float:
    """The learning rate of training step `step` under optim config `ocfg` (lr, warmup_steps,
    schedule, min_lr_ratio) in a run of `total` steps."""
    return ocfg.lr * lr_factor(step, total, ocfg.warmup_steps, ocfg.schedule, ocfg.min_lr_ratio)


def set_lr(optimizer, lr: float) -> None:
    """Set the rate of every parameter group of `optimizer` (in place)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
