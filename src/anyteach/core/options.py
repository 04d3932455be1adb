"""Every option a user can set on a transfer, declared once.

An `Option` is a name, a type, a default, an allowed range and a help text. The training options
are the fields of `TrainingOptions` (each declared with `option(...)`), the method options are the
table `METHOD_OPTIONS` (each loss or weight regulariser names the ones it uses). These declarations
are the only place a rule about an option lives: `TrainingOptions` validates itself from them, the
method presets resolve and validate theirs from them (`methods.resolve_method_options`), a study
definition's recipe is checked by the same code (`transfer.resolve_run_options`), and the CLI's
flags and help texts are generated from them (`anyteach transfer --help`). Adding an option is
one declaration (plus the code that uses it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import AnyteachError
from .optim import LR_SCHEDULES, OPTIMIZERS


def _anything(value: Any) -> bool:
    return True


@dataclass(frozen=True)
class Option:
    """One option: its type, default, allowed range and meaning.

    Attributes:
        name: the keyword (`batch_size`); the CLI flag is `--batch-size`.
        type: `int`, `float`, `bool` or `str`.
        default: the value when none is given.
        help: one line on what it does.
        check: the range test of a value already of the right type (non-finite floats are always
            refused).
        allowed: the range in words, for messages (`"> 0"`, `"in [0, 1]"`).
        optional: None is a valid value (e.g. `top_k`: all classes).
        aliases: old spellings of values and what they mean now (`amp: true` is `auto`).
        compared: the value changes what a run computes, so a run directory's configuration must
            match it to resume (False: `device`, `workers`, ...: a run may resume with another value).
        budget: the value is part of a run's training budget (with its data): a method run is paired
            only with a control run of the same budget (`BUDGET_OPTIONS`).
        per_run: a study sets it for every run (the transfer seed from `seeds:`); a study's recipe
            and the `study` command's flags may not (`PER_RUN_OPTIONS`).
    """

    name: str
    type: type
    default: Any
    help: str
    check: Callable[[Any], bool] = _anything
    allowed: str = ""
    optional: bool = False
    aliases: tuple[tuple[Any, Any], ...] = ()
    compared: bool = True
    budget: bool = False
    per_run: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def validate(self, value: Any, owner: str = "") -> Any:
        """`value` coerced to the option's type (an integral float to int, an int to float).

        Args:
            value: the value given.
            owner: who the option belongs to, for the message (`"of method 'kl'"`).

        Raises:
            AnyteachError: a value of the wrong type or out of range (the message names the option).
        """
        if value is None and self.optional:
            return None
        for old, new in self.aliases:  # an old spelling (a value from before the option changed type)
            if value is old:
                value = new
        where = f"option {self.name}={value!r}{' ' + owner if owner else ''}"
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, self.type) or isinstance(value, bool) != (self.type is bool):
            article = "an" if self.type is int else "a"
            allowed = f" ({self.allowed})" if self.allowed else ""
            raise AnyteachError(f"{where} must be {article} {self.type.__name__}{allowed}")
        if isinstance(value, float) and not math.isfinite(value):
            raise AnyteachError(f"{where} must be a finite number ({self.allowed or 'not NaN or infinite'})")
        if not self.check(value):
            raise AnyteachError(f"{where} is out of range: it must be {self.allowed}")
        return value


def option(
    default: Any,
    help: str,
    check: Callable[[Any], bool] = _anything,
    allowed: str = "",
    optional: bool = False,
    aliases: tuple[tuple[Any, Any], ...] = (),
    *,
    compared: bool = True,
    budget: bool = False,
    per_run: bool = False,
) -> Any:
    """A `TrainingOptions` field declared as an `Option` (its name and type come from the field)."""
    return dataclasses.field(
        default=default,
        metadata={
            "option": dict(
                help=help,
                check=check,
                allowed=allowed,
                optional=optional,
                aliases=aliases,
                compared=compared,
                budget=budget,
                per_run=per_run,
            )
        },
    )


def _valid_device(value: str) -> bool:
    if value in ("auto", "cpu", "cuda", "mps"):
        return True
    kind, _, number = value.partition(":")
    return kind == "cuda" and number.isdigit()


def _compile_backends() -> list[str]:
    """The names torch.compile accepts as a backend (its own and those registered by plugins); imported only
    for a backend other than the default, since torch's compiler takes seconds to import."""
    from torch._dynamo import list_backends

    return list_backends(exclude_tags=())


def _one_of(choices: tuple[str, ...]) -> Callable[[str], bool]:
    return lambda value: value in choices


AMP_MODES = ("auto", "bf16", "off")
"""Values of the `amp` option."""
MIX_MODES = ("none", "mixup", "cutmix", "both")
"""Values of the `mix` option: no mixing, mixup, cutmix, or per sample one of the two at random."""

_TYPES = {"int": int, "float": float, "bool": bool, "str": str}

MAX_EPOCHS = 10_000
"""The most epochs (and warm-up epochs) a run may ask for: a larger number is a typo, not a plan."""
MAX_SEED = 2**32 - 1
"""Seeds are in [0, MAX_SEED]: what numpy and every generator the runs derive from a seed accept."""
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 1e3
"""Softmax temperatures are in this range: beyond it every distribution is flat or one-hot in float32, and τ²
overflows long before the float range ends (τ = 1e308 is a typo, not a setting)."""
MAX_BATCH = 2**24
"""The largest batch size: far beyond any device's memory, so a larger one is a typo."""


@dataclass(frozen=True)
class TrainingOptions:
    """How the student is trained (the method's own options are `METHOD_OPTIONS`).

    Every field is an `Option`; `TrainingOptions(...)` validates each value and raises
    `AnyteachError` naming the first bad one. `TRAINING_OPTIONS` lists them with their help.
    """

    epochs: int = option(
        20,
        "passes over the transfer split (paper: 20)",
        lambda v: 1 <= v <= MAX_EPOCHS,
        f"in [1, {MAX_EPOCHS}]",
        budget=True,
    )
    batch_size: int = option(
        256, "samples per optimiser step", lambda v: 1 <= v <= MAX_BATCH, "in [1, 2**24]", budget=True
    )
    lr: float | None = option(
        None,
        "learning rate; default: the method's base lr (1e-4; MCL 1e-2) x batch_size / 256",
        lambda v: v > 0,
        "> 0 (or None for the method's default)",
        optional=True,
    )
    lr_schedule: str = option(
        "constant",
        "learning-rate schedule: constant (the paper's) or cosine (decay to zero by the last step)",
        _one_of(LR_SCHEDULES),
        f"one of {', '.join(LR_SCHEDULES)}",
    )
    warmup_epochs: float = option(
        0.0,
        "epochs of linear learning-rate warm-up at the start (fewer than epochs)",
        lambda v: 0 <= v <= MAX_EPOCHS,
        f"in [0, {MAX_EPOCHS}]",
    )
    optimizer: str = option(
        "sgd",
        "the optimiser: sgd (momentum, weight decay: the paper's) or adamw",
        _one_of(OPTIMIZERS),
        f"one of {', '.join(OPTIMIZERS)}",
    )
    weight_decay: float = option(1e-4, "optimiser weight decay (paper: 1e-4)", lambda v: v >= 0, ">= 0")
    momentum: float = option(0.9, "SGD momentum (paper: 0.9)", lambda v: 0 <= v < 1, "in [0, 1)")
    seed: int = option(
        0,
        "seeds shuffling, dropout, augmentation and method randomness",
        lambda v: 0 <= v <= MAX_SEED,
        "in [0, 2**32 - 1]",
        per_run=True,
    )
    augment: bool = option(
        False,
        "random augmentation of the transfer inputs (teacher outputs are then computed live)",
        allowed="true or false",
        budget=True,
    )
    mix: str = option(
        "none",
        "mix pairs of transfer samples live at every step: mixup (a weighted average), cutmix (a segment of a "
        "signal, a box of an image, pasted from the other sample) or both (per sample one of the two); the "
        "student, the frozen student and the teachers all see the same mixed input, and label terms weigh "
        "both samples' labels by their shares",
        _one_of(MIX_MODES),
        f"one of {', '.join(MIX_MODES)}",
    )
    mix_alpha: float = option(
        1.0,
        "input mixing draws each sample's share from Beta(mix_alpha, mix_alpha) (1: uniform)",
        lambda v: 0 < v <= 1000,
        "in (0, 1000]",
    )
    cache_teacher_outputs: bool = option(
        True,
        "compute teacher and frozen-student outputs over the transfer split once (when not augmenting or mixing)",
        allowed="true or false",
    )
    eval_every: int = option(
        1, "evaluate every N epochs (the last epoch always is)", lambda v: 1 <= v <= MAX_EPOCHS, f"in [1, {MAX_EPOCHS}]"
    )
    eval_batch_size: int = option(
        1024,
        "batch size of evaluation and output caching",
        lambda v: 1 <= v <= MAX_BATCH,
        "in [1, 2**24]",
        compared=False,
    )
    device: str = option(
        "auto",
        "where to train: auto (CUDA when available), cpu, cuda or cuda:<n>",
        _valid_device,
        "auto, cpu, cuda or cuda:<n>",
        compared=False,
    )
    amp: str = option(
        "auto",
        "mixed precision: auto (bfloat16 autocast on CUDA, none elsewhere), bf16 (bfloat16 "
        "autocast on any device, CPU included) or off",
        _one_of(AMP_MODES),
        f"one of {', '.join(AMP_MODES)}",
        aliases=((True, "auto"), (False, "off")),
    )
    channels_last: bool = option(
        False,
        "channels-last memory format for image models and batches (faster convolutions on GPUs)",
        allowed="true or false",
        compared=False,
    )
    compile: bool = option(
        False,
        "compile the student's training step and every model's inference (torch.compile)",
        allowed="true or false",
        compared=False,
    )
    compile_backend: str = option(
        "inductor",
        "the torch.compile backend (inductor; aot_eager or eager to debug)",
        lambda v: v == "inductor" or v in _compile_backends(),
        "a torch.compile backend (`torch._dynamo.list_backends()`: inductor, aot_eager, eager, ...)",
        compared=False,
    )
    workers: int | None = option(
        None,
        "data-loader worker processes of image folders (default: min(8, cores); 0: load in the training process)",
        lambda v: 0 <= v <= 256,
        "in [0, 256] (or None)",
        optional=True,
        compared=False,
    )
    sync_batchnorm: bool = option(
        False,
        "under torchrun (DDP): BatchNorm statistics over the global batch "
        "(SyncBatchNorm, CUDA only) instead of each rank's share of it",
        allowed="true or false",
    )
    keep_checkpoints: bool = option(
        False,
        "keep the optimiser checkpoint of a finished run (dropped by default: the "
        "final student, metrics and configuration are kept)",
        allowed="true or false",
        compared=False,
    )

    def __post_init__(self) -> None:
        for name, spec in TRAINING_OPTIONS.items():
            object.__setattr__(self, name, spec.validate(getattr(self, name)))
        if self.warmup_epochs and self.warmup_epochs >= self.epochs:
            raise AnyteachError(
                f"option warmup_epochs={self.warmup_epochs:g} is not below epochs={self.epochs}: the "
                "learning rate would never reach its value; warm up for fewer epochs than the run"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(TRAINING_OPTIONS)


def _declared(cls: type) -> dict[str, Option]:
    options = {}
    for f in dataclasses.fields(cls):
        kind = _TYPES[str(f.type).split("|")[0].strip()]
        options[f.name] = Option(f.name, kind, f.default, **f.metadata["option"])
    return options


TRAINING_OPTIONS: dict[str, Option] = _declared(TrainingOptions)
"""The training options (`TrainingOptions`' fields) by name."""

NOT_COMPARED: tuple[str, ...] = tuple(name for name, o in TRAINING_OPTIONS.items() if not o.compared)
"""Training options that do not change what a run computes (beyond rounding): a run may resume with
other values (`Option.compared`)."""
BUDGET_OPTIONS: tuple[str, ...] = tuple(name for name, o in TRAINING_OPTIONS.items() if o.budget)
"""The training options that make a run's budget (with its data): a method run is paired only with a
control run of the same student, seed, data and budget, i.e. the same samples for the same steps."""
PER_RUN_OPTIONS: tuple[str, ...] = tuple(name for name, o in TRAINING_OPTIONS.items() if o.per_run)
"""Training options a study sets for every run (`Option.per_run`): not a recipe's or a flag's to set."""

METHOD_OPTIONS: dict[str, Option] = {
    o.name: o
    for o in [
        Option(
            "temperature",
            float,
            1.0,
            "softmax temperature τ of the KL terms (the loss is multiplied by τ²)",
            lambda v: MIN_TEMPERATURE <= v <= MAX_TEMPERATURE,
            f"in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}]",
        ),
        Option(
            "top_k",
            int,
            None,
            "restrict the KL to the teacher's top-k classes per sample (None: all classes)",
            lambda v: 1 <= v <= 10**9,
            ">= 1 or None",
            optional=True,
        ),
        Option(
            "alpha",
            float,
            1.0,
            "weight of the KL term; 1 - alpha weighs cross-entropy on the labels",
            lambda v: 0 <= v <= 1,
            "in [0, 1]",
        ),
        Option("gamma", float, 1.0, "weight of the cross-entropy term of CD / CRD", lambda v: v >= 0, ">= 0"),
        Option("beta", float, 1.0, "weight of the contrastive term of CD / CRD", lambda v: v >= 0, ">= 0"),
        Option(
            "crd_feature_dim", int, 128, "dimension of CRD's projections", lambda v: 1 <= v <= 65536, "in [1, 65536]"
        ),
        Option(
            "crd_negatives",
            int,
            4096,
            "negatives per sample drawn from CRD's memory bank",
            lambda v: 1 <= v <= 2**20,
            "in [1, 2**20]",
        ),
        Option(
            "crd_temperature",
            float,
            0.07,
            "temperature of CRD's NCE scores",
            lambda v: MIN_TEMPERATURE <= v <= MAX_TEMPERATURE,
            f"in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}]",
        ),
        Option("crd_momentum", float, 0.5, "momentum of CRD's memory-bank update", lambda v: 0 <= v < 1, "in [0, 1)"),
        Option(
            "mcl_interpolation",
            float,
            0.9999,
            "MCL interpolation factor t: slow <- t*slow + (1-t)*fast; only meaningful relative to the step count",
            lambda v: 0 <= v <= 1,
            "in [0, 1]",
        ),
        Option(
            "mcl_period",
            int,
            2,
            "MCL interpolates the slow weights every N optimiser steps",
            lambda v: 1 <= v <= 10**9,
            "in [1, 10**9]",
        ),
    ]
}
"""The options of the transfer methods by name; each preset uses those of its loss and regulariser."""


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword options into training options and method options.

    Raises:
        AnyteachError: an option that is neither (the message lists the known ones).
    """
    training, method = {}, {}
    for name, value in options.items():
        if name in TRAINING_OPTIONS:
            training[name] = value
        elif name in METHOD_OPTIONS:
            method[name] = value
        else:
            known = ", ".join(sorted(TRAINING_OPTIONS.keys() | METHOD_OPTIONS.keys()))
            raise AnyteachError(f"unknown option {name!r}; options: {known}")
    return training, method


__all__ = [
    "AMP_MODES",
    "BUDGET_OPTIONS",
    "MAX_BATCH",
    "MAX_EPOCHS",
    "MAX_SEED",
    "METHOD_OPTIONS",
    "MIX_MODES",
    "NOT_COMPARED",
    "PER_RUN_OPTIONS",
    "TRAINING_OPTIONS",
    "Option",
    "TrainingOptions",
    "option",
    "split_options",
]
