"""Plain supervised training of zoo members: the recipe each built-in model is trained with.

Cosine learning-rate decay to zero brings every model to its plateau (see the zoo's plateau check);
augmentation is tensor operations on whole batches (random circular shift, amplitude scaling and
Gaussian noise), never a loop over samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..data import Dataset
from ..models import Classifier


@dataclass(frozen=True)
class TrainRecipe:
    """How one zoo member is trained."""

    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: int = 1
    label_smoothing: float = 0.0
    augment: dict[str, float] = field(default_factory=dict)  # shift, scale, noise
    clean_epochs: int = 0  # the last epochs without augmentation: the plateau on clean data
    seed: int = 0


def augment_batch(x: torch.Tensor, generator: torch.Generator, shift: float = 0, scale: float = 0,
                  noise: float = 0) -> torch.Tensor:
    """Random per-sample circular shift (up to `shift` steps), amplitude scaling and Gaussian noise."""
    b, n = x.shape
    if shift:
        s = torch.randint(-int(shift), int(shift) + 1, (b, 1), generator=generator)
        idx = (torch.arange(n).unsqueeze(0) - s) % n
        x = x.gather(1, idx)
    if scale:
        x = x * (1 + scale * (2 * torch.rand(b, 1, generator=generator) - 1))
    if noise:
        x = x + noise * torch.randn(x.shape, generator=generator)
    return x


def make_optimizer(params, name: str, lr: float, weight_decay: float, momentum: float = 0.9):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}")


def fit(model: Classifier, data: Dataset, recipe: TrainRecipe,
        on_epoch: Callable[[int], Any] | None = None) -> Classifier:
    """Train `model` on the `train` split of `data` following `recipe` (CPU, deterministic)."""
    torch.manual_seed(recipe.seed)
    g = torch.Generator().manual_seed(recipe.seed + 1)
    opt = make_optimizer(model.parameters(), recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.momentum)
    steps_per_epoch = len(data.loader("train", batch_size=recipe.batch_size, drop_last=True))
    total = recipe.epochs * steps_per_epoch
    warmup = recipe.warmup_epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    for epoch in range(recipe.epochs):
        for x, y, _ in data.loader("train", batch_size=recipe.batch_size, shuffle=True, seed=recipe.seed,
                                   epoch=epoch, drop_last=True):
            if recipe.augment and epoch < recipe.epochs - recipe.clean_epochs:
                x = augment_batch(x, g, **recipe.augment)
            loss = F.cross_entropy(model(x), y, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if on_epoch is not None:
            on_epoch(epoch)
    return model.eval()
