"""Architectures of the built-in MNIST-1D zoo, reachable by name.

A saved anyteach model records its architecture as a name from `ARCHITECTURES` plus keyword
arguments, so the sidecar JSON is enough to rebuild the network before its weights are loaded. The
four families mirror the ImageNet zoo's: MLPs (weak inductive bias, like MLP-mixers), 1D CNNs,
recurrent nets and transformers. Every network takes a batch of signals `(batch, length)`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core.registry import Registry

ARCHITECTURES: Registry[tuple[Callable[..., nn.Module], str]] = Registry("architecture")
"""name -> (constructor, family)."""


def register_architecture(name: str, family: str):
    """Decorator: make a network constructor reachable by `name` in saved models and zoo recipes."""
    return ARCHITECTURES.decorator(name, lambda fn: (fn, family))


def build_architecture(name: str, **kwargs) -> nn.Module:
    """A new network of the registered architecture `name`.

    Raises:
        AnyteachError: unknown architecture (the message lists the known ones).
    """
    return ARCHITECTURES[name][0](**kwargs)


@register_architecture("mlp", "mlp")
class MLP(nn.Module):
    def __init__(self, length: int = 40, num_classes: int = 10, width: int = 256, depth: int = 2, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        d = length
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.GELU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@register_architecture("cnn1d", "cnn")
class CNN1d(nn.Module):
    """Strided 1D convolutions, optional BatchNorm, global average pooling, linear head."""

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 32,
        depth: int = 3,
        kernel: int = 5,
        batchnorm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(depth):
            c_out = channels * (2 if i >= depth // 2 + 1 else 1)
            layers.append(
                nn.Conv1d(c_in, c_out, kernel, stride=2 if i < 2 else 1, padding=kernel // 2, bias=not batchnorm)
            )
            if batchnorm:
                layers.append(nn.BatchNorm1d(c_out))
            layers.append(nn.ReLU())
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.unsqueeze(1)).mean(-1)
        return self.head(self.dropout(h))


@register_architecture("gru", "rnn")
class GRUNet(nn.Module):
    """A GRU over the signal in chunks of `chunk` samples; the last hidden state feeds the head."""

    def __init__(
        self, num_classes: int = 10, hidden: int = 64, layers: int = 1, chunk: int = 2, bidirectional: bool = False
    ):
        super().__init__()
        self.chunk = chunk
        self.gru = nn.GRU(chunk, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape
        seq = x[:, : n - n % self.chunk].reshape(b, -1, self.chunk)
        out, h = self.gru(seq)
        last = torch.cat([h[-2], h[-1]], dim=-1) if self.gru.bidirectional else h[-1]
        return self.head(last)


@register_architecture("transformer1d", "transformer")
class Transformer1d(nn.Module):
    """Patches of the signal as tokens, learned positions, pre-norm encoder, mean pooling."""

    def __init__(
        self,
        length: int = 40,
        num_classes: int = 10,
        patch: int = 4,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(patch, dim)
        self.pos = nn.Parameter(torch.zeros(1, length // patch, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, int(dim * mlp_ratio), dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape
        tokens = self.embed(x[:, : n - n % self.patch].reshape(b, -1, self.patch)) + self.pos
        return self.head(self.norm(self.encoder(tokens)).mean(1))
