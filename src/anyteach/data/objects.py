"""Data a user holds as Python objects, as an anyteach `Dataset`.

A user hands over one object per split, in a mapping: `{"train": ..., "eval": ..., "calib": ...,
"unlabelled": ...}` (`val`, `validation` and `test` also name the eval split). Each object may be

- a `torch.utils.data.Dataset` or a `DataLoader` yielding `(input, label)` pairs (or dicts with
  `image`/`label` keys), inputs as tensors, numpy arrays or PIL images; the user's own transforms
  apply, once per sample, as the object applies them;
- a torchvision `ImageFolder` without a transform: its files are read as an image folder is, each
  model with its own resize and crop (`ImageFolder.from_folders`), so images of any size stream from
  disk;
- a Hugging Face `datasets` split (an image column and a class-label column).

Everything but the torchvision folders is read once into memory (a progress line for large splits)
and identified by the digest of its contents, so predictions are cached and runs resume as for the
built-in datasets. The transfer split is `unlabelled` when given (samples the models did not train on;
methods that read labels refuse it), else `train`. Images are best given un-normalised (8-bit, or floats
in [0, 1]): every model normalises its own input with its own mean and std. Data normalised by the
user's transform suits only a model that takes it as it comes (`load_model(net)` without mean/std).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..core.errors import AnyteachError
from .glyph_images import augment_images
from .references import OBJECT_READERS, UNLABELLED, Dataset, ImageFolder, _InMemory

SPLIT_NAMES = {
    "train": "train",
    "eval": "eval",
    "val": "eval",
    "validation": "eval",
    "test": "eval",
    "calib": "calib",
    "unlabelled": "unlabelled",
    "unlabeled": "unlabelled",
}
"""The split names a mapping of objects may use, and the split each means."""

MAX_IN_MEMORY = 8 * 2**30
"""Bytes a split read into memory may take; a larger one should stream from files (`imagefolder:`)."""

IMAGE_KEYS = ("image", "img", "pixel_values", "input", "inputs", "x")
LABEL_KEYS = ("label", "labels", "fine_label", "target", "targets", "y")
IMAGE_AUGMENTATION: dict[str, float] = {"shift": 0.08, "rotate": 0.2, "scale": 0.1, "noise": 0.03}
"""What `augment=True` applies to 8-bit images held in memory: random translation, rotation, zoom and noise."""


def is_torchvision_folder(obj: Any) -> bool:
    """A torchvision `ImageFolder` (or `DatasetFolder`) without a transform: streamed from its files."""
    return all(hasattr(obj, a) for a in ("samples", "classes", "root", "loader")) and (
        getattr(obj, "transform", None) is None and getattr(obj, "target_transform", None) is None
    )


def is_hf_dataset(obj: Any) -> bool:
    return hasattr(obj, "features") and hasattr(obj, "column_names") and hasattr(obj, "with_format")


def _columns(obj: Any, split: str) -> tuple[str, str | None]:
    names = list(obj.column_names)
    image = next((k for k in IMAGE_KEYS if k in names), None)
    label = next((k for k in LABEL_KEYS if k in names), None)
    if image is None:
        raise AnyteachError(f"the {split} split has no image column (one of {', '.join(IMAGE_KEYS)}): {names}")
    return image, label


def hf_class_names(obj: Any) -> list[str] | None:
    """The class names of a Hugging Face split's class-label column, when it has them."""
    try:
        _, label = _columns(obj, "given")
    except AnyteachError:
        return None
    feature = obj.features.get(label) if label else None
    names = getattr(feature, "names", None)
    return list(names) if names else None


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    """One input (or a batch of them) as a tensor: images to `(3, H, W)` 8-bit, arrays as they are."""
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "mode") and hasattr(value, "size"):  # a PIL image
        from .images import to_rgb8

        return torch.from_numpy(np.array(to_rgb8(value))).permute(2, 0, 1).contiguous()
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if tensor.dim() == 3 and tensor.shape[-1] in (1, 3) and tensor.shape[0] not in (1, 3):
            tensor = tensor.permute(2, 0, 1)  # height x width x channels, as images are stored
        return tensor
    if isinstance(value, (int, float)):
        return torch.tensor(value)
    raise AnyteachError(f"{what}: cannot read an input of type {type(value).__name__} (give tensors, arrays or images)")


def _split_item(item: Any, split: str, labelled: bool) -> tuple[Any, Any]:
    """`(input, label)` from what a dataset or loader yields: a pair, a longer tuple, a dict, or an input."""
    if isinstance(item, Mapping):
        image = next((item[k] for k in IMAGE_KEYS if k in item), None)
        label = next((item[k] for k in LABEL_KEYS if k in item), None)
        if image is None:
            raise AnyteachError(f"the {split} split yields mappings without an input key ({', '.join(IMAGE_KEYS)})")
        return image, label
    if isinstance(item, (tuple, list)):
        if len(item) >= 2:
            return item[0], item[1]
        return item[0], None
    if labelled:
        raise AnyteachError(f"the {split} split yields {type(item).__name__}s, not (input, label) pairs")
    return item, None


def _batches(obj: Any, split: str):
    """What a split object yields, in batches: a DataLoader's own batches, or a dataset read in order."""
    if isinstance(obj, torch.utils.data.DataLoader):
        yield from obj
        return
    if is_hf_dataset(obj):
        image, label = _columns(obj, split)
        for start in range(0, len(obj), 256):
            rows = obj[start : start + 256]
            images = [_as_tensor(v, f"the {split} split") for v in rows[image]]
            yield images, rows[label] if label is not None else None
        return
    if not hasattr(obj, "__len__") or not hasattr(obj, "__getitem__"):
        raise AnyteachError(
            f"the {split} split is a {type(obj).__name__}: give a torch Dataset, a DataLoader, a torchvision "
            "ImageFolder or a Hugging Face datasets split"
        )
    batch: list[Any] = []
    for i in range(len(obj)):  # reading a user's dataset once, into memory: I/O, not a hot path
        batch.append(obj[i])
        if len(batch) == 256:
            yield batch
            batch = []
    if batch:
        yield batch


def _stack(values: list[torch.Tensor], split: str) -> torch.Tensor:
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        raise AnyteachError(
            f"the inputs of the {split} split have different shapes ({a} and {b}): give a transform that makes "
            "them one size (e.g. Resize and CenterCrop), or an image folder (imagefolder:DIR), whose images "
            "each model resizes itself"
        )
    return torch.stack(values)


def read_split(obj: Any, split: str, labelled: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All inputs and labels of one split object, in memory (labels `UNLABELLED` where it has none).

    Raises:
        AnyteachError: a labelled split without labels, inputs of different shapes or types, labels that
            are not class indices, or a split too large for memory.
    """
    inputs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    counted = getattr(obj, "dataset", obj)  # a DataLoader's length counts batches
    total, start, said = len(counted) if hasattr(counted, "__len__") else None, time.monotonic(), 0.0
    seen = 0
    for raw in _batches(obj, split):
        if isinstance(raw, list) and not isinstance(obj, torch.utils.data.DataLoader) and not is_hf_dataset(obj):
            pairs = [_split_item(item, split, labelled) for item in raw]
            xs = [_as_tensor(x, f"the {split} split") for x, _ in pairs]
            ys = [y for _, y in pairs]
            x = _stack(xs, split)
        elif is_hf_dataset(obj):
            xs, ys = raw
            x = _stack(xs, split)
            ys = ys if ys is not None else [None] * len(xs)
        else:  # a DataLoader's batch: already collated
            bx, by = _split_item(raw, split, labelled)
            x = _as_tensor(bx, f"the {split} split")
            ys = by if by is not None else [None] * len(x)
        if not isinstance(ys, torch.Tensor) and any(y is None for y in ys):
            if labelled:
                raise AnyteachError(f"the {split} split has samples without a label; only `unlabelled` may")
            y = torch.full((len(x),), UNLABELLED, dtype=torch.long)
        else:
            y = torch.as_tensor(ys)
            if y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
                raise AnyteachError(f"the labels of the {split} split must be class indices (integers), got {y.dtype}")
            y = y.long() if labelled else torch.full((len(x),), UNLABELLED, dtype=torch.long)
        inputs.append(x)
        labels.append(y)
        seen += len(x)
        if total and seen == len(x) and x.element_size() * x[0].numel() * total > MAX_IN_MEMORY:
            gib = x.element_size() * x[0].numel() * total / 2**30
            raise AnyteachError(
                f"the {split} split would take {gib:.1f} GiB in memory; give large image datasets as an image folder "
                "(imagefolder:DIR, or a torchvision ImageFolder without a transform), which streams from disk"
            )
        now = time.monotonic()
        if now - start > 10 and now - said > 10:
            said = now
            print(f"reading the {split} split: {seen}{f'/{total}' if total else ''} samples", file=sys.stderr)
    if not inputs:
        raise AnyteachError(f"the {split} split is empty")
    shapes = {tuple(x.shape[1:]) for x in inputs}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        raise AnyteachError(f"the inputs of the {split} split have different shapes ({a} and {b})")
    return torch.cat(inputs), torch.cat(labels)


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class InMemoryData(_InMemory):
    """A user's split objects read into memory: `train`, `eval`, optionally `calib` and `unlabelled` (which is
    then the transfer split). Identified by the digest of every split's inputs and labels."""

    def __init__(self, splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]], class_names: list[str], name: str):
        self._x = {s: x for s, (x, _) in splits.items()}
        self._y = {s: y for s, (_, y) in splits.items()}
        if "unlabelled" in splits:
            self._x["transfer"], self._y["transfer"] = self._x.pop("unlabelled"), self._y.pop("unlabelled")
        elif "train" in splits:
            self._x["transfer"], self._y["transfer"] = self._x["train"], self._y["train"]
        self.class_names, self.num_classes, self.name = list(class_names), len(class_names), name
        self.fraction, self.subset_seed = 1.0, 0
        self._digests = {s: _digest(self._x[s], self._y[s]) for s in self._x}
        self.identity = "objects:" + hashlib.sha256(str(sorted(self._digests.items())).encode()).hexdigest()[:16]
        self.ref = f"{name} ({', '.join(f'{s} {len(self._y[s]):,}' for s in self._x if s != 'transfer')} samples)"
        sample = self._x["eval"]
        self.kind = "image" if sample.dim() == 4 else "signal"
        self._unseen = "unlabelled" in splits
        self.augmentation = IMAGE_AUGMENTATION if self.kind == "image" and sample.dtype == torch.uint8 else {}

    augmenter = staticmethod(augment_images)

    def has_split(self, split: str) -> bool:
        return split in self._x

    @property
    def extra_splits(self) -> tuple[str, ...]:
        return ("calib",) if "calib" in self._x else ()

    @property
    def transfer_labelled(self) -> bool:
        return not self._unseen

    @property
    def transfer_unseen(self) -> bool:
        return self._unseen

    def split_identity(self, split: str) -> str:
        """The split's own contents (and the class count): a changed eval sample leaves the train key alone."""
        self._check_split(split)
        return f"objects:{self.num_classes}/{split}-{self._digests[split]}"

    def loader(self, split: str, *args: Any, augment: Any = False, **kwargs: Any):
        if augment is True and not self.augmentation:
            raise AnyteachError(
                f"augment: {self.name} has no built-in augmentation for inputs of shape "
                f"{tuple(self._x['eval'].shape[1:])} of type {self._x['eval'].dtype} (only 8-bit images have one); "
                "augment in your own dataset's transform instead"
            )
        return super().loader(split, *args, augment=augment, **kwargs)  # type: ignore[misc]  # args: batch size, ...


def from_objects(splits: Mapping[str, Any], class_names: list[str] | None = None, name: str | None = None) -> Dataset:
    """A user's split objects (see the module docstring) as a `Dataset`.

    Args:
        splits: split name -> object; `train` (or `unlabelled`) and `eval` are needed.
        class_names: the names of the classes in label order (default: the objects' own `classes` or
            class-label names, else `class0`, `class1`, ...).
        name: how the data is named in messages, run configurations and model cards (default: `data`).

    Raises:
        AnyteachError: an unknown split name, a missing split, objects of different kinds, labels outside
            the classes.
    """
    named: dict[str, Any] = {}
    for key, obj in splits.items():
        split = SPLIT_NAMES.get(str(key).lower())
        if split is None:
            raise AnyteachError(f"unknown split {key!r}; give {', '.join(dict.fromkeys(SPLIT_NAMES))}")
        if split in named:
            raise AnyteachError(f"the {split} split is given twice (as {key!r} and another name)")
        named[split] = obj
    if "eval" not in named or not ({"train", "unlabelled"} & set(named)):
        raise AnyteachError(
            "give at least an eval split and a train (or unlabelled) split: {'train': ..., 'eval': ...}"
        )
    name = name or "data"
    folders = [is_torchvision_folder(o) for o in named.values()]
    if all(folders):
        if "train" not in named:
            raise AnyteachError("a dataset of torchvision ImageFolders needs a train folder (its class folders)")
        data = ImageFolder.from_folders(named, name)
        _check_class_names(data, class_names)
        return data
    if any(folders):
        raise AnyteachError(
            "give every split as a torchvision ImageFolder without a transform (streamed from disk) or none of them"
        )
    read = {s: read_split(o, s, labelled=s != "unlabelled") for s, o in named.items()}
    labelled = torch.cat([y for s, (_, y) in read.items() if s != "unlabelled"])
    names = class_names or _own_class_names(named)
    count = len(names) if names else int(labelled.max()) + 1
    if int(labelled.min()) < 0 or int(labelled.max()) >= count:
        raise AnyteachError(
            f"labels run from {int(labelled.min())} to {int(labelled.max())} but there are {count} classes "
            f"({'class_names' if names else 'inferred from the labels'})"
        )
    return InMemoryData(read, list(names) if names else [f"class{c}" for c in range(count)], name)


def _own_class_names(splits: Mapping[str, Any]) -> list[str] | None:
    for obj in splits.values():
        base = getattr(obj, "dataset", obj)  # a DataLoader's dataset
        if is_hf_dataset(base):
            names = hf_class_names(base)
            if names:
                return names
        classes = getattr(base, "classes", None)
        if isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes):
            return list(classes)
    return None


def _check_class_names(data: Dataset, class_names: list[str] | None) -> None:
    if class_names is not None and list(class_names) != list(data.class_names):
        raise AnyteachError(
            f"class_names {list(class_names)[:4]}... differ from the folders' classes {data.class_names[:4]}..."
        )


def _read_objects(obj: Any, class_names: list[str] | None = None, name: str | None = None) -> Dataset | None:
    if isinstance(obj, Mapping):
        return from_objects(obj, class_names=class_names, name=name)
    if isinstance(obj, (torch.utils.data.Dataset, torch.utils.data.DataLoader)) or is_hf_dataset(obj):
        raise AnyteachError(
            f"one {type(obj).__name__} is one split: give a mapping of splits, {{'train': ..., 'eval': ...}}"
        )
    return None


OBJECT_READERS.append(_read_objects)
