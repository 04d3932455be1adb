"""Plain supervised training of zoo members: the recipe each built-in model is trained with.

Cosine learning-rate decay to zero after a linear warm-up brings every model to its plateau (see
the zoo's plateau check); augmentation is the dataset's own (tensor operations on whole batches),
never a loop over samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F

from ..core.optim import lr_factor, make_optimizer
from .recipe import TrainRecipe

if TYPE_CHECKING:
    from ..data.references import Dataset
    from ..models.references import Classifier


def fit(
    model: Classifier, data: Dataset, recipe: TrainRecipe, on_epoch: Callable[[int], Any] | None = None
) -> Classifier:
    """Train `model` on the `train` split of `data` following `recipe` (CPU, deterministic)."""
    torch.manual_seed(recipe.seed)
    g = torch.Generator().manual_seed(recipe.seed + 1)
    opt = make_optimizer(
        model.parameters(), recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.momentum, nesterov=True
    )
    steps_per_epoch = len(data.loader("train", batch_size=recipe.batch_size, drop_last=True))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_factor("cosine", recipe.epochs * steps_per_epoch, recipe.warmup_epochs * steps_per_epoch)
    )
    model.train()
    for epoch in range(recipe.epochs):
        augment = recipe.augment if epoch < recipe.epochs - recipe.clean_epochs else None
        for x, y, _ in data.loader(
            "train",
            batch_size=recipe.batch_size,
            shuffle=True,
            seed=recipe.seed,
            epoch=epoch,
            drop_last=True,
            augment=augment or False,
            generator=g,
        ):
            loss = F.cross_entropy(model(x), y, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if on_epoch is not None:
            on_epoch(epoch)
    return model.eval()
