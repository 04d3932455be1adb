"""Dataset references: from the string a user types to splits that yield `(input, label, index)`.

A reference is one of
- `mnist1d` or `mnist1d:size=30000,eval=5000,seed=0`: the MNIST-1D benchmark (Greydanus 2020),
  generated offline and deterministically by the `mnist1d` package's generator (never downloaded)
  and cached on disk. `size` is the total number of samples, `eval` how many of them are held out
  for measuring, `seed` the generator's seed. `calib=N` adds a `calib` split of N *fresh* samples
  (generated with a seed derived from `seed`: neither train nor eval), from which a method may
  choose numbers (a mixing weight, an interpolation factor) without touching the eval split.
  `fresh=N` makes the `transfer` split N fresh samples (another derived seed) instead of `train`:
  data the models trained on `train` never saw (labelled; methods that use no labels ignore them).
- `glyphs` or `glyphs:train=10000,eval=3000,seed=0,calib=1000,fresh=0`: 12 classes of 32×32 RGB
  images of stroked shapes and letters with random warps, strokes, colours, clutter and noise
  (`glyphs.py`), generated in memory from `seed` (about 3,000 images/s on one core); every split is
  its own stream of the generator (disjoint); `calib` and `fresh` as for `mnist1d` (calib is on by
  default). `anyteach data export glyphs --out DIR` writes it as an image folder.
- `imagefolder:<root>`: ImageNet-style class folders `<root>/train/<class>/*` and `<root>/val/<class>/*`,
  and optionally `<root>/calib/<class>/*` (a `calib` split: held-out labelled images, never `val`).
  Each split's identity is its manifest (`images.folder_manifest`: relative path, class, size and
  modification time of every file), so an edited, relabelled or replaced image changes the identity
  of its split and every prediction cache and run key built on it. `verify=1` hashes the files'
  contents instead (reads every byte once per load: about as long as reading the folder once; a copy
  of the folder then keeps its identity). Every image mode is converted to 8-bit RGB by its meaning
  (`images.to_rgb8`: 16-bit images scaled, transparency over white).

Every reference accepts `fraction=<0..1>` (after a comma): the `transfer` split is then a
stratified subset of `train` holding that fraction of every class (the paper transfers on a
stratified 10% of ImageNet train), drawn with `subset_seed` (default 0).

Splits: `train` (what the zoo is trained on), `transfer` (what transfer runs on: `train`, its
stratified fraction, or fresh samples), `eval` (held out, only for measuring) and, where the
dataset has one, `calib` (held out, for choices a method makes from data). `index` is the sample's position in
its split, so per-sample results (cached teacher outputs, predictions) line up across models.

Every loader cuts one seeded order of its split into batches (`BatchOrder`); under DDP each rank
(`shard=(rank, world_size)`) takes its contiguous share of every batch, so the ranks together see
exactly the batches of a single process. Image folders are read by DataLoader workers that decode
each image once and send 8-bit tensors (a quarter of the bytes of floats; `Runtime.to_device` and
`Classifier` turn them into floats in [0, 1]); a split's loader is kept with its workers alive
between epochs, and augmentation draws its random numbers from (seed, epoch, sample), so an
augmented run resumes exactly and does not depend on the number of workers or ranks.
"""

from __future__ import annotations

import itertools
import math
import os
import random
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from PIL.Image import DecompressionBombError

from ..core.errors import AnyteachError
from ..core.io import atomic_path, cache_dir, text_digest
from ..core.registry import Registry
from ..core.seeds import CALIB_SEED_OFFSET, FRESH_SEED_OFFSET, augment_seed, epoch_seed, sample_seed
from ..models.references import Preprocessing
from .glyph_images import GLYPH_CLASSES, GLYPHS_VERSION, IMAGE_SIZE, augment_images, generate_glyphs
from .images import folder_manifest, load_rgb8, same_images, symlink_loop

SPLITS = ("train", "transfer", "eval")
OPTIONAL_SPLITS = ("calib",)
"""Splits only some datasets have (`mnist1d:calib=N`, an image folder's `calib/`)."""
UNLABELLED = -100
"""The label of a sample without one (an image folder's `unlabelled/`); cross-entropy ignores it."""
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
        if key in out:
            raise AnyteachError(f"option {key!r} is given twice in dataset reference {ref!r}; give it once")
        try:
            out[key] = allowed[key](value)
        except ValueError as e:
            kind = "an integer" if allowed[key] is int else "a number"
            raise AnyteachError(f"option {key}={value!r} in dataset reference {ref!r} is not {kind}") from e
    return out


def _cached_arrays(
    path: Path, rows: int, classes: int, dtype: type, ndim: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A generated dataset's cached inputs and labels, or None when there is no cache file or it is damaged (cut
    short, overwritten, of another shape): a damaged file is removed, and the data is generated again."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
        if (
            x.dtype == dtype
            and x.ndim == ndim
            and y.dtype == np.int64
            and len(x) == len(y) == rows
            and (not rows or (y.min() >= 0 and y.max() < classes))
        ):
            return torch.from_numpy(x), torch.from_numpy(y)
    except Exception:  # noqa: BLE001 - whatever numpy or zipfile raise for a damaged file: generate it again
        pass
    path.unlink(missing_ok=True)
    return None


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


def augment_signals(
    x: torch.Tensor, generator: torch.Generator, shift: float = 0, scale: float = 0, noise: float = 0
) -> torch.Tensor:
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


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The run's shuffled order of `n` samples in one epoch: a permutation drawn from (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


class BatchOrder(torch.utils.data.Sampler):
    """The batches of a split in one epoch: the split in order (or in the seeded order of `epoch_order`),
    cut into batches of `batch_size`. With `shard=(rank, world_size)` it yields only this rank's
    contiguous share of every batch (`torch.tensor_split`: equal shares when `batch_size` divides by
    the world size), so the ranks together see exactly the batches of one process; a rank whose
    share of the last batch is empty skips it. Set `epoch` between passes (a DataLoader with
    persistent workers keeps its batch sampler). With `tag_epoch`, each index is yielded as
    `(index, epoch)`, for datasets whose per-sample randomness follows the epoch.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        shard: tuple[int, int] = (0, 1),
        tag_epoch: bool = False,
    ):
        self.n, self.batch_size, self.shuffle, self.seed, self.epoch = n, batch_size, shuffle, seed, epoch
        self.drop_last, self.shard, self.tag_epoch = drop_last, shard, tag_epoch

    def __len__(self) -> int:
        """The number of batches of the whole split (every rank steps this many times in training)."""
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def batches(self) -> Iterator[torch.Tensor]:
        """This rank's share of each batch, as index tensors."""
        order = epoch_order(self.n, self.seed, self.epoch) if self.shuffle else torch.arange(self.n)
        rank, world = self.shard
        for i in range(len(self)):
            share = torch.tensor_split(order[i * self.batch_size : (i + 1) * self.batch_size], world)[rank]
            if len(share):
                yield share

    def __iter__(self) -> Iterator[list]:
        for share in self.batches():
            yield [(i, self.epoch) for i in share.tolist()] if self.tag_epoch else share.tolist()


@dataclass
class TensorLoader:
    """Batches `(input, label, index)` from in-memory tensors; shuffled per epoch from `seed`
    (`BatchOrder`: `shard` selects a rank's share of every batch).

    With `augment` (keyword arguments of `augmenter`: `augment_signals`, or `glyphs.augment_images`
    for images), every batch is augmented with random
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
    shard: tuple[int, int] = (0, 1)
    augmenter: Callable[..., torch.Tensor] = augment_signals

    def _order(self) -> BatchOrder:
        return BatchOrder(
            len(self.labels), self.batch_size, self.shuffle, self.seed, self.epoch, self.drop_last, self.shard
        )

    def __len__(self) -> int:
        return len(self._order())

    def __iter__(self) -> Iterator[Batch]:
        noise = self.generator
        if self.augment and noise is None:
            noise = torch.Generator().manual_seed(augment_seed(epoch_seed(self.seed, self.epoch)))
        for idx in self._order().batches():
            x = self.inputs[idx]
            if self.augment:
                x = self.augmenter(x, noise, **self.augment)
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

    def loader(
        self,
        split: str,
        batch_size: int = 256,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        preprocessing: Preprocessing | None = None,
        augment: bool | Mapping[str, float] = False,
        drop_last: bool = False,
        num_workers: int | None = None,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ):
        """Iterable of `(input, label, index)` batches. Inputs are un-normalised (images: 8-bit): each
        model normalises its own (see `Classifier`); `preprocessing` only sets image size and crop.

        `augment` switches on the dataset's own random augmentation (signals: `augment_signals`
        with `MNIST1D_AUGMENTATION`, or the given keyword arguments; images: timm's training
        transforms); `generator` is the random source of signal augmentation (a resumable run
        passes its own, whose state it saves). `num_workers` is the number of loader processes of
        datasets read from files (None: their default); `shard=(rank, world_size)` yields only a
        rank's share of every batch (`BatchOrder`)."""
        raise NotImplementedError  # pragma: no cover

    @property
    def extra_splits(self) -> tuple[str, ...]:
        """The optional splits (`OPTIONAL_SPLITS`) this dataset has."""
        return ()

    @property
    def transfer_labelled(self) -> bool:
        """Whether the transfer split has labels (False: an image folder's `unlabelled/`, unlabelled data)."""
        return True

    @property
    def transfer_unseen(self) -> bool:
        """Whether the transfer split holds samples the models were not trained on (fresh or unlabelled data),
        rather than the train split or a subset of it."""
        return False

    def has_split(self, split: str) -> bool:
        return split in SPLITS or split in self.extra_splits

    def _check_split(self, split: str) -> None:
        if not self.has_split(split):
            hint = (
                " (a calibration split: mnist1d:calib=5000, or a calib/ folder of an image folder)"
                if split == "calib"
                else ""
            )
            raise AnyteachError(
                f"unknown split {split!r} of dataset {self.ref!r}; its splits are "
                f"{', '.join(SPLITS + self.extra_splits)}{hint}"
            )

    def split_identity(self, split: str) -> str:
        self._check_split(split)
        if split == "transfer" and self.fraction < 1:
            return f"{self.identity}/transfer-{self.fraction}-{self.subset_seed}"
        return f"{self.identity}/{'train' if split == 'transfer' else split}"

    def input_shape(self, split: str) -> tuple[int, ...] | None:
        """The shape of one sample of a split as the data holds it, before any model resizes it (an image
        folder: its first image's); None when unknown."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ref!r})"


class _InMemory(Dataset):
    """A generated dataset held in memory as tensors per split (`_x`, `_y`): its inputs, labels and
    loaders, with the subclass's default augmentation (`augmentation`, applied by `augmenter`)."""

    augmentation: Mapping[str, float] = {}
    augmenter: Callable[..., torch.Tensor] = staticmethod(augment_signals)
    _x: dict[str, torch.Tensor]  # set by the subclass
    _y: dict[str, torch.Tensor]

    def inputs(self, split: str) -> torch.Tensor:
        self._check_split(split)
        return self._x[split]

    def labels(self, split: str) -> torch.Tensor:
        self._check_split(split)
        return self._y[split]

    def input_shape(self, split: str) -> tuple[int, ...] | None:
        x = self.inputs(split)
        return tuple(x.shape[1:]) if len(x) else None

    def loader(
        self,
        split: str,
        batch_size: int = 256,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        preprocessing: Preprocessing | None = None,
        augment: bool | Mapping[str, float] = False,
        drop_last: bool = False,
        num_workers: int | None = None,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> TensorLoader:
        params = dict(self.augmentation) if augment is True else dict(augment) if augment else None
        return TensorLoader(
            self.inputs(split),
            self.labels(split),
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            epoch=epoch,
            drop_last=drop_last,
            augment=params,
            generator=generator,
            shard=shard,
            augmenter=self.augmenter,
        )


class Mnist1d(_InMemory):
    """MNIST-1D: 10 classes of 40-sample signals, generated offline and cached as `.npz`."""

    def __init__(
        self,
        size: int = 30_000,
        eval: int = 5_000,
        seed: int = 0,
        fraction: float = 1.0,
        subset_seed: int = 0,
        calib: int = 0,
        fresh: int = 0,
        ref: str | None = None,
    ):
        if size < 20 or not 0 < eval < size:
            raise AnyteachError(f"mnist1d needs size >= 20 and 0 < eval < size (got size={size}, eval={eval})")
        if size % 10:
            raise AnyteachError(
                f"mnist1d size must be a multiple of 10 (the generator makes size / 10 per class), got {size}"
            )
        if not 0 < fraction <= 1:
            raise AnyteachError(f"fraction must be in (0, 1], got {fraction}")
        for name, value in (("seed", seed), ("subset_seed", subset_seed)):
            if not 0 <= value < 2**32 - FRESH_SEED_OFFSET:
                raise AnyteachError(f"mnist1d {name} must be in [0, 2**32 - {FRESH_SEED_OFFSET}), got {value}")
        if calib < 0 or fresh < 0:
            raise AnyteachError(f"mnist1d calib and fresh must be >= 0 (got calib={calib}, fresh={fresh})")
        if fresh and fraction < 1:
            raise AnyteachError(
                "mnist1d fresh (new transfer samples) and fraction (a subset of train) exclude each other"
            )
        self.calib, self.fresh = calib, fresh
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
        elif fresh:
            self._x["transfer"], self._y["transfer"] = self._fresh_samples(fresh, seed + FRESH_SEED_OFFSET)
        else:
            self._x["transfer"], self._y["transfer"] = self._x["train"], self._y["train"]
        if calib:
            self._x["calib"], self._y["calib"] = self._fresh_samples(calib, seed + CALIB_SEED_OFFSET)

    @property
    def extra_splits(self) -> tuple[str, ...]:
        return ("calib",) if self.calib else ()

    @property
    def transfer_unseen(self) -> bool:
        return bool(self.fresh)

    def split_identity(self, split: str) -> str:
        self._check_split(split)
        if split == "calib":
            return f"{self.identity}/calib-{self.calib}-{self.seed + CALIB_SEED_OFFSET}"
        if split == "transfer" and self.fresh:
            return f"{self.identity}/fresh-{self.fresh}-{self.seed + FRESH_SEED_OFFSET}"
        return super().split_identity(split)

    def _fresh_samples(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `n` samples of a generation with `seed` of at least as many samples as this dataset
        (so the generator's normalisation matches), rounded up to a multiple of 10."""
        total = max(self.size_total, -(-n // 10) * 10)
        other = Mnist1d(size=total, eval=10, seed=seed)
        x = torch.cat([other._x["train"], other._x["eval"]])[:n]
        y = torch.cat([other._y["train"], other._y["eval"]])[:n]
        return x, y

    def _generate(self) -> tuple[torch.Tensor, torch.Tensor]:
        path = cache_dir() / "data" / f"mnist1d-{text_digest(self.identity)}.npz"
        cached = _cached_arrays(path, self.size_total, len(MNIST1D_CLASS_NAMES), np.float32, 2)
        if cached is not None:
            return cached
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

    augmentation = MNIST1D_AUGMENTATION  # what `augment=True` means for signals


GLYPHS_AUGMENTATION: dict[str, float] = {"shift": 0.08, "rotate": 0.2, "scale": 0.1, "noise": 0.03}
"""The images' random augmentation (`glyphs.augment_images`): what `augment=True` applies to glyphs."""
_GLYPH_STREAMS = {"train": 0, "eval": 1, "calib": 2, "fresh": 3}
"""Every split of a glyphs dataset is its own stream of the generator, so no two splits share a sample."""


class Glyphs(_InMemory):
    """Glyphs: 12 classes of 32×32 RGB images of stroked shapes and letters (`glyphs.py`), generated
    in memory from a seed, every split from its own stream (splits are disjoint; `calib` and `fresh`
    as for `mnist1d`). Inputs are 8-bit images `(3, 32, 32)`; each model normalises its own."""

    def __init__(
        self,
        train: int = 10_000,
        eval: int = 3_000,
        seed: int = 0,
        calib: int = 1_000,
        fresh: int = 0,
        fraction: float = 1.0,
        subset_seed: int = 0,
        ref: str | None = None,
    ):
        classes = len(GLYPH_CLASSES)
        if train < classes or eval < 1:
            raise AnyteachError(
                f"glyphs needs train >= {classes} (one per class) and eval >= 1 (got train={train}, eval={eval})"
            )
        if calib < 0 or fresh < 0:
            raise AnyteachError(f"glyphs calib and fresh must be >= 0 (got calib={calib}, fresh={fresh})")
        if not 0 < fraction <= 1:
            raise AnyteachError(f"fraction must be in (0, 1], got {fraction}")
        if fresh and fraction < 1:
            raise AnyteachError(
                "glyphs fresh (new transfer samples) and fraction (a subset of train) exclude each other"
            )
        if not 0 <= seed < 2**31:
            raise AnyteachError(f"glyphs seed must be in [0, 2**31), got {seed}")
        self.sizes = {"train": train, "eval": eval, "calib": calib, "fresh": fresh}
        self.seed, self.calib, self.fresh = seed, calib, fresh
        self.fraction, self.subset_seed = fraction, subset_seed
        self.name = "glyphs"
        self.ref = ref or f"glyphs:train={train},eval={eval},seed={seed},calib={calib}"
        self.num_classes = classes
        self.class_names = list(GLYPH_CLASSES)
        self.identity = f"{GLYPHS_VERSION}:seed={seed}"
        self.kind = "image"
        self.input_size = (3, IMAGE_SIZE, IMAGE_SIZE)
        self._x: dict[str, torch.Tensor] = {}
        self._y: dict[str, torch.Tensor] = {}
        for split in ("train", "eval", "calib"):
            if self.sizes[split]:
                self._x[split], self._y[split] = self._generate(split)
        if fraction < 1:
            keep = torch.from_numpy(stratified_subset(self._y["train"].numpy(), fraction, subset_seed))
            self._x["transfer"], self._y["transfer"] = self._x["train"][keep], self._y["train"][keep]
        elif fresh:
            self._x["transfer"], self._y["transfer"] = self._generate("fresh")
        else:
            self._x["transfer"], self._y["transfer"] = self._x["train"], self._y["train"]

    def _generate(self, stream: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One split's images and labels, generated once and cached on disk (a study's every run
        loads the dataset; reading 8-bit images back is much faster than drawing them)."""
        n = self.sizes[stream]
        path = cache_dir() / "data" / f"glyphs-{text_digest(f'{GLYPHS_VERSION}:{self.seed}:{stream}:{n}')}.npz"
        cached = _cached_arrays(path, n, len(GLYPH_CLASSES), np.uint8, 4)
        if cached is not None:
            return cached
        x, y = generate_glyphs(n, self.seed, _GLYPH_STREAMS[stream])
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, x=x.numpy(), y=y.numpy())
        return x, y

    @property
    def extra_splits(self) -> tuple[str, ...]:
        return ("calib",) if self.calib else ()

    @property
    def transfer_unseen(self) -> bool:
        return bool(self.fresh)

    def split_identity(self, split: str) -> str:
        self._check_split(split)
        if split == "transfer" and self.fresh:
            return f"{self.identity}/fresh-{self.fresh}"
        if split == "transfer" and self.fraction < 1:
            return f"{self.identity}/train-{self.sizes['train']}/transfer-{self.fraction}-{self.subset_seed}"
        name = "train" if split == "transfer" else split
        # a stream's labels are a permutation of its n samples: its images depend on n
        return f"{self.identity}/{name}-{self.sizes[name]}"

    augmentation = GLYPHS_AUGMENTATION  # what `augment=True` means for images
    augmenter = staticmethod(augment_images)


def export_imagefolder(data: Dataset, out: str | Path, splits: Mapping[str, str] | None = None) -> Path:
    """Write a dataset held in memory as an ImageNet-style folder `out/<split>/<nn>_<class>/<index>.png`
    (`train/`, `val/` from `eval`, and `calib/` where the dataset has it), so `imagefolder:<out>` reads
    it back with the same labels (the numbered class folders sort in the dataset's class order). Written
    into a temporary folder beside `out` and renamed: never half-written.

    Raises:
        AnyteachError: `out` exists, or the dataset has no in-memory images.
    """
    from PIL import Image

    out = Path(out).expanduser()
    if out.exists():
        raise AnyteachError(f"{out} exists; choose a new directory to export to")
    if not hasattr(data, "inputs") or getattr(data, "kind", "") != "image":
        raise AnyteachError(f"dataset {data.ref!r} is not a generated image dataset; only those are exported")
    folders = dict(
        splits or {"train": "train", "eval": "val", **({"calib": "calib"} if data.has_split("calib") else {})}
    )
    # class folders are read back in sorted order: a numbered prefix keeps the dataset's label order
    width = len(str(data.num_classes - 1))
    names = [f"{i:0{width}d}_{name}" for i, name in enumerate(data.class_names)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        for split, folder in folders.items():
            images = data.inputs(split).permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3) uint8
            labels = data.labels(split).tolist()
            for name in names:
                (tmp / folder / name).mkdir(parents=True, exist_ok=True)
            for i, (image, label) in enumerate(zip(images, labels)):  # one file per image: I/O, not a hot path
                Image.fromarray(image).save(tmp / folder / names[label] / f"{i:06d}.png")
        tmp.rename(out)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@contextmanager
def _seeded(seed: int, restore: bool) -> Iterator[None]:
    """Python's and torch's global random generators seeded with `seed` (their states restored after,
    with `restore`: in the training process, whose random state belongs to the run)."""
    saved = (random.getstate(), torch.get_rng_state()) if restore else None
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            torch.set_rng_state(saved[1])


UNREADABLE, OVERSIZED = -1, -2
"""The labels a loader worker gives an image it cannot read, or one over PIL's pixel limit."""


def _pixel_limit() -> str:
    from PIL import Image

    return f"{2 * Image.MAX_IMAGE_PIXELS} pixels" if Image.MAX_IMAGE_PIXELS else "no limit set"


class _Indexed(torch.utils.data.Dataset):
    """Samples of one split of an image folder: `(8-bit image, label, index in the split)`.

    Keys are positions in the split, or `(position, epoch)` from an epoch-tagged `BatchOrder`: a
    random transform then draws from (seed, epoch, position), wherever and whenever it runs. An image
    that cannot be read comes back blank with label `UNREADABLE` (`OVERSIZED` when it has more pixels
    than PIL's decompression-bomb limit), so the training process can name the file in one line (an
    exception raised in a loader worker would reach the user inside its traceback).
    """

    def __init__(
        self, base, indices: np.ndarray, transform, input_size: tuple[int, ...], random_seed: int | None = None
    ):
        self.base, self.indices, self.transform, self.random_seed = base, indices, transform, random_seed
        self.input_size = tuple(input_size)

    def __len__(self) -> int:
        return len(self.indices)

    def path(self, i: int) -> str:
        return self.base.samples[self.indices[i]][0]

    def __getitem__(self, key):
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        path, label = self.base.samples[self.indices[i]]
        try:
            image = self.base.loader(path)  # decoded once; every model of the step shares the tensor
            if self.random_seed is None:
                return self.transform(image), label, i
            seed = sample_seed(self.random_seed, epoch, i)
            with _seeded(seed % 2**63, restore=torch.utils.data.get_worker_info() is None):
                return self.transform(image), label, i
        except (OSError, ValueError, SyntaxError):  # PIL's UnidentifiedImageError is an OSError
            return torch.zeros(self.input_size, dtype=torch.uint8), UNREADABLE, i
        except DecompressionBombError:  # more pixels than PIL's limit: refused before decoding
            return torch.zeros(self.input_size, dtype=torch.uint8), OVERSIZED, i


def default_workers() -> int:
    """Loader processes per training process: the cores this process may use, shared with the other
    processes of a torchrun launch on this machine, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))


class _EpochLoader:
    """One epoch of a kept DataLoader: sets its batch order's epoch, then iterates it."""

    def __init__(self, loader: torch.utils.data.DataLoader, order: BatchOrder, epoch: int):
        self.loader, self.order, self.epoch = loader, order, epoch

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[Batch]:
        self.order.epoch = self.epoch
        images = self.loader.dataset
        for x, y, index in self.loader:
            broken = ((y == UNREADABLE) | (y == OVERSIZED)).nonzero()
            if len(broken):
                first = int(broken[0, 0])
                path = images.path(int(index[first]))  # type: ignore[attr-defined]  # an image folder's
                if int(y[first]) == OVERSIZED:
                    raise AnyteachError(
                        f"image {path} has more pixels than PIL's decompression-bomb limit "
                        f"({_pixel_limit()}); shrink or remove it"
                    )
                raise AnyteachError(
                    f"cannot read image {path}: not an image file, or a damaged one; remove or replace it"
                )
            yield x, y, index


class _UnlabelledFolder:
    """The images of an `unlabelled/` folder (any depth, no class folders), shaped like a torchvision
    `ImageFolder` (`root`, `samples`, `targets`, `loader`) with every label `UNLABELLED`."""

    def __init__(self, root: Path):
        from torchvision.datasets.folder import IMG_EXTENSIONS

        self.root, self.classes, self.loader = str(root), list[str](), load_rgb8
        files = sorted(str(f) for f in root.rglob("*") if f.suffix.lower() in IMG_EXTENSIONS and f.is_file())
        if not files:
            raise AnyteachError(f"{root} holds no image files ({', '.join(IMG_EXTENSIONS)})")
        self.samples = [(f, UNLABELLED) for f in files]
        self.targets = [UNLABELLED] * len(files)


class ImageFolder(Dataset):
    """ImageNet-style class folders; images are resized and cropped per the model's preprocessing.

    `<root>/train/` and `<root>/val/` hold class folders; an optional `<root>/calib/` (class folders:
    held-out labelled images) is the `calib` split, and an optional `<root>/unlabelled/` (images at any
    depth, no classes) is the transfer split: data the models were not trained on, for methods that use
    no labels of their transfer data. `ImageFolder.from_folders` builds one from torchvision
    `ImageFolder` objects a user already has.
    """

    def __init__(
        self, root: str | Path, fraction: float = 1.0, subset_seed: int = 0, ref: str | None = None, verify: int = 0
    ):
        from torchvision.datasets import ImageFolder as TVImageFolder

        root = Path(root).expanduser()
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise AnyteachError(f"imagefolder root {root} has no {split}/ directory of class folders")
        for split in ("train", "val", "calib", "unlabelled"):
            loop = symlink_loop(root / split) if (root / split).is_dir() else None
            if loop is not None:
                raise AnyteachError(
                    f"{loop[0]} is a symlink to {loop[1]}: following it would read images again under the wrong "
                    "class (a folder it is inside of, or another class of the split); remove the link"
                )
        try:
            folders: dict[str, Any] = {
                "train": TVImageFolder(str(root / "train"), loader=load_rgb8),
                "eval": TVImageFolder(str(root / "val"), loader=load_rgb8),
            }
            if (root / "calib").is_dir():
                folders["calib"] = TVImageFolder(str(root / "calib"), loader=load_rgb8)
        except (FileNotFoundError, RuntimeError) as e:
            raise AnyteachError(f"cannot read image folders under {root}: {str(e).splitlines()[0]}") from e
        if (root / "unlabelled").is_dir():
            folders["unlabelled"] = _UnlabelledFolder(root / "unlabelled")
        self.root = root
        self._index(
            folders,
            root.name,
            ref or f"imagefolder:{root}",
            f"imagefolder:{root.resolve()}",
            fraction,
            subset_seed,
            verify,
        )

    @classmethod
    def from_folders(cls, folders: Mapping[str, Any], name: str, verify: int = 0) -> ImageFolder:
        """An image dataset from torchvision `ImageFolder` objects (or anything with their `root`, `samples`,
        `targets`, `classes` and `loader`) by split: `train`, `eval` and optionally `calib` and `unlabelled`.
        Images are read with anyteach's own loader (every mode to 8-bit RGB) and each model's transform."""
        data = cls.__new__(cls)
        data.root = Path(folders["eval"].root)
        roots = ",".join(str(Path(f.root).resolve()) for f in folders.values())
        data._index(dict(folders), name, f"folders:{name}", f"folders:{text_digest(roots)}", 1.0, 0, verify)
        return data

    def _index(
        self,
        folders: dict[str, Any],
        name: str,
        ref: str,
        base_identity: str,
        fraction: float,
        subset_seed: int,
        verify: int,
    ) -> None:
        """The splits of `folders` checked, indexed and identified by their manifests."""
        if not 0 < fraction <= 1:
            raise AnyteachError(f"fraction must be in (0, 1], got {fraction}")
        if fraction < 1 and "unlabelled" in folders:
            raise AnyteachError(
                "fraction takes a subset of train/ as the transfer split, but with an unlabelled/ folder the "
                "transfer split is unlabelled/: drop one of them"
            )
        self.fraction, self.subset_seed, self.ref, self.name, self.kind = fraction, subset_seed, ref, name, "image"
        self._folders = folders
        for split, folder in (("val", "eval"), ("calib", "calib")):
            if folder in self._folders and self._folders["train"].classes != self._folders[folder].classes:
                raise AnyteachError(f"{self.ref}: train and {split} have different class folders")
        self.class_names = _readable_class_names(self._folders["train"].classes)
        self.num_classes = len(self.class_names)
        try:
            self._manifests = {
                s: folder_manifest(f.root, f.samples, verify=bool(verify))[:20] for s, f in self._folders.items()
            }
        except OSError as e:
            raise AnyteachError(f"cannot read {e.filename}: {e.strerror}") from e
        for first, second in itertools.combinations(self._folders, 2):
            a, b = self._folders[first], self._folders[second]
            if self._manifests[first] == self._manifests[second] or same_images(a.root, a.samples, b.root, b.samples):
                raise AnyteachError(
                    f"{a.root} and {b.root} hold the same images: a split that is another split leaks it "
                    "(the eval numbers would be measured on what the models trained or chose on); give each split "
                    "its own images"
                )
        self._base_identity = f"{base_identity}:{self.num_classes}"
        self.identity = f"{self._base_identity}:" + ":".join(self._manifests[s] for s in sorted(self._manifests))
        self._indices = {s: np.arange(len(f.samples)) for s, f in self._folders.items()}
        train_labels = np.asarray(self._folders["train"].targets)
        if "unlabelled" in self._folders:
            self._indices["transfer"] = self._indices["unlabelled"]
        else:
            self._indices["transfer"] = (
                stratified_subset(train_labels, fraction, subset_seed) if fraction < 1 else self._indices["train"]
            )
        self._loaders: OrderedDict[tuple, tuple[torch.utils.data.DataLoader, BatchOrder]] = OrderedDict()

    @property
    def extra_splits(self) -> tuple[str, ...]:
        return ("calib",) if "calib" in self._folders else ()

    @property
    def transfer_labelled(self) -> bool:
        return "unlabelled" not in self._folders

    @property
    def transfer_unseen(self) -> bool:
        return "unlabelled" in self._folders

    def _folder_of(self, split: str) -> str:
        if split in ("eval", "calib"):
            return split
        return "unlabelled" if split == "transfer" and "unlabelled" in self._folders else "train"

    def split_identity(self, split: str) -> str:
        """The split's own manifest: a changed train image leaves the eval predictions' key alone."""
        self._check_split(split)
        folder = self._folder_of(split)
        base = f"{self._base_identity}:{self._manifests[folder]}"
        if split == "transfer" and self.fraction < 1:
            return f"{base}/transfer-{self.fraction}-{self.subset_seed}"
        return f"{base}/{folder}"

    def _folder(self, split: str):
        self._check_split(split)
        return self._folders[self._folder_of(split)]

    def labels(self, split: str) -> torch.Tensor:
        targets = np.asarray(self._folder(split).targets)
        return torch.from_numpy(targets[self._indices[split]]).long()

    def input_shape(self, split: str) -> tuple[int, ...] | None:
        samples = self._folder(split).samples
        if not len(self._indices[split]):
            return None
        from PIL import Image

        try:
            with Image.open(samples[self._indices[split][0]][0]) as image:
                return (3, image.height, image.width)
        except (OSError, ValueError):
            return None

    KEPT_LOADERS = 2
    """How many loaders (with their worker processes) stay alive for reuse: a run iterates the same
    transfer and eval loaders every epoch."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_loaders"] = OrderedDict()  # worker processes stay where they were started
        return state

    def loader(
        self,
        split: str,
        batch_size: int = 256,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        preprocessing: Preprocessing | None = None,
        augment: bool | Mapping[str, float] = False,
        drop_last: bool = False,
        num_workers: int | None = None,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> _EpochLoader:
        workers = default_workers() if num_workers is None else num_workers
        p = preprocessing or Preprocessing(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bicubic")
        key = (split, batch_size, shuffle, seed, p, bool(augment), drop_last, workers, shard)
        if key not in self._loaders:
            self._loaders[key] = self._new_loader(
                split, batch_size, shuffle, seed, p, bool(augment), drop_last, workers, shard
            )
            while len(self._loaders) > self.KEPT_LOADERS:
                self._loaders.popitem(last=False)  # its workers shut down with it
        self._loaders.move_to_end(key)
        loader, order = self._loaders[key]
        return _EpochLoader(loader, order, epoch)

    def _new_loader(
        self,
        split: str,
        batch_size: int,
        shuffle: bool,
        seed: int,
        p: Preprocessing,
        augment: bool,
        drop_last: bool,
        workers: int,
        shard: tuple[int, int],
    ):
        from timm.data import create_transform

        # 8-bit tensors out of the workers (timm's "prefetcher" transforms): the float conversion and
        # the model's own normalisation happen on the device
        transform = create_transform(
            input_size=tuple(p.input_size or (3, 224, 224)),  # type: ignore[arg-type]  # (channels, h, w)
            is_training=augment,
            interpolation=p.interpolation or "bilinear",
            crop_pct=p.crop_pct,
            crop_mode=p.crop_mode or "center",
            use_prefetcher=True,
        )
        dataset = _Indexed(
            self._folder(split),
            self._indices[split],
            transform,
            p.input_size or (3, 224, 224),
            seed if augment else None,
        )
        order = BatchOrder(len(dataset), batch_size, shuffle, seed, 0, drop_last, shard, tag_epoch=True)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=order,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=4 if workers > 0 else None,
        )
        return loader, order


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


_MNIST1D_OPTIONS = {
    "size": int,
    "eval": int,
    "seed": int,
    "fraction": float,
    "subset_seed": int,
    "calib": int,
    "fresh": int,
}
_IMAGEFOLDER_OPTIONS = {"fraction": float, "subset_seed": int, "verify": int}
_GLYPHS_OPTIONS = {
    "train": int,
    "eval": int,
    "seed": int,
    "calib": int,
    "fresh": int,
    "fraction": float,
    "subset_seed": int,
}


def load_dataset(ref: str | Path | Dataset | Mapping[str, Any], **options: Any) -> Dataset:
    """A dataset, as a reference (see the module docstring) or as objects, resolved to a `Dataset`.

    Objects: a mapping of split names to a user's datasets, loaders or folders
    (`{"train": ..., "eval": ..., "calib": ..., "unlabelled": ...}`; see `anyteach.data.objects`), with
    `class_names=` and `name=` as options.

    Raises:
        AnyteachError: unknown dataset, bad option, missing directory, objects that cannot be read.
    """
    if isinstance(ref, Dataset):
        return ref
    if not isinstance(ref, (str, Path)):
        for reader in OBJECT_READERS:
            data = reader(ref, **options)
            if data is not None:
                return data
        raise AnyteachError(
            f"cannot use a {type(ref).__name__} as data: give a dataset reference (mnist1d, glyphs, "
            "imagefolder:DIR) or one object per split, {'train': ..., 'eval': ...} (torch Datasets, "
            "DataLoaders, torchvision ImageFolders, Hugging Face splits)"
        )
    if options:
        raise AnyteachError(f"{', '.join(options)}: options of data given as objects, not of a reference")
    ref = str(ref)
    kind, _, rest = ref.partition(":")
    if kind not in DATASET_KINDS:
        raise AnyteachError(
            f"unknown dataset reference {ref!r}: expected mnist1d[:size=..,eval=..,seed=..], "
            "glyphs[:train=..,eval=..,seed=..] or imagefolder:<root>[,fraction=..]"
        )
    return DATASET_KINDS[kind](rest, ref)


OBJECT_READERS: list[Callable[..., Dataset | None]] = []
"""Functions that turn data a user holds as objects into a `Dataset` (None: not theirs to read);
`anyteach.data.objects` registers the built-in one."""


DATASET_KINDS: Registry[Callable[[str, str], Dataset]] = Registry("dataset kind")
"""Dataset reference kinds (`kind:rest`) by name: a function `(rest, ref) -> Dataset`."""


@DATASET_KINDS.decorator("mnist1d")
def _mnist1d(rest: str, ref: str) -> Dataset:
    return Mnist1d(**_parse_options(rest, _MNIST1D_OPTIONS, ref), ref=ref)


@DATASET_KINDS.decorator("glyphs")
def _glyphs(rest: str, ref: str) -> Dataset:
    return Glyphs(**_parse_options(rest, _GLYPHS_OPTIONS, ref), ref=ref)


@DATASET_KINDS.decorator("imagefolder")
def _imagefolder(rest: str, ref: str) -> Dataset:
    root, *opts = rest.split(",")
    if not root:
        raise AnyteachError(f"imagefolder needs a root directory: imagefolder:<root>[,fraction=0.1] (got {ref!r})")
    return ImageFolder(root, **_parse_options(",".join(opts), _IMAGEFOLDER_OPTIONS, ref), ref=ref)
