"""The built-in glyphs zoo: timm architectures trained from scratch on the generated glyph images.

The image counterpart of the MNIST-1D zoo: real timm architectures (`timm.create_model(arch,
num_classes=12, **arch_kwargs)` at 32×32 pixels) from four families (ResNet, MobileNetV3, ConvNeXt,
ViT), shrunk through timm's own model arguments (channel widths, depths, patch size, embedding
width) so that the whole zoo trains on two CPU cores in minutes. Diversity comes, as in timm's
ImageNet zoo, from architecture, width, augmentation, optimiser and seed. Every member is trained
with cosine decay to zero, augmented members end with clean epochs, and each is checked for its
plateau exactly like the MNIST-1D zoo (`build.plateau_delta`). A built member is an ordinary
anyteach model whose weights are timm's own state dict: `timm.create_model(arch, num_classes=12,
**arch_kwargs)` plus `load_state_dict` loads it without anyteach.
"""

from __future__ import annotations

from ..data import GLYPHS_AUGMENTATION as AUG
from .recipe import TrainRecipe, ZooMember

DATA = "glyphs:train=6000,eval=3000,calib=1000"
"""The dataset the zoo is trained on (with the zoo's seed): 500 training images per class, so that
the zoo trains in minutes on two cores and its members, all at their plateau, still differ."""

_R10 = {"channels": (16, 32, 64, 128), "stem_width": 16}
_CONVNEXT = {"depths": (1, 1, 2, 1), "patch_size": 2}
_VIT = {"img_size": 32, "patch_size": 4, "num_heads": 2}
_SGD = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4}

MEMBERS: list[ZooMember] = [
    ZooMember("resnet10t_w8", "timm:resnet10t", {"channels": (8, 16, 32, 64), "stem_width": 8},
              TrainRecipe(epochs=6, lr=3e-3, seed=0), 0.4),
    ZooMember("resnet10t_w16", "timm:resnet10t", _R10, TrainRecipe(epochs=6, lr=2e-3, seed=1), 0.6),
    ZooMember("resnet10t_w16_sgd_aug", "timm:resnet10t", _R10,
              TrainRecipe(epochs=8, augment=AUG, clean_epochs=2, seed=2, **_SGD), 0.8),
    ZooMember("resnet18_w16_aug", "timm:resnet18", {"channels": (16, 32, 64, 128), "stem_width": 16},
              TrainRecipe(epochs=6, lr=2e-3, augment=AUG, clean_epochs=2, seed=3), 0.8),
    ZooMember("mobilenetv3_small_050", "timm:mobilenetv3_small_050", {},
              TrainRecipe(epochs=6, lr=3e-3, weight_decay=0.01, seed=4), 1.4),
    ZooMember("convnext_d24", "timm:convnext_atto", {"dims": (24, 48, 96, 192), **_CONVNEXT},
              TrainRecipe(epochs=6, lr=2e-3, seed=5), 0.6),
    ZooMember("convnext_d16_aug", "timm:convnext_atto", {"dims": (16, 32, 64, 128), **_CONVNEXT},
              TrainRecipe(epochs=6, lr=2e-3, augment=AUG, clean_epochs=2, seed=6), 0.5),
    ZooMember("vit_d64", "timm:vit_tiny_patch16_224", {"embed_dim": 64, "depth": 4, **_VIT},
              TrainRecipe(epochs=8, lr=1e-3, seed=7), 1.8),
    ZooMember("vit_d48_aug", "timm:vit_tiny_patch16_224", {"embed_dim": 48, "depth": 3, **_VIT},
              TrainRecipe(epochs=8, lr=1e-3, augment=AUG, clean_epochs=2, seed=8), 1.2),
]
