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
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        kw = {f.name: d.get(f.name) for f in dataclasses.fields(cls)}
        for key in ("mean", "std", "input_size"):
            if kw[key] is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)


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
    def from_dict(cls, d: dict[str, Any], source: str = "", identity: str = "") -> ModelInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["preprocessing"] = Preprocessing.from_dict(d.get("preprocessing") or {})
        kw.update(source=source, identity=identity)
        return cls(**kw)


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
    `num_features`, `global_pool`, `label_names`, `model_args` and `pretrained_cfg` (mean, std,
    input size, crop, pool size), the keys timm reads from a hub repository, so that for a timm
    architecture `timm.create_model("local-dir:<folder>", pretrained=True)` (or `"hf-hub:<repo>"`)
    rebuilds it with its weights and its own preprocessing, without anyteach.

    Everything that depends on the input size is derived from the size the model really takes
    (`info.preprocessing.input_size`), never copied from the architecture's ImageNet defaults: timm
    reads `config.json`'s `pretrained_cfg` as the whole configuration, so a key left out means timm's
    neutral default, not the architecture's. A built-in (MNIST-1D) architecture is named as
    anyteach's (`library_name: anyteach`): only anyteach builds it.
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
        for key in ("first_conv", "classifier", "fixed_input_size"):
            if own.get(key) is not None:
                pretrained_cfg[key] = list(own[key]) if isinstance(own[key], tuple) else own[key]
        pool = _pool_size(net, p.input_size) if own.get("pool_size") is not None else None
        if pool is not None:
            pretrained_cfg["pool_size"] = list(pool)
    config: dict[str, Any] = {
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
    pooling = _global_pool(net)
    if pooling:
        config["global_pool"] = pooling
    if info.class_names and len(info.class_names) == info.num_classes:
        config["label_names"] = [str(name) for name in info.class_names]  # timm's key for them
    return config


def _global_pool(net: nn.Module | None) -> str | None:
    """The global pooling a timm network was built with (`avg`, `token`, ...), as timm's own export names it."""
    pool = getattr(net, "global_pool", None)
    pool = getattr(pool, "pool_type", pool)  # a CNN's SelectAdaptivePool2d, or a transformer's word
    return pool if isinstance(pool, str) and pool else None


def _pool_size(net: nn.Module, input_size: tuple[int, ...] | None) -> tuple[int, int] | None:
    """The spatial size of the feature map the classifier pools, at the input size the model takes
    (timm's `pool_size`: 7x7 for a ResNet at 224 px, 1x1 at 32 px); None where it cannot be measured.

    One forward pass of a zero image in eval mode (no batch-norm statistics move); the modules'
    train/eval modes are restored after.
    """
    if input_size is None or len(input_size) != 3 or not hasattr(net, "forward_features"):
        return None
    modes = [(m, m.training) for m in net.modules()]
    try:
        parameter = next(net.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        net.eval()
        with torch.no_grad():
            features = net.forward_features(torch.zeros(1, *input_size, device=device))
    except (RuntimeError, ValueError, TypeError, AssertionError):  # a size the network cannot take
        return None
    finally:
        for module, training in modes:
            module.training = training
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        return None  # tokens, not a feature map
    return int(features.shape[-2]), int(features.shape[-1])


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


def load_saved(path: Path, source: str) -> Classifier:
    """A model saved by anyteach (`save_model`): weights plus sidecar; `source` is the reference typed."""
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
    state = read_weights(path)
    arch, kwargs = meta["architecture"], meta.get("arch_kwargs") or {}
    try:
        if arch.startswith("timm:"):
            net = _create_timm(arch.removeprefix("timm:"), pretrained=False, num_classes=meta["num_classes"], **kwargs)
        else:
            net = build_architecture(arch, **kwargs)
    except TypeError as e:
        raise AnyteachError(f"{sidecar}: arch_kwargs {kwargs} do not fit architecture {arch!r} ({e})") from e
    load_weights_into(net, state, str(path))
    head = _classification_layer(net)
    outputs = getattr(head, "out_features", meta["num_classes"])
    if outputs != meta["num_classes"]:
        raise AnyteachError(
            f"{sidecar} says {meta['num_classes']} classes but the weights in {path.name} have {outputs}"
        )
    info = ModelInfo.from_dict(meta, source=source, identity=file_digest(path))
    size = info.preprocessing.input_size
    if arch.startswith("timm:") and size is not None and len(size) == 3:
        built = _built_input_size(net, size)
        if built != tuple(size):  # a sidecar written before the built size was recorded
            info.preprocessing = dataclasses.replace(info.preprocessing, input_size=built)
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
    import timm

    base = name.split(".")[0]
    if not timm.is_model(base):
        raise AnyteachError(f"unknown timm model {name!r} (see `timm.list_models()`)")
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as e:  # a model argument the architecture does not take
        raise AnyteachError(f"cannot create timm:{name} with {kwargs}: {e}") from e
    except (OSError, RuntimeError, ValueError) as e:
        if pretrained:
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
        raise AnyteachError(f"cannot create timm:{name}: {e}") from e


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


def parse_model_args(query: str, source: str) -> dict[str, Any]:
    """`img_size=64&drop_rate=0.1` -> `{"img_size": 64, "drop_rate": 0.1}` (values as YAML scalars).

    Raises:
        AnyteachError: an argument without `=`, or a value that is not a scalar.
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
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed = value
        if isinstance(parsed, dict):
            raise AnyteachError(f"model argument {key} in {source!r} must be a number, word or list, not {value!r}")
        args[key] = parsed
    if "num_classes" in args:
        raise AnyteachError(f"{source!r}: num_classes is read from the weights; leave it out of the model arguments")
    return args


def _head_classes(net_cfg: dict[str, Any], state: dict[str, torch.Tensor]) -> int | None:
    heads = net_cfg.get("classifier") or ()
    for head in (heads,) if isinstance(heads, str) else heads:
        w = state.get(f"{head}.weight")
        if w is not None:
            return int(w.shape[0])
    return None


@register_reference_kind("timm")
def _load_timm(source: str) -> Classifier:
    """`timm:<name>` (pretrained weights through timm) or `timm:<name>@<weights file>`, each with
    optional timm model arguments after `?` (`timm:vit_tiny_patch16_224@w.safetensors?img_size=64`)."""
    spec, _, query = source.removeprefix("timm:").partition("?")
    model_args = parse_model_args(query, source)
    name, _, weights = spec.partition("@")
    if not name:
        raise AnyteachError(f"empty timm model name in {source!r}")
    if weights:
        state = read_weights(weights)
        probe = _create_timm(name, pretrained=False, **model_args)
        num_classes = _head_classes(getattr(probe, "pretrained_cfg", {}), state) or probe.num_classes
        net = (
            probe
            if num_classes == probe.num_classes
            else _create_timm(name, pretrained=False, num_classes=num_classes, **model_args)
        )
        load_weights_into(net, state, weights)
        identity = f"timm:{name}@{file_digest(weights)}"
    else:
        net = _create_timm(name, pretrained=True, **model_args)
        identity = text_digest(f"timm:{name}")
    if model_args:
        identity = text_digest(f"{identity}?{sorted(model_args.items())}")
    arch = getattr(net, "pretrained_cfg", {}).get("architecture") or name.split(".")[0]
    info = ModelInfo(
        name=name,
        architecture=f"timm:{arch}",
        arch_kwargs=dict(model_args),
        num_classes=int(net.num_classes),
        family=timm_family(arch, net),
        num_params=count_parameters(net),
        preprocessing=_timm_preprocessing(net, model_args),
        source=source,
        identity=identity,
    )
    return Classifier(net.eval(), info)


def timm_classifier(name: str, num_classes: int | None = None, pretrained: bool = False, **kwargs) -> Classifier:
    """Create a timm classifier in code (e.g. a randomly initialised one for tests and benchmarks)."""
    extra = {"num_classes": num_classes} if num_classes is not None else {}
    net = _create_timm(name, pretrained=pretrained, **extra, **kwargs)
    arch = getattr(net, "pretrained_cfg", {}).get("architecture") or name
    info = ModelInfo(
        name=name,
        architecture=f"timm:{arch}",
        arch_kwargs=dict(kwargs),
        num_classes=int(net.num_classes),
        family=timm_family(arch, net),
        num_params=count_parameters(net),
        preprocessing=_timm_preprocessing(net, kwargs),
        source=f"timm:{name}",
    )
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
# The entry point


def load_model(ref: str | Path | Classifier) -> Classifier:
    """Resolve a model reference (see the module docstring) to a `Classifier` in eval mode.

    A reference `<kind>:<rest>` goes to the loader registered for `kind` in `REFERENCE_KINDS`
    (`timm`, `zoo`, ...); anything else is the path of a saved anyteach model.

    Raises:
        AnyteachError: unknown name, missing or corrupted file, unsafe pickle, weights that do not fit.
    """
    if isinstance(ref, Classifier):
        return ref
    ref = str(ref)
    kind, colon, _ = ref.partition(":")
    if colon and kind in REFERENCE_KINDS:
        return REFERENCE_KINDS[kind](ref)
    path = Path(ref).expanduser()
    if path.exists() or path.suffix in (".safetensors", ".json"):
        if path.suffix == ".json":
            path = path.with_suffix(".safetensors")
        return load_saved(path, ref)
    kinds = ", ".join(f"{k}:..." for k in REFERENCE_KINDS)
    raise AnyteachError(
        f"unknown model reference {ref!r}: expected timm:<name>, timm:<name>@<weights>, zoo:<zoo>/<model> "
        f"or the path of a saved anyteach model (reference kinds: {kinds})"
    )
