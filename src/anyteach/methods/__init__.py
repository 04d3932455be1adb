"""Transfer methods: target rules, losses and weight regularisers, composed into named presets.

A transfer method (docs/concepts/transfer-without-forgetting.md) is three small parts, each in its own module and each a
registry reachable by name:
- `targets`: a **target rule** says whose output the student imitates, per sample;
- `losses`: a **loss** module returns named, weighted loss terms (their sum is the training loss);
- `regularisers`: an optional **weight regulariser** (MCL's slow weights, the WiSE guard) decides
  which model is evaluated and exported.
`presets` names one of each plus the paper's defaults (`PRESET_TABLE`: `kl`, `xekl`, `cd`, `crd`,
`xekl+mcl`, `kl+dp`, ...) and makes a preset concrete (`TransferMethod`). A new method is one
decorated function or class and one `register_method` line (see `examples/custom_method.py`).
Every public name of the parts is re-exported here: `from anyteach.methods import X` works.

May import: `core`, `models`, `data`, `zoo`.
"""

from __future__ import annotations

import warnings
from typing import Any

from .losses import (
    LOSSES,
    ContrastiveDistillation,
    ContrastiveRepresentationDistillation,
    CrossEntropy,
    KLDistillation,
    LossInputs,
    MethodContext,
    TransferLoss,
    kl_divergence,
    label_cross_entropy,
    nce_loss,
    register_loss,
    similarity_structure_loss,
)
from .presets import (
    METHODS,
    PRESET_TABLE,
    TEACHING_RECIPE,
    MethodNeeds,
    MethodPreset,
    StepOutput,
    TransferMethod,
    build_method,
    build_regulariser,
    get_method,
    method_table,
    preset_recipe,
    register_method,
    resolve_method_options,
)
from .regularisers import (
    REGULARISERS,
    WISE_ALPHAS,
    SlowWeights,
    WeightInterpolation,
    WeightRegulariser,
    register_regulariser,
)
from .targets import (
    FROZEN,
    MIXED,
    MIXTURE_WEIGHTS,
    SKIPPED,
    TARGET_RULES,
    Calibration,
    RuleInputs,
    Target,
    TargetRule,
    average_on_neutral,
    calibrated_ensemble,
    calibrated_ensemble_label,
    calibrated_ensemble_nll,
    choose_mixture_weight,
    choose_mixture_weight_nll,
    data_partitioning,
    data_partitioning_unsupervised,
    ensemble_corrections,
    ensemble_predictions,
    frozen_label,
    frozen_on_negative_flips,
    frozen_target,
    hard_logits,
    label_probability,
    mixture_classes,
    mixture_log_probs,
    most_confident,
    register_target_rule,
    teacher_except_where_lost,
    teacher_mixture,
    teacher_on_positive_flips,
    teacher_target,
    true_labels,
)

_DEPRECATED = {
    "OPTIONS": ("METHOD_OPTIONS", "anyteach.options.METHOD_OPTIONS"),
    "Option": ("Option", "anyteach.options.Option"),
}


def __getattr__(name: str) -> Any:
    """The deprecated aliases `methods.OPTIONS` and `methods.Option`, with a `DeprecationWarning`."""
    if name in _DEPRECATED:
        attribute, new = _DEPRECATED[name]
        warnings.warn(f"anyteach.methods.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
        from ..core import options

        return getattr(options, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FROZEN",
    "LOSSES",
    "METHODS",
    "MIXED",
    "MIXTURE_WEIGHTS",
    "PRESET_TABLE",
    "REGULARISERS",
    "SKIPPED",
    "TARGET_RULES",
    "WISE_ALPHAS",
    "Calibration",
    "ContrastiveDistillation",
    "ContrastiveRepresentationDistillation",
    "CrossEntropy",
    "KLDistillation",
    "LossInputs",
    "MethodContext",
    "MethodNeeds",
    "MethodPreset",
    "RuleInputs",
    "SlowWeights",
    "StepOutput",
    "Target",
    "TargetRule",
    "TransferLoss",
    "TransferMethod",
    "WeightInterpolation",
    "WeightRegulariser",
    "build_method",
    "build_regulariser",
    "choose_mixture_weight",
    "choose_mixture_weight_nll",
    "ensemble_predictions",
    "get_method",
    "hard_logits",
    "kl_divergence",
    "label_cross_entropy",
    "label_probability",
    "method_table",
    "mixture_log_probs",
    "most_confident",
    "nce_loss",
    "preset_recipe",
    "TEACHING_RECIPE",
    "register_loss",
    "register_method",
    "register_regulariser",
    "register_target_rule",
    "resolve_method_options",
    "similarity_structure_loss",
    "true_labels",
    "teacher_mixture",
    "mixture_classes",
    # the built-in target rules, by function name
    "average_on_neutral",
    "calibrated_ensemble",
    "calibrated_ensemble_label",
    "calibrated_ensemble_nll",
    "data_partitioning",
    "data_partitioning_unsupervised",
    "ensemble_corrections",
    "frozen_label",
    "frozen_on_negative_flips",
    "frozen_target",
    "teacher_except_where_lost",
    "teacher_on_positive_flips",
    "teacher_target",
]
