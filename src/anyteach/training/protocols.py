"""Named recipes: the training options (and transfer-split fraction) of a published protocol.

A study names one as `recipe: paper-imagenet` (or `recipe: {base: paper-imagenet, epochs: 5}` to
change some of its options); its options are then checked like any recipe's. A recipe may also
fix the share of the train split a run transfers on (`fraction`): it is added to the study's dataset
reference unless the reference sets its own `fraction=`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import AnyteachError
from ..core.registry import Registry


@dataclass(frozen=True)
class NamedRecipe:
    """A published protocol as training options.

    Attributes:
        name: what a study calls it.
        description: where it comes from, in one line.
        options: training options (`options.TRAINING_OPTIONS`), every one stated.
        fraction: the stratified share of train that runs transfer on (None: the whole split).
    """

    name: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    fraction: float | None = None


RECIPES: Registry[NamedRecipe] = Registry("recipe")
"""The named recipes by name (a plugin may add its own with `RECIPES.add`)."""
for _recipe in [
    NamedRecipe(
        "paper-imagenet",
        "Roth et al. (ICLR 2024), ImageNet: a stratified 10% of train, SGD (momentum 0.9, "
        "weight decay 1e-4), lr 1e-4 x batch / 256 (each method's base lr; MCL's 1e-2), constant, 20 epochs, "
        "batch 128",
        {
            "epochs": 20,
            "batch_size": 128,
            "optimizer": "sgd",
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "lr_schedule": "constant",
            "warmup_epochs": 0.0,
            "lr": None,
        },
        fraction=0.1,
    ),
]:
    RECIPES.add(_recipe.name, _recipe)


def get_recipe(name: str) -> NamedRecipe:
    """The named recipe `name`.

    Raises:
        AnyteachError: unknown name (the message lists the known ones).
    """
    if name not in RECIPES:
        raise AnyteachError(f"unknown recipe {name!r}; named recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def with_fraction(data: str, fraction: float | None) -> str:
    """`data` with `fraction=` added when the recipe fixes one and the reference sets none."""
    if fraction is None or "fraction=" in data:
        return data
    kind, colon, rest = data.partition(":")
    return f"{data},fraction={fraction}" if colon and rest else f"{kind}:fraction={fraction}"


__all__ = ["RECIPES", "NamedRecipe", "get_recipe", "with_fraction"]
