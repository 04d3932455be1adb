"""Predictions: one model over one dataset split, computed once and cached on disk.

Everything pairwise (complementary knowledge, flips, zoo matrices) is computed from these, never by
running models once per pair. The cache key is the model's content identity plus the split's
identity, so a retrained model or a regenerated dataset never reuses stale predictions. Inside a
process group (torchrun), each rank runs the model over its share of the split and the shares are
gathered, so every sample is evaluated once, not once per rank; rank 0 alone reads and writes the
cache and hands the logits to the other ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..core import process_group as distributed
from ..core.errors import AnyteachError
from ..core.io import cache_dir, save_tensors, text_digest
from ..core.runtime import Runtime
from ..models.references import Classifier, load_model
from .references import Dataset, load_dataset


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
        return 100.0 * self.correct.double().mean().item()

    def probabilities(self) -> torch.Tensor:
        return self.logits.float().softmax(1)


def check_compatible(model: Classifier, data: Dataset) -> None:
    """A model and a dataset must agree on the number of classes."""
    if model.num_classes != data.num_classes:
        raise AnyteachError(
            f"model {model.name!r} has {model.num_classes} classes but dataset {data.ref!r} has {data.num_classes}"
        )


@torch.no_grad()
def split_outputs(
    model: Classifier,
    data: Dataset,
    split: str,
    batch_size: int,
    runtime: Runtime,
    output: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """`output(run, x)` over a whole split, in index order (eval mode, no gradients, float32 on the CPU).

    `run` is the model as the runtime runs it (compiled when asked); the model is placed on the
    runtime's device, then moved back to where it was, with its train/eval mode restored. Inside a
    process group each rank computes its share of every batch of `batch_size` x world size and all
    ranks receive the whole split.
    """
    was_training = model.training
    home = next((p.device for p in model.parameters()), None)  # where the caller keeps the model
    runtime.place(model.eval())
    run = runtime.compiled(model)
    world = distributed.world_size()
    outs, indices = [], []
    try:
        for x, _, index in data.loader(
            split,
            batch_size=batch_size * world,
            preprocessing=model.info.preprocessing,
            num_workers=runtime.workers,
            shard=(distributed.rank(), world),
        ):
            with runtime.autocast():
                outs.append(output(run, runtime.to_device(x)).float().cpu())
            indices.append(index)
    finally:
        model.train(was_training)
        if home is not None:
            model.to(home)  # only the teachers a step needs stay on the accelerator
    if not outs:  # an empty split, or a rank with no share of it: the shape comes from one sample
        x, _, _ = next(iter(data.loader(split, batch_size=1, preprocessing=model.info.preprocessing, num_workers=0)))
        with runtime.autocast():
            probe = output(run, runtime.to_device(x)).float().cpu()
        outs, indices = [probe[:0]], [torch.zeros(0, dtype=torch.long)]
    return distributed.gather_rows(torch.cat(indices), torch.cat(outs), data.size(split))


def model_logits(
    model: Classifier,
    data: Dataset,
    split: str,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    runtime: Runtime | None = None,
) -> torch.Tensor:
    """Logits of `model` over a whole split, in index order (eval mode, no gradients).

    Args:
        model: the classifier; it runs on the runtime's device and is moved back to where it was.
        data, split: what it runs over.
        batch_size: samples per forward pass (per rank inside a process group).
        device: where it runs (default: CUDA when available); ignored when `runtime` is given.
        runtime: how it runs (autocast, channels-last, compile, loader workers).
    """
    runtime = runtime or Runtime.of(device)
    logits = split_outputs(model, data, split, batch_size, runtime, lambda run, x: forward_checked(model, x, data, run))
    if not bool(torch.isfinite(logits).all()):
        raise AnyteachError(
            f"model {model.name!r} gives NaN or infinite outputs on dataset {data.ref!r}: its weights "
            "are broken (e.g. saved from a diverged training)"
        )
    return logits


def forward_checked(
    model: Classifier, x: torch.Tensor, data: Dataset, run: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """`model(x)` (or `run(x)`, the model as the runtime runs it), with a clear error when the dataset's
    inputs do not fit the model (an image model on signals, a wrong input size): the forward fails, or
    gives anything but one row of class scores per input.

    Raises:
        AnyteachError: naming the model, the dataset and the shapes.
    """
    size = model.info.preprocessing.input_size
    expects = f"; the model expects inputs of shape {tuple(size)}" if size else ""
    try:
        out = (run if run is not None else model)(x)
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError, AssertionError) as e:  # timm asserts shapes
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AnyteachError(
            f"model {model.name!r} cannot take the inputs of dataset {data.ref!r} (a batch of shape "
            f"{tuple(x.shape)}{expects}): {reason}"
        ) from e
    if tuple(out.shape) != (len(x), model.num_classes):
        raise AnyteachError(
            f"model {model.name!r} gave outputs of shape {tuple(out.shape)} for {len(x)} inputs of "
            f"shape {tuple(x.shape[1:])} from dataset {data.ref!r}: the data does not fit the model"
            f"{expects}"
        )
    return out


def cached_logits(
    model: Classifier,
    data: Dataset,
    split: str,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    runtime: Runtime | None = None,
) -> torch.Tensor:
    """Logits of `model` over a split, through the predictions cache, exactly as the cache stores them
    (so a resumed run sees bit-identical targets and metrics as the first one)."""
    return predict(model, data, split, batch_size=batch_size, device=device, runtime=runtime).logits


def _cache_path(model: Classifier, data: Dataset, split: str) -> Path | None:
    """Where the predictions of a model on a split are cached: keyed by the model's content identity and
    everything in its metadata that changes its outputs (a preprocessing set in code after loading), and
    by the split's identity. None for a model without an identity (built in code and never named)."""
    if not model.info.identity:
        return None
    key = text_digest(f"{model.info.identity}|{model.info.outputs_key()}|{data.split_identity(split)}")
    return cache_dir() / "predictions" / f"{key}.safetensors"


def _read_cache(path: Path | None, rows: int) -> torch.Tensor | None:
    if path is None or not path.exists():
        return None
    from safetensors.torch import load_file

    try:
        logits = load_file(str(path))["logits"].float()
    except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
        return None
    return logits if len(logits) == rows else None


def predict(
    model: str | Classifier,
    data: str | Dataset,
    split: str = "eval",
    cache: bool = True,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    runtime: Runtime | None = None,
) -> Predictions:
    """Predictions of `model` on a split of `data`, from the on-disk cache when possible.

    Args:
        model: a model reference or a loaded `Classifier`.
        data: a dataset reference or a loaded `Dataset`.
        split: `eval` (default), `train` or `transfer`.
        cache: read and write the predictions cache (models without an identity are never cached).
            Cached logits of more than 100 classes are stored in float16, and a freshly computed
            result is returned as the cache stores it, so the first call and every later one agree.
        batch_size: samples per forward pass.
        device: where the model runs (default: CUDA when available); ignored when `runtime` is given.
        runtime: how the model runs (autocast, channels-last, compile, loader workers).
    """
    model, data = load_model(model), load_dataset(data)
    check_compatible(model, data)
    labels = data.labels(split)
    path = _cache_path(model, data, split) if cache else None
    logits = distributed.on_main(lambda: _read_cache(path, len(labels)))
    if logits is None:
        logits = model_logits(model, data, split, batch_size=batch_size, device=device, runtime=runtime)
        if path is not None:
            logits = logits.half().float() if logits.shape[1] > 100 else logits
            distributed.on_main(
                lambda: save_tensors(path, {"logits": logits.half() if logits.shape[1] > 100 else logits})
            )
    return Predictions(logits, labels, model.name, split)


# ---------------------------------------------------------------------------------------------
# A model at chance is a wrong input, not a result


def chance_threshold(num_classes: int, samples: int) -> float:
    """The accuracy (%) a model on its own data should clearly beat: 1.5 times chance (at most chance plus
    a tenth of the way to 100%), and at least 3 standard errors of a guess above chance."""
    chance = 100.0 / num_classes
    noise = 3 * 100.0 * math.sqrt((chance / 100) * (1 - chance / 100) / max(samples, 1))
    return max(min(1.5 * chance, chance + 0.1 * (100 - chance)), chance + noise)


def chance_diagnosis(model: Classifier, predictions: Predictions, data: Dataset) -> str:
    """The likely cause of a model at chance on a dataset, in words: its classes in another order than the
    data's, an input size the model resizes to that differs from the data's images, or its
    normalisation (mean/std, a label order not otherwise visible, or the wrong weights)."""
    classes = data.num_classes
    labelled = predictions.labels >= 0
    pairs = predictions.labels[labelled] * classes + predictions.predicted[labelled]
    confusion = torch.bincount(pairs, minlength=classes * classes).reshape(classes, classes)
    mapped = 100.0 * confusion.max(1).values.sum().item() / max(int(labelled.sum()), 1)
    if mapped >= 50 and len(set(confusion.argmax(1).tolist())) >= 0.8 * classes:
        data_names, model_names = data.class_names, model.info.class_names
        example = ""
        mapping = confusion.argmax(1).tolist()
        c = next((c for c in range(classes) if mapping[c] != c), None)
        if c is not None:
            said = model_names[mapping[c]] if model_names else f"class {mapping[c]}"
            example = f" (the data's {data_names[c]!r} is predicted as the model's {said!r})"
        return (
            f"label order: mapped class by class the model is {mapped:.1f}% right, so its classes are in "
            f"another order than the data's{example}; give the data's classes in the model's order"
        )
    size, native = model.info.preprocessing.input_size, data.input_shape("eval")
    if size is not None and native is not None and len(size) == len(native) == 3 and size[1:] != native[1:]:
        h, w = native[1:]
        return (
            f"input size: the model takes {size[1]}x{size[2]} inputs (from its config) but the data's images "
            f"are {h}x{w}; if the model was trained at {h}x{w}, give its input size: "
            f"?input_size={native[0]},{h},{w} after the reference, or --input-size {native[0]},{h},{w}"
        )
    p = model.info.preprocessing
    if p.mean is not None:
        return (
            f"preprocessing: the model normalises its input with mean {list(p.mean)} and std {list(p.std)}; if "
            "these are not what it was trained with (or the data are normalised already), give its own: "
            "?mean=...&std=... after the reference; else check the label order and the weights"
        )
    return "preprocessing, label order or the weights: the model takes the data as they come (no normalisation)"


def check_not_at_chance(
    model: Classifier,
    data: Dataset,
    split: str = "eval",
    role: str = "model",
    predictions: Predictions | None = None,
    **kw,
) -> None:
    """Stop with one line naming the likely cause when `model` is at chance on a split of `data` (a wrong
    input size, normalisation or label order gives a number that looks like a result but is not one).

    Args:
        role: what the model is, for the message ("student", "teacher").
        predictions: the model's predictions on the split, when already at hand.
        **kw: passed to `predict` (batch size, runtime) when they are not.

    Raises:
        AnyteachError: the model is at chance; pass allow_chance=True (`--allow-chance`) when that is expected
            (a random teacher as a control).
    """
    predictions = predictions if predictions is not None else predict(model, data, split, **kw)
    labelled = int((predictions.labels >= 0).sum())
    if not labelled or data.num_classes < 2:
        return
    threshold = chance_threshold(data.num_classes, labelled)
    if predictions.accuracy < threshold:
        raise AnyteachError(
            f"the {role} {model.name!r} is at chance on the {split} split of {data.ref!r} ({predictions.accuracy:.2f}% "
            f"for {data.num_classes} classes; below {threshold:.2f}%), so its numbers would mean nothing. Likely "
            f"cause: {chance_diagnosis(model, predictions, data)}. If it is expected (a random model), pass "
            "--allow-chance (allow_chance=True)"
        )
