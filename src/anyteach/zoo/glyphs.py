"""The built-in glyphs zoo: timm architectures trained from scratch on the generated glyph images.

The image counterpart of the MNIST-1D zoo: real timm architectures (`timm.create_model(arch,
num_classes=12, **arch_kwargs)` at 32×32 pixels) from three families (ResNet, MobileNetV3 and the
LeViT vision transformer), shrunk through timm's own model arguments (channel widths, embedding
widths, depths) so that the whole zoo trains on two CPU cores in minutes. Plain ViTs (patch 4 or 8)
and small ConvNeXts were tried and left out: in the few hundred steps a CPU affords they stayed at
chance (a ViT needs far more steps from scratch); LeViT's convolutional stem learns as fast as a
ResNet. Every member trains for 20 to 24 epochs of the 4,000 training images at batch 64 (about
1,250 to 1,500 optimiser steps): enough that one more epoch at a small learning rate moves none of
them by more than a few tenths of a point (the README has the numbers; the first recipe, 6 to 8
epochs at batch 128, left them 1 to 3 points short of their plateau). Diversity comes, as in timm's
ImageNet zoo, from architecture, width, augmentation, optimiser and seed. Every member is trained
with cosine decay to zero, augmented members end with clean epochs, and each is checked for its
plateau exactly like the MNIST-1D zoo (`build.plateau_delta`). A built member is an ordinary
anyteach model whose weights are timm's own state dict: `timm.create_model(arch, num_classes=12,
**arch_kwargs)` plus `load_state_dict` loads it without anyteach.
"""

from __future__ import annotations

from typing import Any

from ..data.references import GLYPHS_AUGMENTATION as AUG
from .recipe import TrainRecipe, ZooMember

DATA = "glyphs:train=4000,eval=10000,calib=2000"
"""The dataset the zoo is trained on (with the zoo's seed): 333 training images per class, so that
the zoo trains in minutes on two CPU cores and its members, all at their plateau, still differ
(eval accuracies about 79 to 96%); measured on 10,000 eval images (one image is 0.01 pp), with 2,000
calib images for the choices methods make from data (the teacher's forecast, ensemble weights, guards)."""

MEASURED_ONLY = ("eval", "calib", "fresh")
"""Options of the data that change only what the members are measured on: every glyphs split is its own
stream of the generator, so the training images do not depend on them and the zoo's identity leaves them
out (a larger eval split re-measures the built members; nothing is trained again)."""

_R16 = {"channels": (16, 32, 64, 128), "stem_width": 16}
_LEVIT = {"img_size": 32, "num_heads": (2, 3, 4), "depth": (1, 2, 2)}
_SGD: dict[str, Any] = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4}

MEMBERS: list[ZooMember] = [
    ZooMember(
        "resnet10t_w8",
        "timm:resnet10t",
        {"channels": (8, 16, 32, 64), "stem_width": 8},
        TrainRecipe(epochs=20, batch_size=64, lr=3e-3, seed=0),
        0.5,
    ),
    ZooMember("resnet10t_w16", "timm:resnet10t", _R16, TrainRecipe(epochs=20, batch_size=64, lr=2e-3, seed=1), 0.8),
    ZooMember(
        "resnet10t_w16_sgd_aug",
        "timm:resnet10t",
        _R16,
        TrainRecipe(epochs=24, batch_size=64, augment=AUG, clean_epochs=6, seed=2, **_SGD),
        1.1,
    ),
    ZooMember(
        "resnet18_w16_aug",
        "timm:resnet18",
        _R16,
        TrainRecipe(epochs=20, batch_size=64, lr=2e-3, augment=AUG, clean_epochs=5, seed=3),
        1.3,
    ),
    ZooMember(
        "mobilenetv3_small_050_sgd",
        "timm:mobilenetv3_small_050",
        {},
        TrainRecipe(epochs=20, batch_size=64, optimizer="sgd", lr=0.05, weight_decay=5e-4, seed=4),
        1.5,
    ),
    ZooMember(
        "levit_d64",
        "timm:levit_128s",
        {"embed_dim": (64, 96, 128), **_LEVIT},
        TrainRecipe(epochs=20, batch_size=64, lr=2e-3, seed=5),
        0.4,
    ),
    ZooMember(
        "levit_d64_aug",
        "timm:levit_128s",
        {"embed_dim": (64, 96, 128), **_LEVIT},
        TrainRecipe(epochs=20, batch_size=64, lr=2e-3, augment=AUG, clean_epochs=5, seed=6),
        0.4,
    ),
    ZooMember(
        "levit_d96",
        "timm:levit_128s",
        {"embed_dim": (96, 144, 192), **_LEVIT},
        TrainRecipe(epochs=20, batch_size=64, lr=1e-3, seed=7),
        0.6,
    ),
]
