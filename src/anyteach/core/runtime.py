"""How models run: device, mixed precision, memory format, compilation and batch transfer.

One `Runtime` carries the settings that change how fast a model runs but not what it computes
(beyond rounding): bfloat16 autocast (`amp`: on CUDA by default, on any device when asked, so the
CPU test suite exercises the same code path a GPU run takes), channels-last memory format,
`torch.compile`, and the number of data-loader workers. Training (`trainer`) and prediction
(`predictions`) both take one, so every such path is one piece of code. Batches reach the device
with `to_device`: a non-blocking copy (from pinned memory when the loader pinned it), then
conversion of 8-bit images to floats in [0, 1] on the device, where it is cheapest.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch
from torch import nn

from .options import TrainingOptions


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Runtime:
    """How models run (see the module doc).

    Attributes:
        device: where models and batches go.
        amp: `auto` (bfloat16 autocast on CUDA only), `bf16` (on any device) or `off`.
        channels_last: 4-d batches and models in channels-last memory format.
        compile: wrap models in `torch.compile` (the model itself is left as it is).
        compile_backend: the `torch.compile` backend.
        workers: data-loader worker processes of image datasets (None: the dataset's default).
    """

    device: torch.device = torch.device("cpu")
    amp: str = "auto"
    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"
    workers: int | None = None

    @classmethod
    def of(cls, device: torch.device | str | None = None, options: TrainingOptions | None = None) -> Runtime:
        """A runtime on `device` (default: CUDA when available) with the run's `options` (default: defaults)."""
        device = torch.device(device) if device is not None else default_device()
        if options is None:
            return cls(device)
        return cls(
            device, options.amp, options.channels_last, options.compile, options.compile_backend, options.workers
        )

    @property
    def autocast_enabled(self) -> bool:
        return self.amp == "bf16" or (self.amp == "auto" and self.device.type == "cuda")

    def autocast(self) -> ContextManager[Any]:
        """bfloat16 autocast on the device where enabled, else nothing."""
        if self.autocast_enabled:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of inputs on the device: non-blocking copy, 8-bit images as floats in [0, 1],
        channels-last when asked (4-d batches only)."""
        x = x.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def place(self, model: nn.Module) -> nn.Module:
        """`model` moved to the device (in place), in channels-last format when asked."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # only 4-d parameters change layout
        return model

    def compiled(self, model: nn.Module) -> Callable[..., torch.Tensor]:
        """`model` itself, or a `torch.compile` wrapper around it (sharing its parameters, so its
        state dict, checkpoints and exports are unchanged)."""
        if not self.compile:
            return model
        return torch.compile(model, backend=self.compile_backend)


__all__ = ["Runtime", "default_device"]
