"""The presets the teaching-gains research (research/teaching-gains.md) compared, as a plugin.

Every part they use is registered by anyteach itself (target rules `ens`, `ens-nll`, `ens-hard`,
`ens-fix`, `frozen-hard`, the `wise` regulariser); only the candidates that were not adopted live here,
so `anyteach methods` lists the product's presets while the log stays reproducible: every study
file under `studies/` names this file under `imports:`, and `scripts/screen.py` imports it.
"""

from anyteach.methods import MethodPreset, register_method

for preset in [
    MethodPreset(
        "kl+ens",
        "KL to the calibrated student-teacher ensemble (teacher weight chosen on the calib split)",
        "ens",
        "kl",
    ),
    MethodPreset(
        "kl+ens-nll",
        "KL to the calibrated student-teacher ensemble (teacher weight minimising NLL on the calib split)",
        "ens-nll",
        "kl",
    ),
    MethodPreset(
        "pl+ens", "pseudo-labels: cross-entropy on the calibrated student-teacher ensemble's class", "ens-hard", "kl"
    ),
    MethodPreset(
        "pl+self", "self-training control: cross-entropy on S_frozen's own predicted class", "frozen-hard", "kl"
    ),
    MethodPreset(
        "kl+ens+wise", "kl+ens, exported as the WiSE interpolation chosen on the calib split", "ens", "kl", "wise"
    ),
    MethodPreset(
        "kl+ens-nll+wise",
        "kl+ens-nll, exported as the WiSE interpolation chosen on the calib split",
        "ens-nll",
        "kl",
        "wise",
    ),
    MethodPreset(
        "kl+ens-fix",
        "pseudo-label where the calibrated ensemble changes S_frozen's class, S_frozen elsewhere",
        "ens-fix",
        "kl",
    ),
    MethodPreset(
        "kl+ens-fix+wise",
        "kl+ens-fix, exported as the WiSE interpolation chosen on the calib split",
        "ens-fix",
        "kl",
        "wise",
    ),
    MethodPreset("xe+wise", "control: cross-entropy fine-tuning with the same WiSE guard", None, "ce", "wise"),
    MethodPreset(
        "xekl+ens", "α·KL to the calibrated student-teacher ensemble + (1−α)·CE", "ens", "kl", defaults={"alpha": 0.5}
    ),
]:
    register_method(preset)

# ---- issue 16: the candidates tested against the stronger control (self+xe+wise) ----------------------------------

import torch  # noqa: E402

from anyteach.methods import (  # noqa: E402
    Calibration,
    RuleInputs,
    Target,
    choose_mixture_weight,
    mixture_log_probs,
    register_target_rule,
)
from anyteach.methods.targets import _routing_of  # noqa: E402

SHARPENING = (0.25, 0.5, 0.75, 1.0)
"""The temperatures `ens-temp` chooses from (τ < 1 sharpens the calibrated ensemble toward its class)."""


def choose_weight_and_temperature(calibration: Calibration) -> dict:
    """w as `ens-hard` (calib accuracy), then the temperature τ whose tempered ensemble
    softmax(log p_mix / τ) has the lowest NLL on the calib split (ties: the larger τ, the softer)."""
    chosen = choose_mixture_weight(calibration)
    logp = mixture_log_probs(calibration.frozen, calibration.teachers[0], chosen["teacher_weight"])
    labels = calibration.labels.view(-1, 1)
    scored = [(float(-torch.log_softmax(logp / t, 1).gather(1, labels).mean()), -t) for t in SHARPENING]
    nll, negative_t = min(scored)
    return {**chosen, "temperature": -negative_t, "calib_tempered_nll": nll}


@register_target_rule("ens-temp", calibrate=choose_weight_and_temperature)
def tempered_ensemble(inputs: RuleInputs) -> Target:
    """The calibrated student-teacher ensemble at the temperature chosen on the calib split (soft target)."""
    w, t = inputs.params["teacher_weight"], inputs.params["temperature"]
    logits = mixture_log_probs(inputs.frozen, inputs.teachers[0], w) / t
    return Target(logits, _routing_of(w, logits))


for preset in [
    MethodPreset(
        "pl+ens+xe+wise",
        "labels and teacher together: pl+ens+wise plus cross-entropy on the calib split's labels at every step",
        "ens-hard",
        "kl",
        "wise",
        labelled_split="calib",
    ),
    MethodPreset(
        "kl+ens-t+wise",
        "KL to the calibrated ensemble at a temperature chosen on the calib split, WiSE guard",
        "ens-temp",
        "kl",
        "wise",
    ),
    MethodPreset(
        "kl+ens-t+xe+wise",
        "kl+ens-t+wise plus cross-entropy on the calib split's labels at every step",
        "ens-temp",
        "kl",
        "wise",
        labelled_split="calib",
    ),
    # pl+ens+xetrain+wise and its control self+xetrain+wise (H10) were adopted: they are product presets now
]:
    register_method(preset)

# ---- issue 27: labels only (the train split): function matching on mixed inputs ------------------------------------
# Teacher, frozen student and student see the same mixed input (mixup unless a run's `mix` says otherwise), live.
# Each is paired with the stronger per student of `xe` and `xe+mix` (same data, labels, budget; `controls`).

from anyteach.methods import teacher_mixture  # noqa: E402

LABEL_CONTROLS = ("xe", "xe+mix")
"""The label-only controls of the same data and budget: plain and mixed cross-entropy (the stronger per run)."""


@register_target_rule("ens-equal", multi_teacher=True)
def equal_ensemble(inputs: RuleInputs) -> Target:
    """The student-teacher ensemble with equal weights, (p_S0 + p_T) / 2, on every sample (no labels, no calib)."""
    logits = mixture_log_probs(inputs.frozen, teacher_mixture(inputs.teachers), 0.5)
    return Target(logits, _routing_of(0.5, logits))


for preset in [
    MethodPreset(
        "fm+dp",
        "function matching on mixed inputs: KL to the more confident in the (mixed) label of T and S_frozen",
        "dp",
        "kl",
        recipe={"mix": "mixup"},
        controls=LABEL_CONTROLS,
    ),
    MethodPreset(
        "fm+dp+xe",
        "fm+dp plus cross-entropy on the labels of the unmixed samples in the same step",
        "dp",
        "kl",
        recipe={"mix": "mixup"},
        controls=LABEL_CONTROLS,
        unmixed_xe=True,
    ),
    MethodPreset(
        "fm+self+xe",
        "ablation of fm+dp+xe without a teacher: KL to S_frozen on the mixed inputs plus xe on the unmixed samples",
        "frozen",
        "kl",
        recipe={"mix": "mixup"},
        controls=LABEL_CONTROLS,
        unmixed_xe=True,
    ),
    MethodPreset(
        "fm+ens",
        "function matching on mixed inputs: KL to the equal-weight student-teacher ensemble",
        "ens-equal",
        "kl",
        recipe={"mix": "mixup"},
        controls=LABEL_CONTROLS,
    ),
    MethodPreset(
        "fm+ens+xe",
        "fm+ens plus cross-entropy on the labels of the unmixed samples in the same step",
        "ens-equal",
        "kl",
        recipe={"mix": "mixup"},
        controls=LABEL_CONTROLS,
        unmixed_xe=True,
    ),
]:
    register_method(preset)
