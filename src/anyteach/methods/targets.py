"""Target rules: whose output the student imitates, per sample (docs/concepts/transfer-without-forgetting.md).

A target rule receives the frozen initial student's logits `(B, C)`, the teachers' logits stacked
as `(K, B, C)`, the labels and the current student's (detached) logits, and returns target logits
plus the routing (which candidate each sample's target came from: `FROZEN`, teacher k, `MIXED` or
`SKIPPED`). Rules are registered by `register_target_rule` and reachable by name in
`TARGET_RULES`; a rule with a `calibrate` step chooses its numbers once per run on the dataset's
`calib` split. Every per-sample decision is a tensor operation over the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..core.registry import Registry
from ..data.mixing import Mix

FROZEN = 0
"""Routing code of the frozen initial student; teacher k (1-based) has code k."""
MIXED = -1
"""Routing code of a target that mixes the frozen student and the teacher (`kl+flip-avg`)."""
SKIPPED = -2
"""Routing code of a sample that gets no distillation target (MCL skips the teacher's negative flips)."""


@dataclass
class RuleInputs:
    """What a target rule sees for one batch (all logits un-normalised, float or bf16).

    Attributes:
        labels: `(B,)` true labels.
        frozen: `(B, C)` logits of the frozen initial student S_frozen (None if the rule does not use it).
        teachers: `(K, B, C)` logits of the K teachers (None for rules without a teacher).
        student: `(B, C)` logits of the student being trained, detached.
        params: what the rule's `calibrate` step chose, once per run.
        mix: how the batch's inputs were mixed (None: not mixed). A rule that asks whether a model is
            right compares with the label of the larger part (`true_labels`); one that scores the
            confidence in the label weighs both labels by their shares (`label_probability`).
    """

    # typed as tensors: a rule gets None only for what its registration says it does not use
    # (`uses_frozen`, `uses_teacher`), so a rule's body may rely on what it declared
    labels: torch.Tensor
    frozen: torch.Tensor
    teachers: torch.Tensor
    student: torch.Tensor
    params: dict[str, Any] = field(default_factory=dict)
    mix: Mix | None = None


def true_labels(inputs: RuleInputs) -> torch.Tensor:
    """`(B,)` the label of each input: its own, or on a mixed input the label of its larger part."""
    return inputs.labels if inputs.mix is None else inputs.mix.dominant_labels(inputs.labels)


def label_probability(probs: torch.Tensor, inputs: RuleInputs) -> torch.Tensor:
    """`(M, B)` each candidate's probability of the true label, from `(M, B, C)` probabilities; on a mixed
    input the probability of the mixed label: share·p(y) + (1 − share)·p(y_partner)."""

    def at(labels: torch.Tensor) -> torch.Tensor:
        return probs.gather(2, labels.view(1, -1, 1).expand(probs.shape[0], -1, 1)).squeeze(2)

    if inputs.mix is None:
        return at(inputs.labels)
    share = inputs.mix.share.to(probs.dtype)
    return share * at(inputs.labels) + (1 - share) * at(inputs.mix.partner_labels(inputs.labels))


@dataclass
class Calibration:
    """Outputs of the frozen student and the teachers on a held-out calibration split (never the eval
    split): what a target rule with a `calibrate` step chooses its numbers from, once per run.

    Attributes:
        labels: `(N,)` labels of the calibration split.
        frozen: `(N, C)` logits of the frozen initial student.
        teachers: `(K, N, C)` logits of the teachers.
    """

    labels: torch.Tensor
    frozen: torch.Tensor
    teachers: torch.Tensor


@dataclass
class Target:
    """The distillation target of one batch.

    Attributes:
        logits: `(B, C)` target logits.
        routing: `(B,)` long: 0 = frozen student, k = teacher k, `MIXED`, or `SKIPPED`.
        weight: optional `(B,)` float per-sample weight of the distillation term (0 = no target).
    """

    logits: torch.Tensor
    routing: torch.Tensor
    weight: torch.Tensor | None = None


@dataclass(frozen=True)
class TargetRule:
    """A registered target rule and what it needs."""

    name: str
    fn: Callable[[RuleInputs], Target]
    description: str
    uses_teacher: bool = True
    uses_frozen: bool = True
    multi_teacher: bool = False  # accepts K > 1 teachers
    calibrate: Callable[[Calibration], dict[str, Any]] | None = None  # once per run, on the calib split
    uses_labels: bool = False  # reads the transfer batch's labels


TARGET_RULES: Registry[TargetRule] = Registry("target rule")


def register_target_rule(
    name: str,
    *,
    uses_teacher: bool = True,
    uses_frozen: bool = True,
    multi_teacher: bool = False,
    calibrate: Callable[[Calibration], dict[str, Any]] | None = None,
    uses_labels: bool = False,
) -> Callable[[Callable[[RuleInputs], Target]], Callable[[RuleInputs], Target]]:
    """Decorator: make a target rule `fn(RuleInputs) -> Target` reachable by `name`.

    The first docstring line of `fn` is its description in `anyteach methods`. A rule with
    `calibrate` chooses numbers (e.g. a mixing weight) once per run from the outputs of the frozen
    student and the teachers on the dataset's `calib` split; `fn` then finds them in `inputs.params`.
    A rule that reads `inputs.labels` says so with `uses_labels` (it cannot run on unlabelled data, and
    its no-teacher control trains on the same labels).

    Raises:
        RegistrationError: `name` is taken.
    """

    def describe(fn: Callable[[RuleInputs], Target]) -> TargetRule:
        description = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        return TargetRule(
            name,
            fn,
            description,
            uses_teacher,
            uses_frozen,
            multi_teacher,
            calibrate=calibrate,
            uses_labels=uses_labels,
        )

    return TARGET_RULES.decorator(name, describe)


def _full(like: torch.Tensor, value: int) -> torch.Tensor:
    return torch.full((like.shape[-2],), value, dtype=torch.long, device=like.device)


def most_confident(candidates: torch.Tensor, scores: torch.Tensor) -> Target:
    """Per sample, the candidate with the highest score; ties go to the first (the frozen student).

    Args:
        candidates: `(M, B, C)` logits; candidate 0 is the frozen student, 1..M-1 the teachers.
        scores: `(M, B)` confidence of each candidate on each sample.

    Returns:
        A `Target` whose routing is the chosen candidate's index.
    """
    choice = scores.argmax(0)  # the first maximal index: ties go to candidate 0
    index = choice.view(1, -1, 1).expand(1, candidates.shape[1], candidates.shape[2])
    return Target(candidates.gather(0, index).squeeze(0), choice)


def _stack_candidates(inputs: RuleInputs) -> torch.Tensor:
    return torch.cat([inputs.frozen.unsqueeze(0), inputs.teachers.to(inputs.frozen.dtype)])


@register_target_rule("teacher", uses_frozen=False)
def teacher_target(inputs: RuleInputs) -> Target:
    """The teacher on every sample (plain KL distillation)."""
    return Target(inputs.teachers[0], _full(inputs.teachers[0], 1))


@register_target_rule("frozen", uses_teacher=False)
def frozen_target(inputs: RuleInputs) -> Target:
    """The frozen initial student on every sample (self-distillation)."""
    return Target(inputs.frozen, _full(inputs.frozen, FROZEN))


@register_target_rule("dp", multi_teacher=True, uses_labels=True)
def data_partitioning(inputs: RuleInputs) -> Target:
    """Per sample the candidate most confident in the true label: p_T(y|x) > p_frozen(y|x) -> teacher."""
    candidates = _stack_candidates(inputs)
    return most_confident(candidates, label_probability(candidates.float().softmax(-1), inputs))


@register_target_rule("dp-u", multi_teacher=True)
def data_partitioning_unsupervised(inputs: RuleInputs) -> Target:
    """Per sample the candidate with the highest max probability (no labels): the unsupervised DP."""
    candidates = _stack_candidates(inputs)
    return most_confident(candidates, candidates.float().softmax(-1).amax(-1))


def _flip_masks(inputs: RuleInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive flips (frozen wrong, teacher right) and negative flips (frozen right, teacher wrong)."""
    labels = true_labels(inputs)
    frozen_right = inputs.frozen.argmax(1) == labels
    teacher_right = inputs.teachers[0].argmax(1) == labels
    return ~frozen_right & teacher_right, frozen_right & ~teacher_right


@register_target_rule("flip-st", uses_labels=True)
def teacher_on_positive_flips(inputs: RuleInputs) -> Target:
    """The teacher on its positive flips only, the frozen student everywhere else (ablation)."""
    positive, _ = _flip_masks(inputs)
    return Target(
        torch.where(positive.unsqueeze(1), inputs.teachers[0].to(inputs.frozen.dtype), inputs.frozen), positive.long()
    )


@register_target_rule("flip-t", uses_labels=True)
def frozen_on_negative_flips(inputs: RuleInputs) -> Target:
    """The frozen student on the teacher's negative flips only, the teacher everywhere else (ablation)."""
    _, negative = _flip_masks(inputs)
    return Target(
        torch.where(negative.unsqueeze(1), inputs.frozen, inputs.teachers[0].to(inputs.frozen.dtype)),
        (~negative).long(),
    )


@register_target_rule("flip-avg", uses_labels=True)
def average_on_neutral(inputs: RuleInputs) -> Target:
    """Teacher on positive flips, frozen student on negative flips, their mean logits elsewhere (ablation)."""
    positive, negative = _flip_masks(inputs)
    teacher = inputs.teachers[0].to(inputs.frozen.dtype)
    logits = torch.where(
        positive.unsqueeze(1), teacher, torch.where(negative.unsqueeze(1), inputs.frozen, (teacher + inputs.frozen) / 2)
    )
    routing = torch.where(positive, 1, torch.where(negative, FROZEN, MIXED))
    return Target(logits, routing)


@register_target_rule("teacher-skip-lost", uses_frozen=False, uses_labels=True)
def teacher_except_where_lost(inputs: RuleInputs) -> Target:
    """The teacher, except where it is wrong and the current student right (no target there; MCL)."""
    teacher = inputs.teachers[0]
    labels = true_labels(inputs)
    lost = (teacher.argmax(1) != labels) & (inputs.student.argmax(1) == labels)
    return Target(teacher, torch.where(lost, SKIPPED, 1), (~lost).float())


MIXTURE_WEIGHTS = tuple(i / 20 for i in range(21))
"""The teacher weights a calibrated ensemble target chooses from."""


def mixture_log_probs(frozen: torch.Tensor, teacher: torch.Tensor, weight: float) -> torch.Tensor:
    """`log((1 − w)·softmax(frozen) + w·softmax(teacher))`: the student–teacher ensemble's log-probabilities."""
    mixed = (1 - weight) * frozen.float().softmax(-1) + weight * teacher.float().softmax(-1)
    return mixed.clamp_min(1e-12).log()


def teacher_mixture(teachers: torch.Tensor) -> torch.Tensor:
    """The teacher side of a calibrated ensemble: the one teacher's logits, or for K > 1 teachers the log of
    their mean probability (an equal-weight teacher ensemble; softmax of it is that mean).

    Args:
        teachers: `(K, N, C)` teacher logits.
    """
    if teachers.shape[0] == 1:
        return teachers[0]
    return teachers.float().softmax(-1).mean(0).clamp_min(1e-12).log()


CANDIDATES_PER_MODEL = 8
"""`mixture_classes` looks for the mixture's class among each model's top-8 classes first."""


def mixture_classes(p_student: torch.Tensor, p_teacher: torch.Tensor, weights: Sequence[float]) -> list[torch.Tensor]:
    """argmax over classes of (1 − w)·p_student + w·p_teacher for each w, exactly as over all classes, in
    O(N·k) per w instead of O(N·C) (ImageNet: 1,000 classes).

    A class in neither model's top-k has p_student ≤ the student's k-th largest and p_teacher ≤ the teacher's,
    so its mixture is at most (1 − w)·s_k + w·t_k. Per sample the class is taken among the 2k candidates where
    their best beats that bound (ties: the smallest class index, as `argmax` over all classes); the other
    samples (rare) are computed over all classes.

    Args:
        p_student, p_teacher: `(N, C)` probabilities.
        weights: the teacher weights w.

    Returns:
        Per w, the `(N,)` predicted classes.
    """
    n, classes = p_student.shape
    k = min(CANDIDATES_PER_MODEL, classes)
    if 2 * k >= classes:
        return [((1 - w) * p_student + w * p_teacher).argmax(1) for w in weights]
    top_s, idx_s = p_student.topk(k, 1)
    top_t, idx_t = p_teacher.topk(k, 1)
    candidates = torch.cat([idx_s, idx_t], 1)  # (N, 2k) class indices, duplicates harmless
    cand_s, cand_t = p_student.gather(1, candidates), p_teacher.gather(1, candidates)
    out = []
    for w in weights:
        mixed = (1 - w) * cand_s + w * cand_t  # the same float operations as over all classes
        best = mixed.max(1, keepdim=True).values
        predicted = torch.where(mixed == best, candidates, classes).min(1).values  # ties: the smallest class
        outside = (best.squeeze(1) <= (1 - w) * top_s[:, -1] + w * top_t[:, -1]).nonzero().squeeze(1)
        if len(outside):
            predicted[outside] = ((1 - w) * p_student[outside] + w * p_teacher[outside]).argmax(1)
        out.append(predicted)
    return out


def _ensemble_choice(calibration: Calibration, key: Callable[[float, float, float], tuple]) -> dict[str, Any]:
    """The teacher weight w minimising `key(accuracy, nll, w)` over `MIXTURE_WEIGHTS` on the calib split,
    with that ensemble's and the frozen student's calib accuracy (what the student is aimed at)."""
    labels, teacher = calibration.labels, teacher_mixture(calibration.teachers)
    p_student, p_teacher = calibration.frozen.float().softmax(-1), teacher.float().softmax(-1)  # once, not per w
    at_label_s, at_label_t = p_student.gather(1, labels.view(-1, 1)), p_teacher.gather(1, labels.view(-1, 1))
    scored = []
    for w, predicted in zip(MIXTURE_WEIGHTS, mixture_classes(p_student, p_teacher, MIXTURE_WEIGHTS)):
        accuracy = (predicted == labels).float().mean().item()
        nll = -((1 - w) * at_label_s + w * at_label_t).clamp_min(1e-12).log().mean().item()
        scored.append((key(accuracy, nll, w), w, accuracy, nll))
    _, w, accuracy, nll = min(scored)
    frozen_acc = (calibration.frozen.argmax(1) == labels).float().mean().item()
    return {
        "teacher_weight": w,
        "calib_ensemble_acc": 100.0 * accuracy,
        "calib_ensemble_nll": nll,
        "calib_student_acc": 100.0 * frozen_acc,
    }


def choose_mixture_weight(calibration: Calibration) -> dict[str, Any]:
    """The teacher weight w of the ensemble `(1 − w)·p_S0 + w·p_T` with the highest accuracy on the
    calibration split (ties: the lower NLL, then the smaller w); with K teachers p_T is their mean."""
    return _ensemble_choice(calibration, lambda accuracy, nll, w: (-accuracy, nll, w))


def choose_mixture_weight_nll(calibration: Calibration) -> dict[str, Any]:
    """The teacher weight w minimising the ensemble's NLL on the calibration split (a proper scoring
    rule: the right criterion for a soft target, which an accuracy tie can make much softer)."""
    return _ensemble_choice(calibration, lambda accuracy, nll, w: (nll, w))


def _routing_of(weight: float, like: torch.Tensor) -> torch.Tensor:
    return _full(like, FROZEN if weight == 0 else 1 if weight == 1 else MIXED)


@register_target_rule("ens", multi_teacher=True, calibrate=choose_mixture_weight)
def calibrated_ensemble(inputs: RuleInputs) -> Target:
    """The student–teacher ensemble (1−w)·p_S0 + w·p_T on every sample, w chosen on the calib split
    (several teachers: p_T is their mean)."""
    w = inputs.params["teacher_weight"]
    logits = mixture_log_probs(inputs.frozen, teacher_mixture(inputs.teachers), w)
    return Target(logits, _routing_of(w, logits))


@register_target_rule("ens-nll", multi_teacher=True, calibrate=choose_mixture_weight_nll)
def calibrated_ensemble_nll(inputs: RuleInputs) -> Target:
    """The student–teacher ensemble (1−w)·p_S0 + w·p_T on every sample, w minimising NLL on the calib split."""
    return calibrated_ensemble(inputs)


def hard_logits(logits: torch.Tensor) -> torch.Tensor:
    """Target logits whose softmax is (numerically) the one-hot of `logits`' argmax: KL to them is
    cross-entropy on that pseudo-label."""
    return torch.full_like(logits, math.log(1e-12), dtype=torch.float32).scatter_(
        1, logits.argmax(1, keepdim=True), 0.0
    )


@register_target_rule("ens-hard", multi_teacher=True, calibrate=choose_mixture_weight)
def calibrated_ensemble_label(inputs: RuleInputs) -> Target:
    """The calibrated student–teacher ensemble's class as a hard pseudo-label (w chosen on the calib split)."""
    w = inputs.params["teacher_weight"]
    logits = hard_logits(mixture_log_probs(inputs.frozen, teacher_mixture(inputs.teachers), w))
    return Target(logits, _routing_of(w, logits))


@register_target_rule("ens-fix", multi_teacher=True, calibrate=choose_mixture_weight)
def ensemble_corrections(inputs: RuleInputs) -> Target:
    """Where the calibrated ensemble's class differs from S_frozen's, that class as a hard pseudo-label;
    elsewhere S_frozen's own output (self-distillation keeps what the student knows)."""
    w = inputs.params["teacher_weight"]
    mixed = mixture_log_probs(inputs.frozen, teacher_mixture(inputs.teachers), w)
    flip = mixed.argmax(1) != inputs.frozen.argmax(1)
    logits = torch.where(flip.unsqueeze(1), hard_logits(mixed), inputs.frozen.float())
    return Target(logits, flip.long())


@register_target_rule("frozen-hard", uses_teacher=False)
def frozen_label(inputs: RuleInputs) -> Target:
    """The frozen initial student's own class as a hard pseudo-label (the self-training control)."""
    return Target(hard_logits(inputs.frozen), _full(inputs.frozen, FROZEN))


def ensemble_predictions(
    frozen_logits: torch.Tensor, teacher_logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `ensemble` baseline: per sample the prediction of the more confident (max probability) of S0
    and the teachers; ties go to S0.

    Args:
        frozen_logits: `(N, C)` logits of S0.
        teacher_logits: `(K, N, C)` logits of the teachers.

    Returns:
        `(predictions (N,), routing (N,))`.
    """
    dummy = torch.zeros(frozen_logits.shape[0], dtype=torch.long, device=frozen_logits.device)
    target = data_partitioning_unsupervised(RuleInputs(dummy, frozen_logits, teacher_logits, frozen_logits))
    return target.logits.argmax(1), target.routing
