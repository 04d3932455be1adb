"""Predictions: one model over one dataset split, computed once and cached on disk.

Everything pairwise (complementary knowledge, flips, zoo matrices) is computed from these, never by
running models once per pair. The cache key is the model's content identity plus the split's
identity, so a retrained model or a regenerated dataset never reuses stale predictions.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ._io import cache_dir, save_tensors, text_digest
from .data import Dataset, load_dataset
from .errors import AnyteachError
from .models import Classifier, load_model


@dataclass
class Predictions:
    """Logits of one model on one split, with the split's labels."""

    logits: torch.Tensor  # (samples, classes)
    labels: torch.Tensor  # (samples,)
    model: str = ""
    split: str = ""

    @property
    def predicted(self) -> torch.Tensor:
        return self.logits.argmax(1)

    @property
    def correct(self) -> torch.Tensor:
        return self.predicted == self.labels

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy in percent."""
        return 100.0 * self.correct.float().mean().item()

    def probabilities(self) -> torch.Tensor:
        return self.logits.float().softmax(1)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_compatible(model: Classifier, data: Dataset) -> None:
    """A model and a dataset must agree on the number of classes."""
    if model.num_classes != data.num_classes:
        raise AnyteachError(f"model {model.name!r} has {model.num_classes} classes but dataset {data.ref!r} "
                            f"has {data.num_classes}")


@torch.no_grad()
def model_logits(model: Classifier, data: Dataset, split: str, batch_size: int = 1024,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Logits of `model` over a whole split, in index order (eval mode, no gradients).

    The model runs on `device` and is moved back to where it was; its train/eval mode is restored.
    """
    device = torch.device(device) if device is not None else default_device()
    was_training = model.training
    home = next((p.device for p in model.parameters()), None)  # where the caller keeps the model
    model.eval().to(device)
    outs = []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    try:
        for x, _, _ in data.loader(split, batch_size=batch_size, preprocessing=model.info.preprocessing):
            with autocast:
                outs.append(forward_checked(model, x.to(device, non_blocking=True), data).float().cpu())
    finally:
        model.train(was_training)
        if home is not None:
            model.to(home)  # only the teachers a step needs stay on the accelerator
    logits = torch.cat(outs) if outs else torch.empty(0, model.num_classes)
    if not bool(torch.isfinite(logits).all()):
        raise AnyteachError(f"model {model.name!r} gives NaN or infinite outputs on dataset {data.ref!r}: its weights "
                            "are broken (e.g. saved from a diverged training)")
    return logits


def forward_checked(model: Classifier, x: torch.Tensor, data: Dataset) -> torch.Tensor:
    """`model(x)`, with a clear error when the dataset's inputs do not fit the model (an image model on
    signals, a wrong input size): the forward fails, or gives anything but one row of class scores
    per input.

    Raises:
        AnyteachError: naming the model, the dataset and the shapes.
    """
    size = model.info.preprocessing.input_size
    expects = f"; the model expects inputs of shape {tuple(size)}" if size else ""
    try:
        out = model(x)
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError, AssertionError) as e:  # timm asserts shapes
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AnyteachError(f"model {model.name!r} cannot take the inputs of dataset {data.ref!r} (a batch of shape "
                            f"{tuple(x.shape)}{expects}): {reason}") from e
    if tuple(out.shape) != (len(x), model.num_classes):
        raise AnyteachError(f"model {model.name!r} gave outputs of shape {tuple(out.shape)} for {len(x)} inputs of "
                            f"shape {tuple(x.shape[1:])} from dataset {data.ref!r}: the data does not fit the model"
                            f"{expects}")
    return out


def cached_logits(model: Classifier, data: Dataset, split: str, batch_size: int = 1024,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Logits of `model` over a split, through the predictions cache, exactly as the cache stores them.

    A freshly computed result is read back from the cache once, because the cache may store logits
    at lower precision: a resumed run must see bit-identical targets and metrics as the first one.
    """
    first = predict(model, data, split, batch_size=batch_size, device=device)
    if not model.info.identity:
        return first.logits
    return predict(model, data, split, batch_size=batch_size, device=device).logits


def _cache_path(model: Classifier, data: Dataset, split: str) -> Path | None:
    if not model.info.identity:
        return None
    key = text_digest(f"{model.info.identity}|{data.split_identity(split)}")
    return cache_dir() / "predictions" / f"{key}.safetensors"


def predict(model: str | Classifier, data: str | Dataset, split: str = "eval", cache: bool = True,
            batch_size: int = 1024, device: torch.device | str | None = None) -> Predictions:
    """Predictions of `model` on a split of `data`, from the on-disk cache when possible.

    Args:
        model: a model reference or a loaded `Classifier`.
        data: a dataset reference or a loaded `Dataset`.
        split: `eval` (default), `train` or `transfer`.
        cache: read and write the predictions cache (models without an identity are never cached).
    """
    model, data = load_model(model), load_dataset(data)
    check_compatible(model, data)
    labels = data.labels(split)
    path = _cache_path(model, data, split) if cache else None
    if path is not None and path.exists():
        from safetensors.torch import load_file

        try:
            logits = load_file(str(path))["logits"].float()
            if len(logits) == len(labels):
                return Predictions(logits, labels, model.name, split)
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
            pass
    logits = model_logits(model, data, split, batch_size=batch_size, device=device)
    if path is not None:
        stored = logits.half() if logits.shape[1] > 100 else logits
        save_tensors(path, {"logits": stored})
    return Predictions(logits, labels, model.name, split)
