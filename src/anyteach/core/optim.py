"""Optimisers and learning-rate schedules, shared by zoo training and transfer.

The paper trains with SGD (momentum 0.9, weight decay 1e-4) at a constant learning rate; the zoo's
recipes and longer transfer schedules use a linear warm-up followed by cosine decay to zero. Both
are here once, as a factor of the base learning rate per optimiser step (`torch.optim.lr_scheduler.
LambdaLR`), so a run that resumes at step k sets the same rate as one that never stopped.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
"""Optimiser names: SGD with momentum (the paper's) or AdamW."""

LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
"""Learning-rate schedules: constant (the paper's), or linear warm-up then cosine decay to zero."""


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay, or AdamW.

    Raises:
        ValueError: an unknown optimiser name (options are validated before this is reached).
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; optimizers: {', '.join(OPTIMIZERS)}")


def lr_factor(schedule: str, total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """The factor of the base learning rate at optimiser step `step` (0-based).

    Args:
        schedule: `constant` (1 after the warm-up) or `cosine` (half a cosine from 1 down to 0 over
            the steps after the warm-up).
        total_steps: steps of the whole run.
        warmup_steps: steps of linear warm-up from 1/warmup_steps up to 1.

    Raises:
        ValueError: an unknown schedule.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; schedules: {', '.join(LR_SCHEDULES)}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))

    return factor


__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "lr_factor", "make_optimizer"]
