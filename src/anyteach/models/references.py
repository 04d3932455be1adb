"""Model references: from the string a user types to a classifier with its metadata.

A reference is one of
- `timm:<name>`: a timm architecture with its pretrained weights (through timm and the Hugging Face
  hub, which honours `HF_HUB_OFFLINE=1` and a populated cache);
- `timm:<name>@<path>`: a timm architecture with local weights (safetensors or a plain state dict);
- either with timm model arguments after `?`: `timm:vit_tiny_patch16_224@w.safetensors?img_size=64`
  (`&` between arguments; values are read as YAML scalars: `64`, `0.1`, `true`, `avg`), passed to
  `timm.create_model`, so a network trained at another input size or head is rebuilt as it was trained;
- `zoo:<zoo>/<model>` (or `zoo:<zoo>@<seed>/<model>`): a model of a built-in zoo;
- the path of a model saved by anyteach (`<file>.safetensors` with its `<file>.json` sidecar, or a
  directory holding `model.safetensors` and `model.json`).

Every reference resolves to a `Classifier`: the network plus `ModelInfo` (number of classes, input
preprocessing, family, parameter count). The classifier normalises its own input, so one batch of
raw inputs can be fed to models with different preprocessing, as timm's pretrained configs require.
Loading never unpickles arbitrary objects: safetensors, or `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import AnyteachError
from ..core.io import file_digest, read_json, save_tensors, text_digest, write_json
from ..core.registry import Registry
from .architectures import ARCHITECTURES, build_architecture

SIDECAR_FORMAT = "anyteach-model/1"


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input. `None` fields mean "as the data comes" (e.g. MNIST-1D signals).

    `mean`/`std` are applied by the classifier itself; `input_size`, `crop_pct`, `interpolation` and
    `crop_mode` tell an image loader how to resize and crop (timm's data config keys).
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: tuple[int, ...] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    crop_mode: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "preprocessing") -> Preprocessing:
        """From a mapping holding its fields (a sidecar's `preprocessing`, a config's `pretrained_cfg`:
        other keys are ignored); every value is checked (`check_preprocessing`).

        Raises:
            AnyteachError: a value of the wrong type or out of range, naming the key and `where`.
        """
        return cls(**check_preprocessing({k: d.get(k) for k in PREPROCESSING_KEYS}, where))

    def overridden(self, overrides: Mapping[str, Any]) -> Preprocessing:
        """This preprocessing with the given (checked) fields replaced; `None` values change nothing."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


PREPROCESSING_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
"""What a user may override of a model's preprocessing: after `?` in a reference
(`timm:resnet18@w.safetensors?input_size=3,32,32`), as `load_model` keywords, or with `--input-size`."""
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming", "random")
CROP_MODES = ("center", "squash", "border")


def _numbers(value: Any, kind: type, key: str, where: str) -> tuple:
    """`3,32,32`, `3x32x32`, `[3, 32, 32]` or `32` as a tuple of `kind` (int or float)."""
    if isinstance(value, str):
        parts: list[Any] = [v for v in value.replace("x", ",").strip("[]() ").split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    words = "whole numbers like 3,32,32" if kind is int else "numbers like 0.5,0.5,0.5"
    try:
        if not parts or any(isinstance(v, bool) or not isinstance(v, (int, float, str)) for v in parts):
            raise ValueError
        floats = [float(v) for v in parts]
        if kind is int and not all(v.is_integer() for v in floats):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise AnyteachError(f"{where}: {key} must be {words}, got {value!r}") from None
    if not all(math.isfinite(v) for v in floats):
        raise AnyteachError(f"{where}: {key} must be finite numbers, got {value!r}")
    return tuple(int(v) for v in floats) if kind is int else tuple(floats)


def check_preprocessing(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Preprocessing values checked and normalised (`None` stays `None`: "as the data comes").

    `input_size` is (channels, height, width) for images, (length,) or (channels, length) for
    signals; one number above 4 is an image side (`32` -> `(3, 32, 32)`). `mean`/`std` have one value
    per channel (or one for all), `std` positive; `crop_pct` is in (0, 1]; `interpolation` and
    `crop_mode` are timm's names.

    Raises:
        AnyteachError: naming the key, the value and `where` it came from.
    """
    unknown = sorted(set(values) - set(PREPROCESSING_KEYS))
    if unknown:
        raise AnyteachError(
            f"{where}: unknown preprocessing key {unknown[0]!r}; known: {', '.join(PREPROCESSING_KEYS)}"
        )
    out: dict[str, Any] = dict.fromkeys(PREPROCESSING_KEYS)
    if values.get("input_size") is not None:
        size = _numbers(values["input_size"], int, "input_size", where)
        size = (3, size[0], size[0]) if len(size) == 1 and size[0] > 4 else size
        if not 1 <= len(size) <= 3 or any(v < 1 or v > 65536 for v in size):
            raise AnyteachError(
                f"{where}: input_size must be (channels, height, width) with sizes in [1, 65536], e.g. "
                f"3,32,32; got {values['input_size']!r}"
            )
        out["input_size"] = size
    for key in ("mean", "std"):
        if values.get(key) is not None:
            out[key] = _numbers(values[key], float, key, where)
    if (out["mean"] is None) != (out["std"] is None):
        raise AnyteachError(
            f"{where}: give mean and std together ({'std' if out['std'] is None else 'mean'} is missing)"
        )
    if out["std"] is not None and any(v <= 0 for v in out["std"]):
        raise AnyteachError(f"{where}: std must be positive, got {values['std']!r}")
    if out["mean"] is not None and len(out["mean"]) != len(out["std"]):
        raise AnyteachError(f"{where}: mean and std need as many values each, got {out['mean']} and {out['std']}")
    channels = out["input_size"][0] if out["input_size"] is not None and len(out["input_size"]) == 3 else None
    if out["mean"] is not None and channels is not None and len(out["mean"]) not in (1, channels):
        raise AnyteachError(f"{where}: mean and std have {len(out['mean'])} values for {channels} input channels")
    if values.get("crop_pct") is not None:
        crop = _numbers(values["crop_pct"], float, "crop_pct", where)
        if len(crop) != 1 or not 0 < crop[0] <= 1:
            raise AnyteachError(f"{where}: crop_pct must be one number in (0, 1], got {values['crop_pct']!r}")
        out["crop_pct"] = crop[0]
    for key, allowed in (("interpolation", INTERPOLATIONS), ("crop_mode", CROP_MODES)):
        value = values.get(key)
        if value is not None:
            if not isinstance(value, str) or value not in allowed:
                raise AnyteachError(f"{where}: {key} must be one of {', '.join(allowed)}, got {value!r}")
            out[key] = value
    return out


@dataclass
class ModelInfo:
    """Everything anyteach knows about a classifier besides its weights."""

    name: str
    architecture: str  # a name in `ARCHITECTURES`, or `timm:<architecture>`
    arch_kwargs: dict[str, Any]
    num_classes: int
    family: str  # cnn | transformer | mlp | rnn
    num_params: int
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    source: str = ""  # the reference it was loaded from
    identity: str = ""  # content identity: same identity, same predictions
    extra: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None  # the names of its classes, in the order of its outputs, when known

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        d.pop("identity")
        if d["class_names"] is None:
            d.pop("class_names")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "", identity: str = "", where: str = "") -> ModelInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["preprocessing"] = Preprocessing.from_dict(d.get("preprocessing") or {}, where or source or "preprocessing")
        kw.update(source=source, identity=identity)
        return cls(**kw)

    def outputs_key(self) -> str:
        """Everything in the metadata that changes the model's outputs for the same weights (its
        architecture and arguments, classes and preprocessing), as text: part of its content identity."""
        p = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.preprocessing).items()}
        return json.dumps(
            [self.architecture, self.arch_kwargs, self.num_classes, p], sort_keys=True, default=str, allow_nan=True
        )

    def with_preprocessing(self, overrides: Mapping[str, Any]) -> ModelInfo:
        """A copy with the given (checked) preprocessing fields replaced and its identity changed with them."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        identity = text_digest(f"{self.identity}?{sorted(given.items())}") if self.identity else ""
        return dataclasses.replace(self, preprocessing=self.preprocessing.overridden(given), identity=identity)


class Classifier(nn.Module):
    """A network plus its metadata; normalises (and for images resizes) its own input.

    `forward(x)` returns logits. `features(x)` returns `(logits, features)` where the features are
    the input of the final classification layer (used by the feature-based CD and CRD losses).
    """

    def __init__(self, net: nn.Module, info: ModelInfo):
        super().__init__()
        self.net = net
        self.info = info
        p = info.preprocessing
        self.normalize = p.mean is not None and p.std is not None
        if self.normalize:
            shape = (1, -1) + (1,) * (len(p.input_size) - 1 if p.input_size else 2)
            self.register_buffer("mean", torch.tensor(p.mean).view(shape), persistent=False)
            self.register_buffer("std", torch.tensor(p.std).view(shape), persistent=False)
        self._captured: torch.Tensor | None = None
        self._head = _classification_layer(net)
        self._head.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        if self._capture_on:
            self._captured = inputs[0]

    _capture_on = False

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:  # 8-bit images from an image loader: floats in [0, 1]
            x = x.float().div(255)
        size = self.info.preprocessing.input_size
        if size is not None and x.dim() == 4 and tuple(x.shape[-2:]) != tuple(size[-2:]):
            x = F.interpolate(x, size=tuple(size[-2:]), mode="bilinear", align_corners=False, antialias=True)
        if self.normalize:
            x = (x - self.mean) / self.std
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(x))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._capture_on = True
        try:
            logits = self(x)
            feats = self._captured
        finally:
            self._capture_on = False
            self._captured = None
        return logits, feats.flatten(1)

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def name(self) -> str:
        return self.info.name


def _classification_layer(net: nn.Module) -> nn.Module:
    if hasattr(net, "get_classifier"):
        head = net.get_classifier()
        if isinstance(head, nn.Module) and not isinstance(head, nn.Identity):
            return head
    if hasattr(net, "head") and isinstance(net.head, nn.Module):
        return net.head
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise AnyteachError(f"cannot find the classification layer of {type(net).__name__}")
    return linears[-1]


def display_name(ref: str) -> str:
    """A model reference shortened for tables and legends: `zoo:mnist1d/gru` -> `gru`, a file -> its stem."""
    return str(ref).split("?", 1)[0].rsplit("/", 1)[-1].removesuffix(".safetensors")


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------------------------
# Reference kinds

REFERENCE_KINDS: Registry[Callable[[str], Classifier]] = Registry("model reference kind")
"""`<kind>:...` references by kind: a function from the whole reference string to a `Classifier`."""


def register_reference_kind(kind: str) -> Callable:
    """Decorator: `load_model("<kind>:...")` calls the decorated `fn(reference) -> Classifier`."""
    return REFERENCE_KINDS.decorator(kind)


# ---------------------------------------------------------------------------------------------
# Safe weight files


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors or a plain PyTorch file, never unpickling code.

    Raises:
        AnyteachError: the file is missing, corrupted, or contains pickled Python objects.
    """
    path = Path(path)
    if not path.is_file():
        raise AnyteachError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise AnyteachError(f"cannot read {path}: corrupted or not a safetensors file ({e})") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise AnyteachError(
            f"refusing to load {path}: it contains pickled Python objects, which could run code; "
            "only safetensors files and plain tensor state dicts are accepted"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise AnyteachError(f"cannot read {path}: corrupted or not a PyTorch weights file ({e})") from e
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AnyteachError(f"{path} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights_into(net: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """`load_state_dict(strict=True)` with an error that says what does not fit."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    cast = [
        f"{k} {str(state[k].dtype).removeprefix('torch.')} vs {str(v.dtype).removeprefix('torch.')}"
        for k, v in own.items()
        if k in state and state[k].dtype.is_floating_point != v.dtype.is_floating_point
    ]
    if cast and not (missing or unexpected or wrong):
        raise AnyteachError(
            f"weights in {where} do not fit the architecture: {len(cast)} tensors of another kind of "
            f"number (e.g. {cast[0]}); quantised or integer weights are not loaded into a float model"
        )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {wrong[0]})")
        raise AnyteachError(f"weights in {where} do not fit the architecture: " + ", ".join(parts))
    net.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------
# Saving and loading anyteach models


def hub_config(info: ModelInfo, net: nn.Module | None = None) -> dict[str, Any]:
    """A timm / Hugging Face hub `config.json` for a model: `architecture`, `num_classes`,
    `num_features`, `model_args` and `pretrained_cfg` (mean, std, input size, crop), the keys timm
    reads from a hub repository, so that for a timm architecture

        cfg = json.load(open("config.json"))
        net = timm.create_model(cfg["architecture"], num_classes=cfg["num_classes"],
                                pretrained_cfg=cfg["pretrained_cfg"], **cfg["model_args"])
        net.load_state_dict(safetensors.torch.load_file("model.safetensors"))

    rebuilds it without anyteach. A built-in (MNIST-1D) architecture is named as anyteach's
    (`library_name: anyteach`): only anyteach builds it.
    """
    timm_arch = info.architecture.startswith("timm:")
    p = info.preprocessing
    pretrained_cfg = {
        key: (list(value) if isinstance(value, tuple) else value)
        for key, value in dataclasses.asdict(p).items()
        if value is not None
    }
    pretrained_cfg.update(num_classes=info.num_classes)
    if net is not None and timm_arch:
        own = getattr(net, "pretrained_cfg", None) or {}
        for key in ("first_conv", "classifier", "fixed_input_size", "pool_size"):
            if own.get(key) is not None:
                pretrained_cfg[key] = list(own[key]) if isinstance(own[key], tuple) else own[key]
    config = {
        "architecture": info.architecture.removeprefix("timm:"),
        "num_classes": info.num_classes,
        "model_args": dict(info.arch_kwargs),
        "pretrained_cfg": pretrained_cfg,
        "library_name": "timm" if timm_arch else "anyteach",
    }
    if not timm_arch:
        config["model_args"].pop("num_classes", None)  # at the top level, as timm has it
    features = getattr(net, "num_features", None)
    if isinstance(features, int):
        config["num_features"] = features
    return config


def hub_config_path(weights: Path) -> Path:
    """Where `save_model` writes the hub config of `weights`: `config.json` beside `model.safetensors`
    (a model saved as a directory, the hub's layout), else `<stem>.config.json`."""
    return weights.with_name("config.json" if weights.name == "model.safetensors" else f"{weights.stem}.config.json")


def save_model(model: Classifier, path: str | Path, **extra: Any) -> Path:
    """Save a classifier as `<path>.safetensors` + `<path>.json` (architecture and metadata), with a
    timm / hub `config.json` beside them (`hub_config`, at `hub_config_path`).

    `path` may name the `.safetensors` file or a directory (then `model.safetensors` inside it).
    Every file is written atomically. Returns the path of the weights file.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / "model.safetensors"
    info = model.info
    if extra:
        info.extra.update(extra)
    save_tensors(path, model.net.state_dict(), metadata={"format": SIDECAR_FORMAT})
    write_json(path.with_suffix(".json"), {"format": SIDECAR_FORMAT, **info.to_dict()})
    write_json(hub_config_path(path), hub_config(info, model.net))
    return path


_SIDECAR_TYPES: dict[str, tuple[type, str]] = {
    "name": (str, "a string"),
    "architecture": (str, "a string"),
    "num_classes": (int, "an integer"),
    "family": (str, "a string"),
    "num_params": (int, "an integer"),
    "arch_kwargs": (dict, "a mapping"),
    "preprocessing": (dict, "a mapping"),
    "extra": (dict, "a mapping"),
    "class_names": (list, "a list of strings"),
}


def _check_sidecar_types(meta: Mapping[str, Any], sidecar: Path) -> None:
    """Each known sidecar field of its type (`"num_classes": "10"` is refused, not compared as text)."""
    for key, (kind, words) in _SIDECAR_TYPES.items():
        value = meta.get(key)
        if value is None and key not in ("name", "architecture", "num_classes", "family"):
            continue
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value.strip()):
            raise AnyteachError(f"{sidecar}: {key!r} must be {words}, got {value!r}")
    if meta["num_classes"] < 1:
        raise AnyteachError(f"{sidecar}: 'num_classes' must be >= 1, got {meta['num_classes']}")
    names = meta.get("class_names")
    if names is not None and (len(names) != meta["num_classes"] or not all(isinstance(n, str) for n in names)):
        raise AnyteachError(f"{sidecar}: 'class_names' must be {meta['num_classes']} strings, one per class")


MAX_PARAMETERS = 20_000_000_000
"""More parameters than any classifier anyone trains: a model description asking for more is a mistake
(a width of 10**9), refused before a byte is allocated."""


def build_network(build: Callable[[], nn.Module], what: str) -> nn.Module:
    """`build()`, with whatever the constructor raises for arguments it cannot take turned into one line.

    The network is first built on the meta device (no memory), so that absurd sizes are refused before
    anything is allocated.

    Raises:
        AnyteachError: the constructor refuses the arguments, or the network would be absurdly large;
            the message starts with `what` (the architecture and its arguments, and where they came from).
    """
    try:
        with torch.device("meta"):
            probe = build()
    except Exception:  # noqa: BLE001 - some constructors compute on tensors; the real build below says why
        probe = None
    if probe is not None:
        count = count_parameters(probe)
        if count > MAX_PARAMETERS:
            raise AnyteachError(f"{what}: the network would have {count:,} parameters; check its arguments")
    try:
        return build()
    except AnyteachError:
        raise
    except Exception as e:  # noqa: BLE001 - any refusal of a constructor is a wrong argument of the user's
        reason = str(e).splitlines()[0] if str(e) else ""
        raise AnyteachError(f"{what}: {type(e).__name__}{': ' + reason if reason else ''}") from e


def load_saved(path: Path, source: str) -> Classifier:
    """A model saved by anyteach (`save_model`): weights plus sidecar; `source` is the reference typed.

    Its identity is the digest of the weights together with everything in the sidecar that changes its
    outputs (`ModelInfo.outputs_key`): a sidecar edited under the same weights is another model.
    """
    if path.is_dir():
        path = path / "model.safetensors"
    sidecar = path.with_suffix(".json")
    if not path.exists():
        raise AnyteachError(f"model file not found: {path}")
    if not sidecar.exists():
        raise AnyteachError(f"{path} has no sidecar {sidecar.name}; load raw weights with timm:<architecture>@{path}")
    meta = read_json(sidecar, "model sidecar")
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise AnyteachError(f"{sidecar} is not an anyteach model sidecar (format {found!r})")
    missing = [key for key in ("name", "architecture", "num_classes", "family") if key not in meta]
    if missing:
        raise AnyteachError(f"{sidecar} lacks {', '.join(missing)}; it was not written by anyteach's save_model")
    _check_sidecar_types(meta, sidecar)
    info = ModelInfo.from_dict(meta, source=source, where=str(sidecar))
    arch, kwargs = meta["architecture"], meta.get("arch_kwargs") or {}
    if arch.startswith(MODULE_PREFIX):
        raise AnyteachError(
            f"{path} holds the weights of a network built in code ({arch.removeprefix(MODULE_PREFIX)}), which "
            "anyteach cannot rebuild: pass the network with them, anyteach.load_model(net, weights=path)"
        )
    if arch.startswith("timm:"):
        try:
            net = _create_timm(arch.removeprefix("timm:"), pretrained=False, num_classes=meta["num_classes"], **kwargs)
        except AnyteachError as e:
            raise AnyteachError(f"{sidecar}: {e}") from e
    else:
        if arch not in ARCHITECTURES:
            raise AnyteachError(f"{sidecar}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
        net = build_network(lambda: build_architecture(arch, **kwargs), f"{sidecar}: {arch} with arch_kwargs {kwargs}")
    state = read_weights(path)
    load_weights_into(net, state, str(path))
    head = _classification_layer(net)
    outputs = getattr(head, "out_features", meta["num_classes"])
    if outputs != meta["num_classes"]:
        raise AnyteachError(
            f"{sidecar} says {meta['num_classes']} classes but the weights in {path.name} have {outputs}"
        )
    size = info.preprocessing.input_size
    if arch.startswith("timm:") and size is not None and len(size) == 3:
        built = _built_input_size(net, size)
        if built != tuple(size):  # a sidecar written before the built size was recorded
            info.preprocessing = dataclasses.replace(info.preprocessing, input_size=built)
    info.identity = text_digest(f"{file_digest(path)}|{info.outputs_key()}")
    return Classifier(net.eval(), info)


# ---------------------------------------------------------------------------------------------
# timm

_TRANSFORMER_PREFIXES = (
    "vit",
    "deit",
    "swin",
    "beit",
    "eva",
    "cait",
    "xcit",
    "pit",
    "tnt",
    "twins",
    "levit",
    "crossvit",
    "convit",
    "coat",
    "maxvit",
    "mvit",
    "efficientformer",
    "fastvit",
    "flexivit",
    "volo",
    "hiera",
    "tiny_vit",
    "nextvit",
    "poolformer",
    "davit",
    "gcvit",
    "focalnet",
)
_MLP_PREFIXES = ("mixer", "resmlp", "gmlp", "gmixer", "sequencer")


_TRANSFORMER_CLASSES = (
    "transformer",
    "vit",
    "swin",
    "beit",
    "eva",
    "cait",
    "xcit",
    "levit",
    "twins",
    "volo",
    "hiera",
    "davit",
    "gcvit",
    "focalnet",
    "coat",
    "pit",
    "tnt",
    "crossvit",
    "convit",
)
_MLP_CLASSES = ("mlpmixer", "resmlp", "gmlp", "sequencer")


def timm_family(architecture: str, net: nn.Module | None = None) -> str:
    """Family of a timm architecture: from the network's class when given, else from its name."""
    if net is not None:
        cls = type(net).__name__.lower()
        if any(k in cls for k in _MLP_CLASSES):
            return "mlp"
        if any(k in cls for k in _TRANSFORMER_CLASSES):
            return "transformer"
    name = architecture.lower()
    if name.startswith(_MLP_PREFIXES):
        return "mlp"
    if name.startswith(_TRANSFORMER_PREFIXES):
        return "transformer"
    return "cnn"


def _create_timm(name: str, pretrained: bool, **kwargs) -> nn.Module:
    """`timm.create_model`, every refusal turned into one line that says what to change.

    Raises:
        AnyteachError: an unknown architecture, an argument it does not take, absurd sizes, or (with
            `pretrained`) weights that cannot be fetched.
    """
    import timm

    base = name.split(".")[0]
    if not name.startswith("hf-hub:") and not timm.is_model(base):
        raise AnyteachError(f"unknown timm model {name!r} (see `timm.list_models()`)")
    what = f"cannot create timm:{name}" + (f" with {kwargs}" if kwargs else "")
    if not pretrained:
        try:
            return build_network(lambda: timm.create_model(name, pretrained=False, **kwargs), what)
        except AnyteachError as e:
            if isinstance(e.__cause__, TypeError) and "img_size" in kwargs and "img_size" in str(e.__cause__):
                raise AnyteachError(
                    f"timm:{name} takes no img_size argument (it takes inputs of any size); to say which input "
                    f"size it was trained at, give ?input_size=3,{kwargs['img_size']},{kwargs['img_size']} instead"
                ) from e
            raise
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except TypeError as e:  # a model argument the architecture does not take
        raise AnyteachError(f"{what}: {e}") from e
    except (OSError, RuntimeError, ValueError) as e:
        import os

        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        hint = (
            "HF_HUB_OFFLINE is set, so the weights must already be in the Hugging Face cache "
            "(download them once online)"
            if offline
            else "offline, populate the Hugging Face cache and set HF_HUB_OFFLINE=1"
        )
        raise AnyteachError(
            f"cannot get pretrained weights for timm:{name} ({type(e).__name__}: {str(e).splitlines()[0]}); "
            f"{hint}, or pass local weights as timm:{name}@<file>"
        ) from e
    except Exception as e:  # noqa: BLE001 - an argument timm's constructor asserts on
        raise AnyteachError(f"{what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def _built_input_size(net: nn.Module, cfg_size: tuple[int, ...]) -> tuple[int, ...]:
    """The input size the built network really takes.

    timm keeps the pretrained config's size (224 for `vit_tiny_patch16_224`) even when the model is
    built with `img_size=64`; a patch embedding knows the size it was built for, so it wins.
    """
    built = getattr(getattr(net, "patch_embed", None), "img_size", None)
    if isinstance(built, (tuple, list)) and len(built) == 2 and all(isinstance(v, int) for v in built):
        return (int(cfg_size[0]), int(built[0]), int(built[1]))
    return tuple(int(v) for v in cfg_size)


def _timm_preprocessing(net: nn.Module, model_args: dict[str, Any] | None = None) -> Preprocessing:
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(net)
    size = _built_input_size(net, tuple(cfg["input_size"]))
    img_size = (model_args or {}).get("img_size")
    if isinstance(img_size, int):
        size = (size[0], img_size, img_size)
    elif isinstance(img_size, (tuple, list)) and len(img_size) == 2:
        size = (size[0], int(img_size[0]), int(img_size[1]))
    return Preprocessing(
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        input_size=size,
        crop_pct=cfg.get("crop_pct"),
        interpolation=cfg.get("interpolation"),
        crop_mode=cfg.get("crop_mode"),
    )


RESERVED_MODEL_ARGS = {
    "num_classes": "is read from the weights",
    "pretrained": "is not a model argument (timm:<name> alone is pretrained, timm:<name>@<file> has its weights)",
    "pretrained_cfg": "would replace the whole config (give pretrained_cfg_overlay, or input_size=3,32,32 itself)",
    "checkpoint_path": "is not a model argument (give the weights after @: timm:<name>@<file>)",
    "features_only": "would make a feature extractor, not a classifier",
}
"""Arguments of `timm.create_model` that a reference may not set, and why."""


def parse_model_args(query: str, source: str) -> dict[str, Any]:
    """`img_size=64&drop_rate=0.1` -> `{"img_size": 64, "drop_rate": 0.1}` (values as YAML scalars;
    `pretrained_cfg_overlay` takes a YAML mapping, e.g. `pretrained_cfg_overlay={input_size: [3, 32, 32]}`).

    Raises:
        AnyteachError: an argument without `=`, given twice, reserved, or a value that is not a scalar.
    """
    import yaml

    args: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key.isidentifier():
            raise AnyteachError(
                f"model argument {part!r} in {source!r} is not <name>=<value> "
                "(e.g. timm:vit_tiny_patch16_224?img_size=64)"
            )
        if key in args:
            raise AnyteachError(f"model argument {key} is given twice in {source!r}")
        if key in RESERVED_MODEL_ARGS:
            raise AnyteachError(f"{source!r}: {key} {RESERVED_MODEL_ARGS[key]}; leave it out of the model arguments")
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed = value
        if isinstance(parsed, dict) and key != "pretrained_cfg_overlay":
            raise AnyteachError(f"model argument {key} in {source!r} must be a number, word or list, not {value!r}")
        if key == "pretrained_cfg_overlay" and not isinstance(parsed, dict):
            raise AnyteachError(
                f"model argument pretrained_cfg_overlay in {source!r} must be a mapping, e.g. "
                "pretrained_cfg_overlay={input_size: [3, 32, 32]}"
            )
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise AnyteachError(f"model argument {key} in {source!r} must be finite, got {value!r}")
        args[key] = parsed
    return args


def split_preprocessing(args: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A reference's `?` arguments split into model arguments and checked preprocessing overrides
    (`PREPROCESSING_KEYS`, and those of a `pretrained_cfg_overlay`)."""
    overrides = {k: args[k] for k in PREPROCESSING_KEYS if k in args}
    model_args = {k: v for k, v in args.items() if k not in PREPROCESSING_KEYS}
    overlay = model_args.pop("pretrained_cfg_overlay", None) or {}
    for key, value in overlay.items():
        if key not in PREPROCESSING_KEYS:
            raise AnyteachError(
                f"{source!r}: pretrained_cfg_overlay key {key!r} is not a preprocessing key "
                f"({', '.join(PREPROCESSING_KEYS)})"
            )
        overrides.setdefault(key, value)
    return model_args, check_preprocessing(overrides, source) if overrides else {}


def _head_classes(net_cfg: dict[str, Any], state: dict[str, torch.Tensor]) -> int | None:
    heads = net_cfg.get("classifier") or ()
    for head in (heads,) if isinstance(heads, str) else heads:
        w = state.get(f"{head}.weight")
        if w is not None:
            return int(w.shape[0])
    return None


def _hub_folder_config(folder: Path) -> dict[str, Any] | None:
    """The timm / Hugging Face hub `config.json` of a folder (`timm.models.save_for_hf`'s layout), if any."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    config = read_json(path, "model config")
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        return None
    return config


def _config_parts(config: dict[str, Any], where: str) -> tuple[str, int | None, dict[str, Any], dict[str, Any]]:
    """A hub config's architecture, class count, model arguments and preprocessing (checked)."""
    model_args = config.get("model_args") or {}
    cfg = config.get("pretrained_cfg") or {}
    if not isinstance(model_args, dict) or not isinstance(cfg, dict):
        raise AnyteachError(f"{where}: model_args and pretrained_cfg must be mappings")
    classes = config.get("num_classes", cfg.get("num_classes"))
    if classes is not None and (not isinstance(classes, int) or isinstance(classes, bool) or classes < 1):
        raise AnyteachError(f"{where}: num_classes must be a positive integer, got {classes!r}")
    preprocessing = check_preprocessing({k: cfg.get(k) for k in PREPROCESSING_KEYS}, where)
    args = {k: v for k, v in model_args.items() if k not in RESERVED_MODEL_ARGS}  # save_for_hf keeps num_classes
    return config["architecture"], classes, args, preprocessing


def _timm_info(
    net: nn.Module, name: str, model_args: dict[str, Any], source: str, identity: str, overrides: dict[str, Any]
) -> ModelInfo:
    """The metadata of a timm network: architecture, family, preprocessing from its own pretrained config
    (overridden by `overrides`), class names where its config has them; identity with the outputs key."""
    cfg = getattr(net, "pretrained_cfg", None) or {}
    arch = cfg.get("architecture") or name.split(".")[0].removeprefix("hf-hub:")
    names = cfg.get("label_names")
    info = ModelInfo(
        name=name,
        architecture=f"timm:{arch}",
        arch_kwargs=dict(model_args),
        num_classes=int(net.num_classes),
        family=timm_family(arch, net),
        num_params=count_parameters(net),
        preprocessing=_timm_preprocessing(net, model_args).overridden(overrides),
        source=source,
        class_names=list(names) if isinstance(names, (list, tuple)) and len(names) == net.num_classes else None,
    )
    info.identity = text_digest(f"{identity}|{info.outputs_key()}")
    return info


@register_reference_kind("timm")
def _load_timm(source: str) -> Classifier:
    """`timm:<name>` (pretrained weights through timm) or `timm:<name>@<weights file>`, each with
    optional timm model arguments and preprocessing overrides after `?`
    (`timm:resnet18@w.safetensors?input_size=3,32,32`). Weights in a folder with a timm hub
    `config.json` of the same architecture take its model arguments and preprocessing."""
    spec, _, query = source.removeprefix("timm:").partition("?")
    model_args, overrides = split_preprocessing(parse_model_args(query, source), source)
    name, _, weights = spec.partition("@")
    if not name:
        raise AnyteachError(f"empty timm model name in {source!r}")
    if weights:
        path = Path(weights).expanduser()
        config = _hub_folder_config(path.parent)
        if config is not None and config["architecture"].split(".")[0] == name.split(".")[0]:
            _, _, config_args, config_pre = _config_parts(config, str(path.parent / "config.json"))
            model_args = {**config_args, **model_args}
            overrides = {**{k: v for k, v in config_pre.items() if v is not None}, **overrides}
        state = read_weights(path)
        probe = _create_timm(name, pretrained=False, **model_args)
        num_classes = _head_classes(getattr(probe, "pretrained_cfg", {}), state) or probe.num_classes
        net = (
            probe
            if num_classes == probe.num_classes
            else _create_timm(name, pretrained=False, num_classes=num_classes, **model_args)
        )
        load_weights_into(net, state, weights)
        identity = f"timm:{name}@{file_digest(path)}"
    else:
        net = _create_timm(name, pretrained=True, **model_args)
        identity = f"timm:{name}"
    return Classifier(net.eval(), _timm_info(net, name, model_args, source, identity, overrides))


@register_reference_kind("hf-hub")
def _load_hf_hub(source: str) -> Classifier:
    """`hf-hub:<organisation>/<name>`: a timm model on the Hugging Face hub (its `config.json` and weights),
    through timm; offline from the Hugging Face cache with `HF_HUB_OFFLINE=1`."""
    spec, _, query = source.partition("?")
    model_args, overrides = split_preprocessing(parse_model_args(query, source), source)
    if spec.count("/") != 1 or not all(spec.removeprefix("hf-hub:").split("/")):
        raise AnyteachError(f"a hub reference is hf-hub:<organisation>/<name>, got {source!r}")
    net = _create_timm(spec, pretrained=True, **model_args)
    return Classifier(net.eval(), _timm_info(net, spec.rsplit("/", 1)[1], model_args, source, spec, overrides))


def load_hub_folder(folder: Path, source: str) -> Classifier:
    """A folder in timm's hub layout (`config.json` beside `model.safetensors` or `pytorch_model.bin`, as
    `timm.models.save_for_hf` writes it): the architecture, arguments and preprocessing of its config."""
    config = _hub_folder_config(folder)
    if config is None:
        raise AnyteachError(f"{folder} holds no config.json naming an architecture")
    where = str(folder / "config.json")
    arch, classes, model_args, preprocessing = _config_parts(config, where)
    weights = next((folder / f for f in ("model.safetensors", "pytorch_model.bin") if (folder / f).is_file()), None)
    if weights is None:
        raise AnyteachError(f"{folder} has a config.json but no model.safetensors or pytorch_model.bin")
    state = read_weights(weights)
    extra = {"num_classes": classes} if classes is not None else {}
    net = _create_timm(arch, pretrained=False, **extra, **model_args)
    load_weights_into(net, state, str(weights))
    overrides = {k: v for k, v in preprocessing.items() if v is not None}
    info = _timm_info(net, folder.name, model_args, source, f"timm:{arch}@{file_digest(weights)}", overrides)
    names = config.get("label_names") or (config.get("pretrained_cfg") or {}).get("label_names")
    if isinstance(names, list) and len(names) == info.num_classes and all(isinstance(n, str) for n in names):
        info.class_names = list(names)
    return Classifier(net.eval(), info)


def timm_classifier(name: str, num_classes: int | None = None, pretrained: bool = False, **kwargs) -> Classifier:
    """Create a timm classifier in code (e.g. a randomly initialised one for tests and benchmarks)."""
    extra = {"num_classes": num_classes} if num_classes is not None else {}
    net = _create_timm(name, pretrained=pretrained, **extra, **kwargs)
    info = _timm_info(net, name, kwargs, f"timm:{name}", "", {})
    info.identity = ""  # weights made in code: identified by their digest when a run needs it
    return Classifier(net.eval(), info)


def build_classifier(architecture: str, name: str | None = None, **kwargs) -> Classifier:
    """Build a fresh (untrained) classifier from the anyteach architecture registry."""
    net = build_architecture(architecture, **kwargs)
    info = ModelInfo(
        name=name or architecture,
        architecture=architecture,
        arch_kwargs=dict(kwargs),
        num_classes=int(kwargs.get("num_classes", 10)),
        family=ARCHITECTURES[architecture][1],
        num_params=count_parameters(net),
    )
    return Classifier(net, info)


# ---------------------------------------------------------------------------------------------
# A network built in code

MODULE_PREFIX = "module:"
"""The architecture of a network built in code (`module:<module>.<class>`): its weights can be saved and
loaded back into the same class, but anyteach cannot build the network by itself."""


def _guess_family(net: nn.Module) -> str:
    """The family of a network built in code, from the layers it has."""
    layers = list(net.modules())
    if any(isinstance(m, (nn.MultiheadAttention, nn.TransformerEncoderLayer)) for m in layers):
        return "transformer"
    if any(isinstance(m, (nn.RNNBase,)) for m in layers):
        return "rnn"
    if any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in layers):
        return "cnn"
    return "mlp"


def weights_digest(net: nn.Module) -> str:
    """A digest of a network's parameters and buffers: its content identity when it was built in code."""
    import hashlib

    h = hashlib.sha256()
    for key, tensor in net.state_dict().items():
        h.update(key.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return "weights:" + h.hexdigest()[:16]


def _timm_rebuilds(net: nn.Module, arch: str, num_classes: int, model_args: dict[str, Any]) -> bool:
    """Whether `timm.create_model(arch, ...)` builds a network with exactly `net`'s tensors (so that a saved
    copy can be loaded without the code that built it)."""
    import timm

    try:
        with torch.device("meta"):
            twin = timm.create_model(arch, pretrained=False, num_classes=num_classes, **model_args)
    except Exception:  # noqa: BLE001 - not rebuildable from its name: saved as a network built in code
        return False
    mine, theirs = net.state_dict(), twin.state_dict()
    return mine.keys() == theirs.keys() and all(mine[k].shape == theirs[k].shape for k in mine)


def module_classifier(
    net: nn.Module,
    *,
    name: str | None = None,
    num_classes: int | None = None,
    family: str | None = None,
    class_names: list[str] | None = None,
) -> Classifier:
    """A network built in code (a plain `torch.nn.Module`, or a timm model object) as a `Classifier`.

    A timm model brings its own pretrained config (preprocessing, classes); any other network takes its
    input as the data comes unless a preprocessing is given (see `load_model`). The number of classes is
    read from the classification layer when not given.

    Raises:
        AnyteachError: no classification layer is found, or `num_classes` disagrees with it.
    """
    head = _classification_layer(net)
    outputs = getattr(head, "out_features", None)
    if num_classes is None:
        num_classes = getattr(net, "num_classes", None) or outputs
    if not isinstance(num_classes, int) or num_classes < 1:
        raise AnyteachError(
            f"cannot tell how many classes {type(net).__name__} predicts: pass num_classes=... to load_model"
        )
    if outputs is not None and outputs != num_classes:
        raise AnyteachError(
            f"num_classes={num_classes} was given but the classification layer of {type(net).__name__} has "
            f"{outputs} outputs"
        )
    cfg = getattr(net, "pretrained_cfg", None)
    timm_net = isinstance(cfg, dict) and type(net).__module__.startswith("timm.")
    label = name or (cfg.get("architecture") if timm_net else None) or type(net).__name__.lower()
    if timm_net:
        arch = cfg.get("architecture") or type(net).__name__.lower()
        built = getattr(getattr(net, "patch_embed", None), "img_size", None)
        args: dict[str, Any] = {"img_size": list(built)} if isinstance(built, (tuple, list)) and len(built) == 2 else {}
        rebuilds = _timm_rebuilds(net, arch, num_classes, args)
        info = _timm_info(net, label, args if rebuilds else {}, f"timm:{arch}", "", {})
        if not rebuilds:  # built with arguments anyteach cannot see: saved as a network built in code
            info.architecture = f"{MODULE_PREFIX}{type(net).__module__}.{type(net).__qualname__}"
    else:
        info = ModelInfo(
            name=label,
            architecture=f"{MODULE_PREFIX}{type(net).__module__}.{type(net).__qualname__}",
            arch_kwargs={},
            num_classes=num_classes,
            family=_guess_family(net),
            num_params=count_parameters(net),
        )
    info.source = info.name
    if family is not None:
        if family not in FAMILIES:
            raise AnyteachError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
        info.family = family
    if class_names is not None:
        names = [str(n) for n in class_names]
        if len(names) != num_classes:
            raise AnyteachError(f"class_names has {len(names)} names for {num_classes} classes")
        info.class_names = names
    return Classifier(net.eval(), info)


FAMILIES = ("cnn", "transformer", "mlp", "rnn")


# ---------------------------------------------------------------------------------------------
# The entry point


def _split_query(ref: str) -> tuple[str, str]:
    """`<reference>?<arguments>` -> (reference, arguments); a path that exists with its `?` is kept whole."""
    base, mark, query = ref.partition("?")
    if not mark or Path(ref).expanduser().exists():
        return ref, ""
    return base, query


def load_model(
    model: str | Path | nn.Module,
    *,
    weights: str | Path | None = None,
    name: str | None = None,
    num_classes: int | None = None,
    family: str | None = None,
    class_names: list[str] | None = None,
    input_size: int | tuple[int, ...] | str | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    interpolation: str | None = None,
    crop_pct: float | None = None,
    crop_mode: str | None = None,
) -> Classifier:
    """A model, as a reference or as an object, resolved to a `Classifier` in eval mode.

    References (see the module docstring): `timm:<name>`, `timm:<name>@<weights>`, `hf-hub:<org>/<name>`,
    `zoo:<zoo>/<model>`, the path of a model saved by anyteach, or a folder in timm's hub layout
    (`config.json` + weights). After `?`, a reference takes the preprocessing keys `input_size`, `mean`,
    `std`, `interpolation`, `crop_pct` and `crop_mode` (`timm:resnet18@w.safetensors?input_size=3,32,32`),
    and a timm reference timm's model arguments too.

    Objects: a `Classifier` is returned as it is; any other `torch.nn.Module` (a timm model, or your own
    network) is wrapped (`module_classifier`), optionally with `weights` loaded into it first.

    Args:
        model: the reference or the object.
        weights: a weights file (safetensors, or a plain state dict) to load into a network given as an object.
        name, num_classes, family, class_names: metadata of a network given as an object (read from it
            where possible).
        input_size, mean, std, interpolation, crop_pct, crop_mode: the model's preprocessing, overriding
            its own (a checkpoint trained at another resolution: `input_size=(3, 32, 32)`); `None` keeps it.

    Raises:
        AnyteachError: unknown name, missing or corrupted file, unsafe pickle, weights that do not fit, a
            preprocessing value of the wrong type or range.
    """
    given = {
        "input_size": input_size,
        "mean": mean,
        "std": std,
        "interpolation": interpolation,
        "crop_pct": crop_pct,
        "crop_mode": crop_mode,
    }
    overrides = {k: v for k, v in check_preprocessing(given, "load_model").items() if v is not None}
    if isinstance(model, Classifier):
        if weights is not None:
            raise AnyteachError("weights= loads weights into a network; this classifier has its own")
        return Classifier(model.net, model.info.with_preprocessing(overrides)) if overrides else model
    if isinstance(model, nn.Module):
        if weights is not None:
            load_weights_into(model, read_weights(weights), str(weights))
        wrapped = module_classifier(model, name=name, num_classes=num_classes, family=family, class_names=class_names)
        info = wrapped.info.with_preprocessing(overrides)
        info.identity = text_digest(f"{weights_digest(model)}|{info.outputs_key()}")
        if overrides:  # the classifier normalises with its preprocessing: a new one for the new values
            return Classifier(model, info)
        wrapped.info = info
        return wrapped
    if weights is not None:
        raise AnyteachError("weights= loads weights into a network given as an object; a reference names its own")
    ref = str(model)
    base, query = _split_query(ref)
    kind, colon, _ = base.partition(":")
    if colon and kind in ("timm", "hf-hub"):
        loaded = REFERENCE_KINDS[kind](ref)  # timm references also take model arguments after `?`
    else:
        if query:
            args = parse_model_args(query, ref)
            extra, from_query = split_preprocessing(args, ref)
            if extra:
                raise AnyteachError(
                    f"{ref!r}: only preprocessing keys may follow ? here ({', '.join(PREPROCESSING_KEYS)}); "
                    f"model arguments ({', '.join(extra)}) belong to timm: references"
                )
            overrides = {**{k: v for k, v in from_query.items() if v is not None}, **overrides}
        loaded = _load_reference(base)
    if overrides:
        loaded = Classifier(loaded.net, loaded.info.with_preprocessing(overrides))
        loaded.info.source = ref
    return loaded


def _load_reference(ref: str) -> Classifier:
    kind, colon, _ = ref.partition(":")
    if colon and kind in REFERENCE_KINDS:
        return REFERENCE_KINDS[kind](ref)
    path = Path(ref).expanduser()
    if path.is_dir() and not (path / "model.json").exists() and (path / "config.json").exists():
        return load_hub_folder(path, ref)
    if path.exists() or path.suffix in (".safetensors", ".json"):
        if path.suffix == ".json":
            path = path.with_suffix(".safetensors")
        return load_saved(path, ref)
    kinds = ", ".join(f"{k}:..." for k in REFERENCE_KINDS)
    raise AnyteachError(
        f"unknown model reference {ref!r}: expected timm:<name>, timm:<name>@<weights>, hf-hub:<org>/<name>, "
        f"zoo:<zoo>/<model>, the path of a saved anyteach model or of a timm hub folder (reference kinds: {kinds})"
    )
