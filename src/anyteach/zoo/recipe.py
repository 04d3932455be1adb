"""What a zoo is made of: its members, each an architecture with a training recipe (plain data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


@dataclass(frozen=True)
class ZooMember:
    """One model of a zoo: its name, architecture (a registered name and its keyword arguments),
    training recipe, and a rough relative training cost (the longest jobs are scheduled first)."""

    name: str
    architecture: str
    arch_kwargs: dict[str, Any]
    recipe: TrainRecipe
    cost: float = 1.0


__all__ = ["TrainRecipe", "ZooMember"]
