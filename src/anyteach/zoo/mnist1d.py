"""The built-in MNIST-1D zoo: the recipe.

Like timm's ImageNet zoo, its diversity comes mostly from training variations: architecture family
(MLP, 1D CNN, GRU, transformer), width and depth, augmentation, optimiser, epochs and seed. Every
member is trained with cosine decay to zero, so it sits at its plateau: further plain supervised
training does not move it (measured by `anyteach zoo build`, column `plateau Δ`), and later transfer
gains cannot be mere extra training. Augmented members train their last epochs on clean data
(`clean_epochs`): without that tail an augmented model still gains from plain training on the clean
transfer data (+0.5 to +1.0 pp on this zoo, measured by the `xe` control), which would pass for
knowledge transfer. `cost` is a rough relative training cost, used to schedule the
longest jobs first.
"""

from __future__ import annotations

from ..data.references import MNIST1D_AUGMENTATION as AUG
from .recipe import TrainRecipe, ZooMember

DATA = "mnist1d"  # the dataset reference the zoo is trained on (with the zoo's seed)


MEMBERS: list[ZooMember] = [
    ZooMember("mlp_narrow", "mlp", {"width": 64, "depth": 1}, TrainRecipe(epochs=30, lr=2e-3, seed=0), 0.4),
    ZooMember("mlp", "mlp", {"width": 256, "depth": 2}, TrainRecipe(epochs=30, lr=1e-3, seed=1), 0.8),
    ZooMember(
        "mlp_wide_aug",
        "mlp",
        {"width": 512, "depth": 3, "dropout": 0.1},
        TrainRecipe(epochs=30, lr=1e-3, augment=AUG, clean_epochs=5, seed=2),
        1.5,
    ),
    ZooMember(
        "cnn_small_sgd",
        "cnn1d",
        {"channels": 16, "depth": 3},
        TrainRecipe(epochs=15, optimizer="sgd", lr=0.05, weight_decay=5e-4, seed=3),
        0.8,
    ),
    ZooMember(
        "cnn_bn", "cnn1d", {"channels": 32, "depth": 4, "batchnorm": True}, TrainRecipe(epochs=12, lr=2e-3, seed=4), 1.3
    ),
    ZooMember(
        "cnn_bn_aug",
        "cnn1d",
        {"channels": 32, "depth": 4, "batchnorm": True},
        TrainRecipe(epochs=12, lr=2e-3, augment=AUG, clean_epochs=2, seed=5),
        1.3,
    ),
    ZooMember(
        "cnn_wide_sgd",
        "cnn1d",
        {"channels": 48, "depth": 3, "dropout": 0.1},
        TrainRecipe(epochs=10, optimizer="sgd", lr=0.05, weight_decay=5e-4, seed=6),
        1.3,
    ),
    ZooMember("gru", "gru", {"hidden": 64, "chunk": 2}, TrainRecipe(epochs=20, lr=3e-3, seed=7), 2.6),
    ZooMember("gru_chunk4", "gru", {"hidden": 96, "chunk": 4}, TrainRecipe(epochs=20, lr=3e-3, seed=8), 1.8),
    ZooMember(
        "transformer",
        "transformer1d",
        {"dim": 64, "depth": 2, "patch": 4},
        TrainRecipe(epochs=15, lr=1e-3, seed=9),
        4.0,
    ),
    ZooMember(
        "transformer_aug",
        "transformer1d",
        {"dim": 64, "depth": 2, "patch": 4},
        TrainRecipe(epochs=15, lr=1e-3, augment=AUG, clean_epochs=3, seed=10),
        4.0,
    ),
]
