"""Dataset references: from the string a user types to splits that yield `(input, label, index)`.

A reference is one of
- `mnist1d` or `mnist1d:size=30000,eval=5000,seed=0`: the MNIST-1D benchmark (Greydanus 2020),
  generated offline and deterministically by the `mnist1d` package's generator (never downloaded)
  and cached on disk. `size` is the total number of samples, `eval` how many of them are held out
  for measuring, `seed` the generator's seed.
- `imagefolder:<root>`: ImageNet-style class folders `<root>/train/<class>/*` and `<root>/val/<class>/*`.

Every reference accepts `fraction=<0..1>` (after a comma): the `transfer` split is then a
stratified subset of `train` holding that fraction of every class (the paper transfers on a
stratified 10% of ImageNet train), drawn with `subset_seed` (default 0).

Splits: `train` (what the zoo is trained on), `transfer` (what transfer runs on: `train`, or its
stratified fraction) and `eval` (held out, only for measuring). `index` is the sample's position in
its split, so per-sample results (cached teacher outputs, predictions) line up across models.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from ._io import atomic_path, cache_dir, text_digest
from .errors import AnyteachError
from .models import Preprocessing

SPLITS = ("train", "transfer", "eval")
MNIST1D_GENERATOR_VERSION = "mnist1d-0.0.2"
MNIST1D_CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MNIST1D_AUGMENTATION: dict[str, float] = {"shift": 3, "scale": 0.2, "noise": 0.05}
"""The signals' random augmentation (`augment_signals`): what `augment=True` applies to MNIST-1D."""

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _parse_options(text: str, allowed: dict[str, type], ref: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise AnyteachError(f"bad option {item!r} in dataset reference {ref!r}: expected key=value")
        if key not in allowed:
            raise AnyteachError(f"unknown option {key!r} in dataset reference {ref!r}; known: {', '.join(allowed)}")
        try:
            out[key] = allowed[key](value)
        except ValueError as e:
            kind = "an integer" if allowed[key] is int else "a number"
            raise AnyteachError(f"option {key}={value!r} in dataset reference {ref!r} is not {kind}") from e
    return out


def stratified_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a subset holding `fraction` of every class (at least one sample per class)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    grouped = perm[np.argsort(labels[perm], kind="stable")]
    classes, counts = np.unique(labels, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    take = np.maximum(1, np.round(counts * fraction).astype(int))
    # position within its class of every grouped sample; keep the first `take` of each class
    rank = np.arange(len(grouped)) - np.repeat(starts, counts)
    keep = rank < np.repeat(take, counts)
    return np.sort(grouped[keep])


def augment_signals(x: torch.Tensor, generator: torch.Generator, shift: float = 0, scale: float = 0,
                    noise: float = 0) -> torch.Tensor:
    """Random per-sample circular shift (up to `shift` steps), amplitude scaling by a factor in
    [1 - scale, 1 + scale] and Gaussian noise of std `noise`, on a `(batch, length)` batch at once."""
    b, n = x.shape
    if shift:
        s = torch.randint(-int(shift), int(shift) + 1, (b, 1), generator=generator)
        idx = (torch.arange(n).unsqueeze(0) - s) % n
        x = x.gather(1, idx)
    if scale:
        x = x * (1 + scale * (2 * torch.rand(b, 1, generator=generator) - 1))
    if noise:
        x = x + noise * torch.randn(x.shape, generator=generator)
    return x


@dataclass
class TensorLoader:
    """Batches `(input, label, index)` from in-memory tensors; shuffled per epoch from `seed`.

    With `augment` (keyword arguments of `augment_signals`), every batch is augmented with random
    numbers drawn from `generator` (whose state a resumable run saves), or, without one, from a
    generator seeded by `seed` and `epoch`.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    batch_size: int = 256
    shuffle: bool = False
    seed: int = 0
    epoch: int = 0
    drop_last: bool = False
    augment: Mapping[str, float] | None = None
    generator: torch.Generator | None = None

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.labels)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        noise = self.generator
        if self.augment and noise is None:
            noise = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 7919)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.inputs[idx]
            if self.augment:
                x = augment_signals(x, noise, **self.augment)
            yield x, self.labels[idx], idx


class Dataset:
    """A dataset reference resolved: class names, labels per split, loaders."""

    ref: str
    name: str
    num_classes: int
    class_names: list[str]
    identity: str
    fraction: float = 1.0
    subset_seed: int = 0

    def labels(self, split: str) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def size(self, split: str) -> int:
        return len(self.labels(split))

    def loader(self, split: str, batch_size: int = 256, shuffle: bool = False, seed: int = 0, epoch: int = 0,
               preprocessing: Preprocessing | None = None, augment: bool | Mapping[str, float] = False,
               drop_last: bool = False, num_workers: int = 0, generator: torch.Generator | None = None):
        """Iterable of `(input, label, index)` batches. Inputs are un-normalised: each model
        normalises its own (see `Classifier`); `preprocessing` only sets image size and crop.

        `augment` switches on the dataset's own random augmentation (signals: `augment_signals`
        with `MNIST1D_AUGMENTATION`, or the given keyword arguments; images: timm's training
        transforms); `generator` is the random source of signal augmentation (a resumable run
        passes its own, whose state it saves)."""
        raise NotImplementedError  # pragma: no cover

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise AnyteachError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")

    def split_identity(self, split: str) -> str:
        self._check_split(split)
        if split == "transfer" and self.fraction < 1:
            return f"{self.identity}/transfer-{self.fraction}-{self.subset_seed}"
        return f"{self.identity}/{'train' if split == 'transfer' else split}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ref!r})"


class Mnist1d(Dataset):
    """MNIST-1D: 10 classes of 40-sample signals, generated offline and cached as `.npz`."""

    def __init__(self, size: int = 30_000, eval: int = 5_000, seed: int = 0, fraction: float = 1.0,
                 subset_seed: int = 0, ref: str | None = None):
        if size < 20 or not 0 < eval < size:
            raise AnyteachError(f"mnist1d needs size >= 20 and 0 < eval < size (got size={size}, eval={eval})")
        if size % 10:
            raise AnyteachError(f"mnist1d size must be a multiple of 10 (the generator makes size / 10 per class), "
                                f"got {size}")
        if not 0 < fraction <= 1:
            raise AnyteachError(f"fraction must be in (0, 1], got {fraction}")
        for name, value in (("seed", seed), ("subset_seed", subset_seed)):
            if not 0 <= value < 2**32:
                raise AnyteachError(f"mnist1d {name} must be in [0, 2**32), got {value}")
        self.size_total, self.eval_size, self.seed = size, eval, seed
        self.fraction, self.subset_seed = fraction, subset_seed
        self.name = "mnist1d"
        self.ref = ref or f"mnist1d:size={size},eval={eval},seed={seed}"
        self.num_classes = 10
        self.class_names = list(MNIST1D_CLASS_NAMES)
        self.identity = f"{MNIST1D_GENERATOR_VERSION}:size={size},eval={eval},seed={seed}"
        self.kind = "signal"
        x, y = self._generate()
        n_train = size - eval
        self._x = {"train": x[:n_train], "eval": x[n_train:]}
        self._y = {"train": y[:n_train], "eval": y[n_train:]}
        if fraction < 1:
            keep = torch.from_numpy(stratified_subset(self._y["train"].numpy(), fraction, subset_seed))
            self._x["transfer"], self._y["transfer"] = self._x["train"][keep], self._y["train"][keep]
        else:
            self._x["transfer"], self._y["transfer"] = self._x["train"], self._y["train"]

    def _generate(self) -> tuple[torch.Tensor, torch.Tensor]:
        path = cache_dir() / "data" / f"mnist1d-{text_digest(self.identity)}.npz"
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return torch.from_numpy(z["x"]), torch.from_numpy(z["y"])
            except (OSError, ValueError, KeyError):
                path.unlink()  # a damaged cache entry is regenerated
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = self.size_total
        args.train_split = 1.0
        args.seed = self.seed
        # the generator seeds the global RNGs; leave the caller's random state as it was
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            data = make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        x = data["x"].astype(np.float32)
        y = data["y"].astype(np.int64)
        if len(y) < self.size_total:  # the generator makes size // 10 per class
            raise AnyteachError(f"mnist1d size must be a multiple of 10 (got {self.size_total})")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, x=x, y=y)
        return torch.from_numpy(x), torch.from_numpy(y)

    def inputs(self, split: str) -> torch.Tensor:
        self._check_split(split)
        return self._x[split]

    def labels(self, split: str) -> torch.Tensor:
        self._check_split(split)
        return self._y[split]

    def loader(self, split: str, batch_size: int = 256, shuffle: bool = False, seed: int = 0, epoch: int = 0,
               preprocessing: Preprocessing | None = None, augment: bool | Mapping[str, float] = False,
               drop_last: bool = False, num_workers: int = 0, generator: torch.Generator | None = None) -> TensorLoader:
        params = dict(MNIST1D_AUGMENTATION) if augment is True else dict(augment) if augment else None
        return TensorLoader(self.inputs(split), self.labels(split), batch_size=batch_size, shuffle=shuffle,
                            seed=seed, epoch=epoch, drop_last=drop_last, augment=params, generator=generator)


class _Indexed(torch.utils.data.Dataset):
    """The images of one split, in index order. An image that cannot be read comes back as a blank
    input with label -1, so the main process can name the file in one line (an exception raised in
    a DataLoader worker would reach the user wrapped in the worker's traceback)."""

    def __init__(self, base, indices: np.ndarray, transform, input_size: tuple[int, ...]):
        self.base, self.indices, self.transform, self.input_size = base, indices, transform, input_size

    def __len__(self) -> int:
        return len(self.indices)

    def path(self, i: int) -> str:
        return self.base.samples[self.indices[i]][0]

    def __getitem__(self, i: int):
        path, label = self.base.samples[self.indices[i]]
        try:
            image = self.transform(self.base.loader(path))
        except (OSError, ValueError, SyntaxError):  # PIL's UnidentifiedImageError is an OSError
            return torch.zeros(self.input_size), -1, i
        return image, label, i


class _CheckedLoader:
    """A DataLoader over `_Indexed` that stops with a one-line error at the first unreadable image."""

    def __init__(self, loader: torch.utils.data.DataLoader, images: _Indexed):
        self.loader, self.images = loader, images

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for x, y, index in self.loader:
            broken = (y < 0).nonzero()
            if len(broken):
                path = self.images.path(int(index[broken[0, 0]]))
                raise AnyteachError(f"cannot read image {path}: not an image file, or a damaged one; remove or "
                                    "replace it")
            yield x, y, index


class ImageFolder(Dataset):
    """ImageNet-style class folders; images are resized and cropped per the model's preprocessing."""

    def __init__(self, root: str | Path, fraction: float = 1.0, subset_seed: int = 0, ref: str | None = None):
        from torchvision.datasets import ImageFolder as TVImageFolder

        root = Path(root).expanduser()
        if not 0 < fraction <= 1:
            raise AnyteachError(f"fraction must be in (0, 1], got {fraction}")
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise AnyteachError(f"imagefolder root {root} has no {split}/ directory of class folders")
        self.root, self.fraction, self.subset_seed = root, fraction, subset_seed
        self.ref = ref or f"imagefolder:{root}"
        self.name = root.name
        self.kind = "image"
        try:
            self._folders = {"train": TVImageFolder(str(root / "train")), "eval": TVImageFolder(str(root / "val"))}
        except (FileNotFoundError, RuntimeError) as e:
            raise AnyteachError(f"cannot read image folders under {root}: {str(e).splitlines()[0]}") from e
        if self._folders["train"].classes != self._folders["eval"].classes:
            raise AnyteachError(f"{root}/train and {root}/val have different class folders")
        self.class_names = _readable_class_names(self._folders["train"].classes)
        self.num_classes = len(self.class_names)
        n = {s: len(f.samples) for s, f in self._folders.items()}
        self.identity = f"imagefolder:{root.resolve()}:{self.num_classes}:{n['train']}:{n['eval']}"
        self._indices = {s: np.arange(len(f.samples)) for s, f in self._folders.items()}
        train_labels = np.asarray(self._folders["train"].targets)
        self._indices["transfer"] = (stratified_subset(train_labels, fraction, subset_seed) if fraction < 1
                                     else self._indices["train"])

    def _folder(self, split: str):
        self._check_split(split)
        return self._folders["eval" if split == "eval" else "train"]

    def labels(self, split: str) -> torch.Tensor:
        targets = np.asarray(self._folder(split).targets)
        return torch.from_numpy(targets[self._indices[split]]).long()

    def loader(self, split: str, batch_size: int = 256, shuffle: bool = False, seed: int = 0, epoch: int = 0,
               preprocessing: Preprocessing | None = None, augment: bool | Mapping[str, float] = False,
               drop_last: bool = False, num_workers: int | None = None, generator: torch.Generator | None = None):
        import os

        from timm.data import create_transform

        if num_workers is None:
            num_workers = min(8, os.cpu_count() or 1)

        p = preprocessing or Preprocessing(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bicubic")
        transform = create_transform(
            input_size=p.input_size or (3, 224, 224), is_training=bool(augment), interpolation=p.interpolation or "bilinear",
            crop_pct=p.crop_pct, crop_mode=p.crop_mode or "center", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        ds = _Indexed(self._folder(split), self._indices[split], transform, tuple(p.input_size or (3, 224, 224)))
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        return _CheckedLoader(torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g,
                                                          num_workers=num_workers, drop_last=drop_last,
                                                          persistent_workers=False,
                                                          pin_memory=torch.cuda.is_available()), ds)


def _readable_class_names(folders: list[str]) -> list[str]:
    """ImageNet synset folders (n01440764) become readable names through timm's bundled info."""
    if folders and all(f.startswith("n") and f[1:].isdigit() for f in folders):
        try:
            from timm.data import ImageNetInfo

            info = ImageNetInfo()
            return [info.label_name_to_description(f).split(",")[0] for f in folders]
        except Exception:  # noqa: BLE001 - readable names are a nicety, folder names still work
            pass
    return list(folders)


_MNIST1D_OPTIONS = {"size": int, "eval": int, "seed": int, "fraction": float, "subset_seed": int}
_IMAGEFOLDER_OPTIONS = {"fraction": float, "subset_seed": int}


def load_dataset(ref: str | Dataset) -> Dataset:
    """Resolve a dataset reference (see the module docstring).

    Raises:
        AnyteachError: unknown dataset, bad option, missing directory.
    """
    if isinstance(ref, Dataset):
        return ref
    ref = str(ref)
    kind, _, rest = ref.partition(":")
    if kind == "mnist1d":
        return Mnist1d(**_parse_options(rest, _MNIST1D_OPTIONS, ref), ref=ref)
    if kind == "imagefolder":
        root, *opts = rest.split(",")
        if not root:
            raise AnyteachError(f"imagefolder needs a root directory: imagefolder:<root>[,fraction=0.1] (got {ref!r})")
        return ImageFolder(root, **_parse_options(",".join(opts), _IMAGEFOLDER_OPTIONS, ref), ref=ref)
    raise AnyteachError(f"unknown dataset reference {ref!r}: expected mnist1d[:size=..,eval=..,seed=..] "
                        "or imagefolder:<root>[,fraction=..]")
