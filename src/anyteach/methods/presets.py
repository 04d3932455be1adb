"""Presets: the named transfer methods, each a target rule, a loss and an optional regulariser.

`PRESET_TABLE` below is the list of built-in methods (`anyteach methods` shows it); each row names
one registered part of each kind (`targets.py`, `losses.py`, `regularisers.py`) plus the
paper's defaults. The rest of the module makes a preset concrete: `MethodPreset` and what a step
needs (`MethodNeeds`), option resolution, and `TransferMethod`, the preset with resolved options
that the trainer calls once per batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import AnyteachError
from ..core.options import METHOD_OPTIONS, TRAINING_OPTIONS, TrainingOptions
from ..core.registry import RegistrationError, Registry
from ..data.mixing import Mix
from .losses import LOSSES, LossInputs, MethodContext, label_cross_entropy
from .regularisers import REGULARISERS, WeightRegulariser
from .targets import TARGET_RULES, RuleInputs, Target

TEACHING_RECIPE: dict[str, Any] = {"optimizer": "adamw", "lr": 1e-3, "lr_schedule": "cosine"}
"""The recipe `pl+ens+wise` was developed with (research/teaching-gains.md): a higher lr with
cosine decay, made safe by its WiSE guard; at the paper's SGD lr 1e-4 the student barely moves and
the guard keeps the original."""

CONTROL_METHOD = "xe"
"""The no-teacher control of a method that uses the transfer labels: the same budget on the labels alone."""

MIXED_CONTROL = "xe+mix"
"""The other no-teacher control of a method that uses the transfer labels: the same budget on the labels of
inputs mixed in pairs (the `mix` option); a run is paired with the stronger of `xe` and `xe+mix`."""

SELF_CONTROL = "self"
"""The no-teacher control every method has: self-distillation, the same data and budget, no labels."""

CALIB_CONTROL = "self+xe+wise"
"""The no-teacher control of a method that uses the calib split's labels (a guard, a calibrated weight):
self-distillation plus cross-entropy on those labels, with the same guard."""

TRAIN_CONTROL = "self+xetrain+wise"
"""The no-teacher control of a method that also fine-tunes on the train split's labels."""

TEACHING_PRESET = "pl+ens+wise"
"""What a transfer uses by default on data with a labelled calib split: teaching without labels."""

TEACHING_WITH_LABELS_PRESET = "pl+ens+xetrain+wise"
"""The default on unlabelled (or fresh) transfer data with a calib split and labelled train samples."""

LABELS_ONLY_PRESET = "kl+dp"
"""The default with labels only (no calib split, no unlabelled data)."""

NO_LABELS_PRESET = "kl+dp-u"
"""The default on unlabelled transfer data without a calib split."""

UNLABELLED_CONTROLS: tuple[str, ...] = (SELF_CONTROL, CALIB_CONTROL)
"""The no-teacher controls of a method that uses no labels but the calib split's; a run is paired with the
stronger of the two."""

PRESET_TABLE: list[dict[str, Any]] = [
    # the paper's methods (docs/concepts/transfer-without-forgetting.md) and its proposal, kl+dp
    dict(name="kl", target="teacher", loss="kl", description="KL-Dist: KL to the teacher on every sample"),
    dict(
        name="xekl",
        target="teacher",
        loss="kl",
        defaults={"alpha": 0.5},
        description="XE-KL-Dist: α·KL to the teacher + (1−α)·CE",
    ),
    dict(
        name="cd",
        target=None,
        loss="cd",
        defaults={"gamma": 0.1, "beta": 10.0},
        description="CD: γ·CE + β·in-batch feature-similarity KL to the teacher",
    ),
    dict(
        name="crd",
        target=None,
        loss="crd",
        defaults={"gamma": 1.0, "beta": 0.8},
        description="CRD: γ·CE + β·contrastive representation distillation",
    ),
    dict(
        name="xekl+mcl",
        target="teacher-skip-lost",
        loss="kl",
        regulariser="mcl",
        defaults={"alpha": 0.68},
        base_lr=1e-2,
        description="XE-KL-Dist + MCL: KL skipped where T wrong and S right; slow weights exported",
    ),
    dict(
        name="kl+dp",
        target="dp",
        loss="kl",
        description="KL-Dist + DP (the proposal): per sample the more confident in y of T and S_frozen",
    ),
    dict(
        name="kl+dp-u",
        target="dp-u",
        loss="kl",
        description="KL-Dist + DP, unsupervised: per sample the higher max probability",
    ),
    # the paper's flip ablations
    dict(
        name="kl+flip-st",
        target="flip-st",
        loss="kl",
        description="ablation: T on positive flips only, S_frozen elsewhere",
    ),
    dict(
        name="kl+flip-t",
        target="flip-t",
        loss="kl",
        description="ablation: S_frozen on negative flips only, T elsewhere",
    ),
    dict(
        name="kl+flip-avg",
        target="flip-avg",
        loss="kl",
        description="ablation: T on positive flips, S_frozen on negative, mean on neutral",
    ),
    dict(name="self", target="frozen", loss="kl", description="self-distillation: KL to S_frozen on every sample"),
    # teaching without labels (research/teaching-gains.md) and its control
    dict(
        name="pl+ens+wise",
        target="ens-hard",
        loss="kl",
        regulariser="wise",
        description="teaching without labels: cross-entropy on the class of the student–teacher ensemble "
        "(teacher weight chosen on the calib split), exported as the WiSE interpolation of S0 and "
        "the student chosen on the calib split",
        recipe=TEACHING_RECIPE,
    ),
    dict(
        name="self+wise",
        target="frozen",
        loss="kl",
        regulariser="wise",
        description="control of pl+ens+wise: self-distillation with the same WiSE guard, no teacher",
        recipe=TEACHING_RECIPE,
    ),
    dict(
        name="self+xe+wise",
        target="frozen",
        loss="kl",
        regulariser="wise",
        labelled_split="calib",
        description="stronger control of pl+ens+wise: self-distillation on the transfer data plus cross-entropy "
        "on the calib split's labels at every step, the same WiSE guard, no teacher",
        recipe=TEACHING_RECIPE,
    ),
    # teaching with labels: labelled train data plus unlabelled fresh data (research/teaching-gains.md),
    # and its control, which uses both the same way without a teacher
    dict(
        name="pl+ens+xetrain+wise",
        target="ens-hard",
        loss="kl",
        regulariser="wise",
        labelled_split="train",
        controls=("self+xetrain+wise",),
        description="teaching with labels: pl+ens+wise on unlabelled transfer data plus cross-entropy on a batch "
        "of the train split's labels at every step, the same WiSE guard",
        recipe=TEACHING_RECIPE,
    ),
    dict(
        name="self+xetrain+wise",
        target="frozen",
        loss="kl",
        regulariser="wise",
        labelled_split="train",
        description="control of pl+ens+xetrain+wise: self-distillation on the transfer data plus cross-entropy on "
        "the train split's labels at every step, the same WiSE guard, no teacher",
        recipe=TEACHING_RECIPE,
    ),
    # baselines
    dict(
        name="xe",
        target=None,
        loss="ce",
        description="baseline: plain cross-entropy fine-tuning, same budget, no teacher",
    ),
    dict(
        name="xe+mix",
        target=None,
        loss="ce",
        description="baseline: cross-entropy fine-tuning on inputs mixed in pairs (mixup unless the run's mix "
        "option says otherwise), each label weighed by its share, same budget, no teacher",
        recipe={"mix": "mixup"},
    ),
    dict(
        name="ensemble",
        target="dp-u",
        loss=None,
        description="baseline, no training: per sample the more confident of S0 and T",
    ),
]
"""The built-in presets, registered at import in this order: name, target rule, loss, regulariser,
method-option defaults that differ from the global ones, base lr, description, and the training recipe
(optimiser, lr, schedule) a preset was developed with where it is not the paper's."""


@dataclass(frozen=True)
class MethodNeeds:
    """What a training step needs besides the student's logits.

    Attributes:
        frozen: the frozen initial student's logits (the target rule uses them).
        teacher_logits: the teachers' logits (the target rule uses them).
        teacher_features: the first teacher's penultimate features (the loss uses them: CD, CRD).
        student_features: the student's penultimate features (the loss uses them: CD, CRD).
        calibration: the dataset's `calib` split (the target rule or the regulariser chooses on it).
        labelled: the labelled split the method also fine-tunes on (`MethodPreset.labelled_split`), or None.
        unmixed: the transfer batch before input mixing (`MethodPreset.unmixed_xe`: a label term on it).
        live: the frozen student's and the teachers' outputs must be computed on every step's own inputs,
            not read from a cache by sample index: the inputs are augmented or mixed at every step
            (`MethodPreset.needs_for` sets it from the training options).
    """

    frozen: bool = False
    teacher_logits: bool = False
    teacher_features: bool = False
    student_features: bool = False
    calibration: bool = False
    labelled: str | None = None
    unmixed: bool = False
    live: bool = False


@dataclass(frozen=True)
class MethodPreset:
    """A named method: a target rule, a loss and an optional regulariser, with the paper's defaults.

    `loss=None` means no training (the `ensemble` baseline: the target rule's choice between S0 and T *is* the
    prediction). `labelled_split` names a labelled split of the dataset (`calib`, `train`) that the method
    also fine-tunes on: at every step a batch of it, drawn at random, adds a cross-entropy term on its labels
    next to the loss on the transfer batch. `defaults` are method options (`options.METHOD_OPTIONS`) that
    differ from their global defaults; `base_lr` is the method's base learning rate, which a run's default lr
    scales by batch_size / 256 (the paper's 1e-4; MCL's 1e-2). `recipe` holds the training options
    (`options.TRAINING_OPTIONS`: optimiser, lr, schedule) the preset was developed with; a run takes them
    unless it sets its own (empty: the paper's recipe, SGD with a constant base_lr x batch / 256). `controls`
    names the no-teacher presets a study pairs its runs with (the stronger per run) where the default pairing
    (`xe`, or for a method that uses no labels `self` / `self+xe+wise`) is not the fair one. `unmixed_xe` adds,
    in the same step, cross-entropy on the labels of the transfer batch *before* input mixing (the `mix`
    option) next to the loss on the mixed batch, in one forward pass over both (without mixing: on the
    batch itself).
    """

    name: str
    description: str
    target: str | None
    loss: str | None
    regulariser: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    base_lr: float = 1e-4
    reference: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)
    labelled_split: str | None = None
    controls: tuple[str, ...] = ()
    unmixed_xe: bool = False

    @property
    def option_names(self) -> tuple[str, ...]:
        """The method options its loss and regulariser read (`options.METHOD_OPTIONS` names)."""
        names: list[str] = []
        if self.loss is not None:
            names += LOSSES[self.loss].options
        if self.regulariser is not None:
            names += REGULARISERS[self.regulariser].options
        return tuple(dict.fromkeys(names))

    @property
    def needs(self) -> MethodNeeds:
        """What a training step of this method needs besides the student's logits."""
        rule = TARGET_RULES[self.target] if self.target is not None else None
        loss = LOSSES[self.loss] if self.loss is not None else None
        regulariser = REGULARISERS[self.regulariser] if self.regulariser is not None else None
        return MethodNeeds(
            frozen=rule is not None and rule.uses_frozen,
            teacher_logits=rule is not None and rule.uses_teacher,
            teacher_features=loss is not None and loss.needs_teacher_features,
            student_features=loss is not None and loss.needs_features,
            calibration=(rule is not None and rule.calibrate is not None)
            or (regulariser is not None and regulariser.needs_calibration)
            or self.labelled_split == "calib",
            labelled=self.labelled_split,
            unmixed=self.unmixed_xe,
        )

    def needs_for(self, training: TrainingOptions) -> MethodNeeds:
        """What a step of this method needs when trained with `training`: its `needs`, with `live` set where
        the inputs change at every step (augmentation, input mixing) or caching is switched off."""
        live = training.augment or training.mix != "none" or not training.cache_teacher_outputs
        return dataclasses.replace(self.needs, live=live)

    @property
    def needs_teacher(self) -> bool:
        """The method uses a teacher at all (its logits or its features)."""
        return self.needs.teacher_logits or self.needs.teacher_features

    @property
    def multi_teacher(self) -> bool:
        """The method takes K > 1 teachers at once (its target rule chooses between them)."""
        return self.target is not None and TARGET_RULES[self.target].multi_teacher and not self.needs.teacher_features

    @property
    def trains(self) -> bool:
        """The method trains the student (False: the `ensemble` baseline, which only predicts)."""
        return self.loss is not None

    def labelled_splits(self, method_options: Mapping[str, Any]) -> frozenset[str]:
        """The splits whose labels the method uses, with these options: `transfer` (its target rule or loss
        reads the batch's labels), `calib` (it chooses a weight or an interpolation there), `train` (it
        also fine-tunes on them: `labelled_split`)."""
        rule = TARGET_RULES[self.target] if self.target is not None else None
        loss = LOSSES[self.loss] if self.loss is not None else None
        used = set()
        if (
            (rule is not None and rule.uses_labels)
            or (loss is not None and loss.uses_labels(method_options))
            or self.unmixed_xe
        ):
            used.add("transfer")
        if self.needs.calibration:
            used.add("calib")
        if self.labelled_split is not None:
            used.add(self.labelled_split)
        return frozenset(used)

    def no_teacher_controls(self, method_options: Mapping[str, Any]) -> tuple[str, ...]:
        """The no-teacher presets this method is compared with: the ones that spend the same labelled samples
        (a run is then compared with the stronger of them). `controls` when the preset names its own; else
        `self` (the same data and budget, no labels), plus `xe` and `xe+mix` (the labels of mixed inputs) when
        it uses the transfer labels, `self+xe+wise` when it uses the calib split's and `self+xetrain+wise` when
        it fine-tunes on train's."""
        if self.controls:
            return self.controls
        used = self.labelled_splits(method_options)
        extra = {"transfer": (CONTROL_METHOD, MIXED_CONTROL), "calib": (CALIB_CONTROL,), "train": (TRAIN_CONTROL,)}
        return (SELF_CONTROL, *(c for split in ("transfer", "calib", "train") if split in used for c in extra[split]))


METHODS: Registry[MethodPreset] = Registry("method")


def register_method(preset: MethodPreset) -> MethodPreset:
    """Add a preset to the registry (its parts must be registered already).

    Raises:
        RegistrationError: the name is taken, a part is not registered, or a default is not one of the
            preset's method options or out of range.
    """
    for kind, name, registry in (
        ("target rule", preset.target, TARGET_RULES),
        ("loss", preset.loss, LOSSES),
        ("regulariser", preset.regulariser, REGULARISERS),
    ):
        if name is not None and name not in registry:
            raise RegistrationError(f"preset {preset.name!r}: unknown {kind} {name!r}")
    for name, value in preset.defaults.items():
        if name not in preset.option_names:
            raise RegistrationError(
                f"preset {preset.name!r}: default {name!r} is not one of its method options "
                f"({', '.join(preset.option_names) or 'none'})"
            )
        METHOD_OPTIONS[name].validate(value, f"of method {preset.name!r}")
    for name, value in preset.recipe.items():
        if name not in TRAINING_OPTIONS:
            raise RegistrationError(f"preset {preset.name!r}: recipe key {name!r} is not a training option")
        TRAINING_OPTIONS[name].validate(value, f"of the recipe of method {preset.name!r}")
    return METHODS.add(preset.name, preset)


for _row in PRESET_TABLE:
    register_method(MethodPreset(**_row))


def get_method(name: str) -> MethodPreset:
    """The preset called `name`.

    Raises:
        AnyteachError: unknown method (the message lists the known ones).
    """
    return METHODS[name]


def resolve_method_options(method: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The method's full option set: the given values over the preset's defaults over the global ones.

    Raises:
        AnyteachError: unknown method, unknown option, an option the method does not use, or a value of
            the wrong type or out of range (the message names the option).
    """
    preset = get_method(method)
    names = preset.option_names
    owner = f"of method {method!r}"
    resolved = {
        name: METHOD_OPTIONS[name].validate(preset.defaults.get(name, METHOD_OPTIONS[name].default), owner)
        for name in names
    }
    for name, value in (given or {}).items():
        if name not in METHOD_OPTIONS:
            raise AnyteachError(f"unknown method option {name!r}; method options: {', '.join(METHOD_OPTIONS)}")
        if name not in names:
            uses = ", ".join(names) or "none"
            raise AnyteachError(f"option {name!r} does not apply to method {method!r} (its options: {uses})")
        resolved[name] = METHOD_OPTIONS[name].validate(value, owner)
    return resolved


def preset_recipe(method: str) -> dict[str, Any]:
    """The training recipe a preset runs with unless told otherwise: optimiser, lr, lr schedule (the
    lr as a number, or as the rule `<base_lr> x batch_size / 256`)."""
    preset = get_method(method)
    recipe = {"optimizer": "sgd", "lr": f"{preset.base_lr:g} x batch_size / 256", "lr_schedule": "constant"}
    return {**recipe, **preset.recipe}


def method_table() -> list[dict[str, Any]]:
    """One row per preset: name, parts, method option defaults, base lr, training recipe, description."""
    return [
        {
            "name": preset.name,
            "target": preset.target,
            "loss": preset.loss,
            "regulariser": preset.regulariser,
            "teacher": preset.needs_teacher,
            "defaults": resolve_method_options(preset.name),
            "base_lr": preset.base_lr,
            "recipe": preset_recipe(preset.name),
            "description": preset.description,
        }
        for preset in METHODS.values()
    ]


# ---------------------------------------------------------------------------------------------
# A preset made concrete


@dataclass
class StepOutput:
    """One step of a method: the student's logits, the named loss terms and the target used."""

    logits: torch.Tensor
    losses: dict[str, torch.Tensor]
    target: Target | None


class TransferMethod(nn.Module):
    """A preset with resolved options: its target rule (calibrated once) and its loss module. The
    regulariser watches the student's weights and is built apart (`build_regulariser`).

    The loss's trainable parts (CRD's projections) and state (CRD's memory bank) are submodules, so
    `parameters()` gives what the optimiser must train besides the student and `state_dict()` what the
    checkpoint must keep.
    """

    def __init__(self, preset: MethodPreset, options: dict[str, Any], context: MethodContext):
        super().__init__()
        self.preset = preset
        self.needs = preset.needs
        self.opts = dict(options)
        self.rule = TARGET_RULES[preset.target] if preset.target is not None else None
        self.loss = LOSSES[preset.loss](self.opts, context) if preset.loss is not None else None
        self.rule_params: dict[str, Any] = {}
        self.labelled_batch = context.labelled_batch if preset.labelled_split is not None else None
        if preset.labelled_split is not None and self.labelled_batch is None:
            raise AnyteachError(
                f"method {preset.name!r} fine-tunes on the {preset.labelled_split!r} split, which "
                "the trainer did not provide"
            )
        if self.rule is not None and self.rule.calibrate is not None:
            if context.calibration is None:
                raise AnyteachError(
                    f"method {preset.name!r} chooses its target on a calibration split: use a "
                    "dataset with one (e.g. mnist1d:calib=5000)"
                )
            self.rule_params = self.rule.calibrate(context.calibration)

    def target(
        self,
        labels: torch.Tensor,
        frozen: torch.Tensor | None,
        teachers: torch.Tensor | None,
        student: torch.Tensor,
        mix: Mix | None = None,
    ) -> Target | None:
        """The target rule applied to one batch (None for methods without one)."""
        if self.rule is None:
            return None
        # None only where the rule's registration says it does not use them (uses_frozen, uses_teacher)
        return self.rule.fn(RuleInputs(labels, frozen, teachers, student, self.rule_params, mix))  # type: ignore[arg-type]

    def forward(
        self,
        student: nn.Module,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        index: torch.Tensor,
        frozen_logits: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None,
        teacher_features: torch.Tensor | None = None,
        mix: Mix | None = None,
    ) -> StepOutput:
        """Run the student on a batch and return its loss terms.

        Args:
            student: the classifier being trained (train mode).
            inputs, labels, index: the batch (mixed, if `mix`), its samples' labels and positions in the
                transfer split (of the samples before mixing).
            frozen_logits: `(B, C)` outputs of the frozen initial student on `inputs`.
            teacher_logits: `(K, B, C)` outputs of the teachers on `inputs`.
            teacher_features: `(B, D)` penultimate features of the (first) teacher.
            mix: how `inputs` were mixed (the `mix` option; None: not mixed).
        """
        extra: list[torch.Tensor] = []  # further batches of the same forward pass
        unmixed = self.preset.unmixed_xe and mix is not None
        if mix is not None and unmixed:
            extra.append(mix.unmixed)
        if self.labelled_batch is not None:
            extra_inputs, extra_labels = self.labelled_batch(index)
            extra.append(extra_inputs)
        if self.needs.student_features:
            logits, features = student.features(inputs)  # type: ignore[operator]  # a Classifier's
            others = [student(x) for x in extra]
        elif extra:  # one forward pass over the transfer batch and the extra batches
            every = student(torch.cat([inputs, *extra]))
            logits, features = every[: len(inputs)], None
            others = list(every[len(inputs) :].split([len(x) for x in extra]))
        else:
            logits, features, others = student(inputs), None, []
        target = self.target(labels, frozen_logits, teacher_logits, logits.detach(), mix)
        assert self.loss is not None, "forward() is called only for methods that train"
        losses = self.loss(LossInputs(logits, features, labels, index, target, teacher_logits, teacher_features, mix))
        if self.preset.unmixed_xe:  # the labels of the samples before mixing (without mixing: the batch itself)
            losses["loss_unmixed"] = label_cross_entropy(others.pop(0) if unmixed else logits, labels)
        if self.labelled_batch is not None:
            losses["loss_labelled"] = F.cross_entropy(others.pop(0).float(), extra_labels)
        return StepOutput(logits, losses, target)


def build_method(name: str, options: dict[str, Any], context: MethodContext) -> TransferMethod:
    """A `TransferMethod` for preset `name` with already-resolved options (`resolve_method_options`)."""
    return TransferMethod(get_method(name), options, context)


def build_regulariser(
    preset: MethodPreset, student: nn.Module, options: dict[str, Any], context: MethodContext | None = None
) -> WeightRegulariser:
    """The preset's weight regulariser watching `student`; for a preset without one, the no-op base
    `WeightRegulariser` (exports the student itself, chooses nothing, holds no state)."""
    if preset.regulariser is None:
        return WeightRegulariser()
    return REGULARISERS[preset.regulariser](student, options, context)
