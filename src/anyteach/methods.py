"""Transfer methods: target rules, losses and weight regularisers, composed into named presets.

A transfer method (PAPER.md section 3) is three small parts:
- a **target rule**: whose output the student imitates, per sample. It receives the frozen initial
  student's logits `(B, C)`, the teachers' logits stacked as `(K, B, C)`, the labels and the current
  student's (detached) logits, and returns target logits plus the routing (which candidate each
  sample's target came from: 0 = frozen student, k = teacher k, or `MIXED` / `SKIPPED`);
- a **loss**: a small `nn.Module` whose forward returns named loss terms (mdistiller style), already
  weighted, so the training loss is their sum;
- an optional **weight regulariser**: MCL's slow weights, which are what is evaluated and exported.

Each part is registered by a decorator (torchdistill style) and reachable by name; a preset in
`METHODS` names one of each plus the paper's defaults (`kl`, `xekl`, `cd`, `crd`, `xekl+mcl`, `kl+dp`,
`kl+dp-u`, the flip ablations, `self`, and the baselines `xe` and `ensemble`). A new method is one
decorated function or class and one `register_method` line. Every per-sample decision (target
selection, masks, top-k) is a tensor operation over the whole batch: no Python loop over samples.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .errors import AnyteachError
from .options import METHOD_OPTIONS
from .options import METHOD_OPTIONS as OPTIONS  # deprecated alias: the declarations live in anyteach.options
from .options import Option  # deprecated alias (re-exported): use anyteach.options.Option
from .registry import Registry, RegistrationError

FROZEN = 0
"""Routing code of the frozen initial student; teacher k (1-based) has code k."""
MIXED = -1
"""Routing code of a target that mixes the frozen student and the teacher (`kl+flip-avg`)."""
SKIPPED = -2
"""Routing code of a sample that gets no distillation target (MCL skips the teacher's negative flips)."""


# ---------------------------------------------------------------------------------------------
# Target rules


@dataclass
class RuleInputs:
    """What a target rule sees for one batch (all logits un-normalised, float or bf16).

    Attributes:
        labels: `(B,)` true labels.
        frozen: `(B, C)` logits of the frozen initial student S_frozen (None if the rule does not use it).
        teachers: `(K, B, C)` logits of the K teachers (None for rules without a teacher).
        student: `(B, C)` logits of the student being trained, detached.
    """

    labels: torch.Tensor
    frozen: torch.Tensor | None
    teachers: torch.Tensor | None
    student: torch.Tensor
    params: dict[str, Any] = field(default_factory=dict)  # what the rule's `calibrate` chose, once per run


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
    options: tuple[str, ...] = ()
    calibrate: Callable[[Calibration], dict[str, Any]] | None = None  # once per run, on the calib split


TARGET_RULES: Registry[TargetRule] = Registry("target rule")


def register_target_rule(name: str, *, uses_teacher: bool = True, uses_frozen: bool = True,
                         multi_teacher: bool = False,
                         calibrate: Callable[[Calibration], dict[str, Any]] | None = None) -> Callable:
    """Decorator: make a target rule `fn(RuleInputs) -> Target` reachable by `name`.

    The first docstring line of `fn` is its description in `anyteach methods`. A rule with
    `calibrate` chooses numbers (e.g. a mixing weight) once per run from the outputs of the frozen
    student and the teachers on the dataset's `calib` split; `fn` then finds them in `inputs.params`.

    Raises:
        RegistrationError: `name` is taken.
    """

    def describe(fn: Callable[[RuleInputs], Target]) -> TargetRule:
        description = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        return TargetRule(name, fn, description, uses_teacher, uses_frozen, multi_teacher, calibrate=calibrate)

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


@register_target_rule("dp", multi_teacher=True)
def data_partitioning(inputs: RuleInputs) -> Target:
    """Per sample the candidate most confident in the true label: p_T(y|x) > p_frozen(y|x) -> teacher."""
    candidates = _stack_candidates(inputs)
    probs = candidates.float().softmax(-1)
    labels = inputs.labels.view(1, -1, 1).expand(candidates.shape[0], -1, 1)
    return most_confident(candidates, probs.gather(2, labels).squeeze(2))


@register_target_rule("dp-u", multi_teacher=True)
def data_partitioning_unsupervised(inputs: RuleInputs) -> Target:
    """Per sample the candidate with the highest max probability (no labels): the unsupervised DP."""
    candidates = _stack_candidates(inputs)
    return most_confident(candidates, candidates.float().softmax(-1).amax(-1))


def _flip_masks(inputs: RuleInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive flips (frozen wrong, teacher right) and negative flips (frozen right, teacher wrong)."""
    frozen_right = inputs.frozen.argmax(1) == inputs.labels
    teacher_right = inputs.teachers[0].argmax(1) == inputs.labels
    return ~frozen_right & teacher_right, frozen_right & ~teacher_right


@register_target_rule("flip-st")
def teacher_on_positive_flips(inputs: RuleInputs) -> Target:
    """The teacher on its positive flips only, the frozen student everywhere else (ablation)."""
    positive, _ = _flip_masks(inputs)
    return Target(torch.where(positive.unsqueeze(1), inputs.teachers[0].to(inputs.frozen.dtype), inputs.frozen),
                  positive.long())


@register_target_rule("flip-t")
def frozen_on_negative_flips(inputs: RuleInputs) -> Target:
    """The frozen student on the teacher's negative flips only, the teacher everywhere else (ablation)."""
    _, negative = _flip_masks(inputs)
    return Target(torch.where(negative.unsqueeze(1), inputs.frozen, inputs.teachers[0].to(inputs.frozen.dtype)),
                  (~negative).long())


@register_target_rule("flip-avg")
def average_on_neutral(inputs: RuleInputs) -> Target:
    """Teacher on positive flips, frozen student on negative flips, their mean logits elsewhere (ablation)."""
    positive, negative = _flip_masks(inputs)
    teacher = inputs.teachers[0].to(inputs.frozen.dtype)
    logits = torch.where(positive.unsqueeze(1), teacher,
                         torch.where(negative.unsqueeze(1), inputs.frozen, (teacher + inputs.frozen) / 2))
    routing = torch.where(positive, 1, torch.where(negative, FROZEN, MIXED))
    return Target(logits, routing)


@register_target_rule("teacher-skip-lost", uses_frozen=False)
def teacher_except_where_lost(inputs: RuleInputs) -> Target:
    """The teacher, except where it is wrong and the current student right (no target there; MCL)."""
    teacher = inputs.teachers[0]
    lost = (teacher.argmax(1) != inputs.labels) & (inputs.student.argmax(1) == inputs.labels)
    return Target(teacher, torch.where(lost, SKIPPED, 1), (~lost).float())


MIXTURE_WEIGHTS = tuple(i / 20 for i in range(21))
"""The teacher weights a calibrated ensemble target chooses from."""


def mixture_log_probs(frozen: torch.Tensor, teacher: torch.Tensor, weight: float) -> torch.Tensor:
    """`log((1 − w)·softmax(frozen) + w·softmax(teacher))`: the student–teacher ensemble's log-probabilities."""
    mixed = (1 - weight) * frozen.float().softmax(-1) + weight * teacher.float().softmax(-1)
    return mixed.clamp_min(1e-12).log()


def _ensemble_choice(calibration: Calibration, key: Callable[[float, float, float], tuple]) -> dict[str, Any]:
    """The teacher weight w minimising `key(accuracy, nll, w)` over `MIXTURE_WEIGHTS` on the calib split,
    with that ensemble's and the frozen student's calib accuracy (what the student is aimed at)."""
    labels, teacher = calibration.labels, calibration.teachers[0]
    scored = []
    for w in MIXTURE_WEIGHTS:
        logp = mixture_log_probs(calibration.frozen, teacher, w)
        accuracy = (logp.argmax(1) == labels).float().mean().item()
        nll = -logp.gather(1, labels.view(-1, 1)).mean().item()
        scored.append((key(accuracy, nll, w), w, accuracy, nll))
    _, w, accuracy, nll = min(scored)
    frozen_acc = (calibration.frozen.argmax(1) == labels).float().mean().item()
    return {"teacher_weight": w, "calib_ensemble_acc": 100.0 * accuracy, "calib_ensemble_nll": nll,
            "calib_student_acc": 100.0 * frozen_acc}


def choose_mixture_weight(calibration: Calibration) -> dict[str, Any]:
    """The teacher weight w of the ensemble `(1 − w)·p_S0 + w·p_T` with the highest accuracy on the
    calibration split (ties: the lower NLL, then the smaller w)."""
    return _ensemble_choice(calibration, lambda accuracy, nll, w: (-accuracy, nll, w))


def choose_mixture_weight_nll(calibration: Calibration) -> dict[str, Any]:
    """The teacher weight w minimising the ensemble's NLL on the calibration split (a proper scoring
    rule: the right criterion for a soft target, which an accuracy tie can make much softer)."""
    return _ensemble_choice(calibration, lambda accuracy, nll, w: (nll, w))


def _routing_of(weight: float, like: torch.Tensor) -> torch.Tensor:
    return _full(like, FROZEN if weight == 0 else 1 if weight == 1 else MIXED)


@register_target_rule("ens", calibrate=choose_mixture_weight)
def calibrated_ensemble(inputs: RuleInputs) -> Target:
    """The student–teacher ensemble (1−w)·p_S0 + w·p_T on every sample, w chosen on the calib split."""
    w = inputs.params["teacher_weight"]
    logits = mixture_log_probs(inputs.frozen, inputs.teachers[0], w)
    return Target(logits, _routing_of(w, logits))


@register_target_rule("ens-nll", calibrate=choose_mixture_weight_nll)
def calibrated_ensemble_nll(inputs: RuleInputs) -> Target:
    """The student–teacher ensemble (1−w)·p_S0 + w·p_T on every sample, w minimising NLL on the calib split."""
    return calibrated_ensemble(inputs)


def hard_logits(logits: torch.Tensor) -> torch.Tensor:
    """Target logits whose softmax is (numerically) the one-hot of `logits`' argmax: KL to them is
    cross-entropy on that pseudo-label."""
    return torch.full_like(logits, math.log(1e-12), dtype=torch.float32).scatter_(1, logits.argmax(1, keepdim=True),
                                                                                   0.0)


@register_target_rule("ens-hard", calibrate=choose_mixture_weight)
def calibrated_ensemble_label(inputs: RuleInputs) -> Target:
    """The calibrated student–teacher ensemble's class as a hard pseudo-label (w chosen on the calib split)."""
    w = inputs.params["teacher_weight"]
    logits = hard_logits(mixture_log_probs(inputs.frozen, inputs.teachers[0], w))
    return Target(logits, _routing_of(w, logits))


@register_target_rule("ens-fix", calibrate=choose_mixture_weight)
def ensemble_corrections(inputs: RuleInputs) -> Target:
    """Where the calibrated ensemble's class differs from S_frozen's, that class as a hard pseudo-label;
    elsewhere S_frozen's own output (self-distillation keeps what the student knows)."""
    w = inputs.params["teacher_weight"]
    mixed = mixture_log_probs(inputs.frozen, inputs.teachers[0], w)
    flip = mixed.argmax(1) != inputs.frozen.argmax(1)
    logits = torch.where(flip.unsqueeze(1), hard_logits(mixed), inputs.frozen.float())
    return Target(logits, flip.long())


@register_target_rule("frozen-hard", uses_teacher=False)
def frozen_label(inputs: RuleInputs) -> Target:
    """The frozen initial student's own class as a hard pseudo-label (the self-training control)."""
    return Target(hard_logits(inputs.frozen), _full(inputs.frozen, FROZEN))


# ---------------------------------------------------------------------------------------------
# Loss functions (pure, batch in, scalar out)


def kl_divergence(student_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float = 1.0,
                  top_k: int | None = None, reference: torch.Tensor | None = None,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """`KL(softmax(z_target/τ) ‖ softmax(z_student/τ)) · τ²`, averaged over the batch.

    Args:
        student_logits: `(B, C)` logits of the student.
        target_logits: `(B, C)` logits to imitate.
        temperature: τ > 0.
        top_k: restrict both distributions to the top-k classes of `reference` per sample (gathered
            and renormalised); None or >= C keeps every class.
        reference: `(B, C)` logits whose top-k classes are kept (default: the target's).
        weight: optional `(B,)` per-sample weights; the result is then the weighted mean
            `sum(w·kl) / sum(w)` (0 when every weight is 0).

    Returns:
        A scalar float32 tensor.
    """
    if top_k is not None and top_k < student_logits.shape[1]:
        classes = (target_logits if reference is None else reference).topk(top_k, dim=1).indices
        student_logits, target_logits = student_logits.gather(1, classes), target_logits.gather(1, classes)
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_target = F.log_softmax(target_logits.float() / temperature, dim=1)
    per_sample = F.kl_div(log_student, log_target, log_target=True, reduction="none").sum(1) * temperature ** 2
    if weight is None:
        return per_sample.mean()
    weight = weight.float()
    return (per_sample * weight).sum() / weight.sum().clamp_min(1e-12)


def similarity_structure_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """CD's contrastive term: KL between the in-batch similarity structures of teacher and student.

    Each row of the cosine-similarity matrix of a batch's features becomes a distribution over the
    batch (softmax); the loss is `KL(teacher row ‖ student row)` averaged over the rows. (The research
    code summed over the rows, i.e. it is this times the batch size.)
    """
    s = F.normalize(student_features.float(), dim=1)
    t = F.normalize(teacher_features.float(), dim=1)
    log_s = F.log_softmax(s @ s.T, dim=1)
    log_t = F.log_softmax(t @ t.T, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")


def nce_loss(scores: torch.Tensor, num_samples: int, eps: float = 1e-7) -> torch.Tensor:
    """CRD's noise-contrastive loss (Tian et al. 2020, eq. 18) on normalised scores.

    Args:
        scores: `(B, 1 + K)` normalised exp-scores; column 0 is the positive pair, the rest negatives.
        num_samples: size of the memory bank N (the noise distribution is uniform, 1/N).
    """
    negatives = scores.shape[1] - 1
    noise = negatives / num_samples
    log_positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + eps))
    log_negative = torch.log(noise / (scores[:, 1:] + noise + eps))
    return -(log_positive.sum() + log_negative.sum()) / scores.shape[0]


# ---------------------------------------------------------------------------------------------
# Losses as modules: forward returns named, weighted terms


@dataclass
class MethodContext:
    """What a loss may need to know when it is built (sizes of things)."""

    num_classes: int
    student_feature_dim: int | None = None
    teacher_feature_dim: int | None = None
    transfer_labels: torch.Tensor | None = None  # labels of the transfer split, in index order
    seed: int = 0
    calibration: Calibration | None = None  # for target rules with a calibrate step
    calib_score: Callable[[nn.Module], float] | None = None  # accuracy (%) of a model on the calib split
    # a batch (inputs, labels) of the preset's labelled split, drawn as a function of the transfer batch's index
    labelled_batch: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None


@dataclass
class LossInputs:
    """What a loss sees for one batch."""

    logits: torch.Tensor  # (B, C) student logits, with gradients
    features: torch.Tensor | None  # (B, D) student penultimate features (losses with needs_features)
    labels: torch.Tensor  # (B,)
    index: torch.Tensor  # (B,) positions in the transfer split
    target: Target | None
    teacher_logits: torch.Tensor | None  # (K, B, C)
    teacher_features: torch.Tensor | None  # (B, D_T) of the first teacher


class TransferLoss(nn.Module):
    """Base class of registered losses. Subclasses set the class flags and implement `forward`."""

    options: ClassVar[tuple[str, ...]] = ()
    needs_target: ClassVar[bool] = False
    needs_features: ClassVar[bool] = False
    needs_teacher_features: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any], context: MethodContext):
        super().__init__()
        self.opts = options

    def forward(self, batch: LossInputs) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


LOSSES: Registry[type[TransferLoss]] = Registry("loss")


def register_loss(name: str) -> Callable[[type[TransferLoss]], type[TransferLoss]]:
    """Class decorator: make a `TransferLoss` subclass reachable by `name` (a taken name is an error)."""
    return LOSSES.decorator(name)


@register_loss("kl")
class KLDistillation(TransferLoss):
    """α·KL(target ‖ student) + (1−α)·CE(student, y). The target comes from the method's target rule."""

    options = ("temperature", "top_k", "alpha")
    needs_target = True

    def forward(self, batch: LossInputs) -> dict[str, torch.Tensor]:
        alpha, target = self.opts["alpha"], batch.target
        # top-k classes come from the teacher when there is exactly one, else from the target itself
        reference = batch.teacher_logits[0] if batch.teacher_logits is not None and len(batch.teacher_logits) == 1 \
            else None
        losses = {}
        if alpha > 0:
            losses["loss_kl"] = alpha * kl_divergence(batch.logits, target.logits, self.opts["temperature"],
                                                      self.opts["top_k"], reference, target.weight)
        if alpha < 1:
            losses["loss_ce"] = (1 - alpha) * F.cross_entropy(batch.logits.float(), batch.labels)
        return losses


@register_loss("ce")
class CrossEntropy(TransferLoss):
    """Cross-entropy on the labels only: plain supervised fine-tuning."""

    def forward(self, batch: LossInputs) -> dict[str, torch.Tensor]:
        return {"loss_ce": F.cross_entropy(batch.logits.float(), batch.labels)}


@register_loss("cd")
class ContrastiveDistillation(TransferLoss):
    """γ·CE + β·KL between the in-batch feature-similarity structures of teacher and student."""

    options = ("gamma", "beta")
    needs_features = True
    needs_teacher_features = True

    def forward(self, batch: LossInputs) -> dict[str, torch.Tensor]:
        return {"loss_ce": self.opts["gamma"] * F.cross_entropy(batch.logits.float(), batch.labels),
                "loss_cd": self.opts["beta"] * similarity_structure_loss(batch.features, batch.teacher_features)}


@register_loss("crd")
class ContrastiveRepresentationDistillation(TransferLoss):
    """γ·CE + β·CRD (Tian et al. 2020): NCE between 128-d projections, negatives from a memory bank.

    Student and teacher features are projected (trainable linear heads, owned by this loss and saved
    in the checkpoint) and L2-normalised. Each sample is contrasted, in both directions, with its own
    memory-bank entry (positive) and `crd_negatives` entries of samples of other classes; the banks
    are updated with momentum. The normalising constants Z are fixed from the first batch, as in CRD.
    """

    options = ("gamma", "beta", "crd_feature_dim", "crd_negatives", "crd_temperature", "crd_momentum")
    needs_features = True
    needs_teacher_features = True

    def __init__(self, options: dict[str, Any], context: MethodContext):
        super().__init__(options, context)
        if context.transfer_labels is None or context.student_feature_dim is None or context.teacher_feature_dim is None:
            raise AnyteachError("CRD needs the transfer labels and the feature sizes of student and teacher")
        dim = options["crd_feature_dim"]
        self.embed_student = nn.Linear(context.student_feature_dim, dim)
        self.embed_teacher = nn.Linear(context.teacher_feature_dim, dim)
        labels = context.transfer_labels.long()
        n = len(labels)
        bound = 1.0 / math.sqrt(dim / 3)
        g = torch.Generator().manual_seed(context.seed)
        self.register_buffer("memory_student", torch.rand(n, dim, generator=g) * 2 * bound - bound)
        self.register_buffer("memory_teacher", torch.rand(n, dim, generator=g) * 2 * bound - bound)
        self.register_buffer("normaliser", torch.full((2,), -1.0))  # Z of the student and teacher scores
        # samples grouped by class, for drawing negatives of other classes without a loop
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=context.num_classes)
        self.register_buffer("by_class", order)
        self.register_buffer("class_start", torch.cumsum(counts, 0) - counts)
        self.register_buffer("class_count", counts)
        self.register_buffer("labels", labels)
        self._generator: torch.Generator | None = None
        self._seed = context.seed

    def _rng(self) -> torch.Generator:
        if self._generator is None or self._generator.device != self.labels.device:
            self._generator = torch.Generator(device=self.labels.device).manual_seed(self._seed + 1)
        return self._generator

    def get_extra_state(self) -> torch.Tensor:
        return self._rng().get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self._rng().set_state(state)

    def negatives(self, index: torch.Tensor) -> torch.Tensor:
        """`(B, K)` memory indices of samples whose class differs from each anchor's, uniformly drawn."""
        y = self.labels[index]
        n, k = len(self.labels), self.opts["crd_negatives"]
        pool = (n - self.class_count[y]).clamp_min(1).unsqueeze(1)
        draw = (torch.rand(len(index), k, generator=self._rng(), device=index.device) * pool).long()
        # skip over the anchor's own class block in the class-sorted order
        start = self.class_start[y].unsqueeze(1)
        position = torch.where(draw < start, draw, draw + self.class_count[y].unsqueeze(1)).clamp_max(n - 1)
        return self.by_class[position]

    def _scores(self, memory: torch.Tensor, anchors: torch.Tensor, idx: torch.Tensor, which: int) -> torch.Tensor:
        n, dim = memory.shape
        if n <= idx.shape[1] * dim:
            # a small bank: scoring every entry and picking columns moves less memory than gathering
            # (B, 1 + K, d) bank rows
            # (a copy: the bank is updated in place before the backward pass needs it)
            dots = (anchors @ memory.clone().T).gather(1, idx)
        else:
            dots = torch.bmm(memory[idx], anchors.unsqueeze(2)).squeeze(2)
        scores = torch.exp(dots / self.opts["crd_temperature"])
        # Z is fixed once, from the first batch (a tensor select: no host sync per step)
        z = self.normaliser[which]
        z = torch.where(z < 0, scores.detach().mean() * len(self.labels), z)
        self.normaliser[which] = z
        return scores / z

    @torch.no_grad()
    def _update_memory(self, memory: torch.Tensor, embedded: torch.Tensor, index: torch.Tensor) -> None:
        m = self.opts["crd_momentum"]
        memory[index] = F.normalize(memory[index] * m + embedded.detach() * (1 - m), dim=1)

    def forward(self, batch: LossInputs) -> dict[str, torch.Tensor]:
        student = F.normalize(self.embed_student(batch.features.float()), dim=1)
        teacher = F.normalize(self.embed_teacher(batch.teacher_features.float()), dim=1)
        idx = torch.cat([batch.index.unsqueeze(1), self.negatives(batch.index)], dim=1)
        n = len(self.labels)
        # student anchors against the teacher bank and teacher anchors against the student bank
        loss = (nce_loss(self._scores(self.memory_teacher, student, idx, 0), n)
                + nce_loss(self._scores(self.memory_student, teacher, idx, 1), n))
        self._update_memory(self.memory_student, student, batch.index)
        self._update_memory(self.memory_teacher, teacher, batch.index)
        return {"loss_ce": self.opts["gamma"] * F.cross_entropy(batch.logits.float(), batch.labels),
                "loss_crd": self.opts["beta"] * loss}


# ---------------------------------------------------------------------------------------------
# Weight regularisers


class WeightRegulariser(nn.Module):
    """Base class: a component that watches the student's weights after every optimiser step and
    decides which model is evaluated and exported.

    Subclasses take `(student, options, context)`; `needs_calibration` marks one that chooses on the
    dataset's `calib` split (`context.calib_score`).
    """

    options: ClassVar[tuple[str, ...]] = ()
    needs_calibration: ClassVar[bool] = False

    def after_step(self, student: nn.Module, step: int) -> None:
        """Called after every optimiser step (default: nothing)."""

    def exported(self, student: nn.Module) -> nn.Module:
        """The model that is evaluated and exported (default: the student itself)."""
        return student

    def chosen(self) -> dict[str, Any]:
        """What the last `exported` chose, for the metrics row (default: nothing)."""
        return {}


REGULARISERS: Registry[type[WeightRegulariser]] = Registry("weight regulariser")


def register_regulariser(name: str) -> Callable[[type[WeightRegulariser]], type[WeightRegulariser]]:
    """Class decorator: make a `WeightRegulariser` subclass reachable by `name` (a taken name is an error)."""
    return REGULARISERS.decorator(name)


@register_regulariser("mcl")
class SlowWeights(WeightRegulariser):
    """MCL momentum weight interpolation: θ_slow ← t·θ_slow + (1−t)·θ every N steps.

    Built on timm's `ModelEmaV3`, which interpolates the floating-point buffers (BatchNorm running
    statistics) by the same factor: the slow model keeps statistics of its own, starting from the
    initial student's, instead of copying the fast model's (which cost a prototype 7-16 points).
    """

    options = ("mcl_interpolation", "mcl_period")

    def __init__(self, student: nn.Module, options: dict[str, Any], context: MethodContext | None = None):
        super().__init__()
        from timm.utils import ModelEmaV3

        self.period = options["mcl_period"]
        self.slow = ModelEmaV3(student, decay=options["mcl_interpolation"])

    def after_step(self, student: nn.Module, step: int) -> None:
        if step % self.period == 0:
            self.slow.update(student)

    def exported(self, student: nn.Module) -> nn.Module:
        return self.slow.module


WISE_ALPHAS = tuple(i / 10 for i in range(11))
"""The interpolation factors the WiSE guard chooses from (0: S0, 1: the trained student)."""


@register_regulariser("wise")
class WeightInterpolation(WeightRegulariser):
    """WiSE-FT guard: the exported model is (1−α)·θ_S0 + α·θ (floating-point buffers such as BatchNorm
    statistics interpolated alike), α ∈ {0, 0.1, ..., 1} chosen by accuracy on the calib split (ties:
    the smaller α, closer to S0) whenever the student is evaluated; α = 0 gives S0 back unchanged.

    The choice is a function of the current weights, so a resumed run exports the same model.
    """

    needs_calibration = True

    def __init__(self, student: nn.Module, options: dict[str, Any], context: MethodContext | None = None):
        super().__init__()
        if context is None or context.calib_score is None:
            raise AnyteachError("the wise guard chooses on a calibration split: use a dataset with one "
                                "(e.g. mnist1d:calib=5000)")
        self.score = context.calib_score
        self.initial = {k: v.detach().clone() for k, v in student.state_dict().items()}
        self.last: dict[str, Any] = {}

    def interpolate(self, student: nn.Module, alpha: float) -> nn.Module:
        """A copy of `student` with weights (1−α)·θ_S0 + α·θ."""
        model = copy.deepcopy(student)
        state = {key: (1 - alpha) * self.initial[key].to(value.device) + alpha * value
                 if value.is_floating_point() else value for key, value in student.state_dict().items()}
        model.load_state_dict(state)
        return model

    def exported(self, student: nn.Module) -> nn.Module:
        best = None
        for alpha in WISE_ALPHAS:
            model = self.interpolate(student, alpha)
            score = self.score(model)
            if best is None or score > best[0]:
                best = (score, alpha, model)
        self.last = {"wise_alpha": best[1], "wise_calib_acc": best[0]}
        return best[2]

    def chosen(self) -> dict[str, Any]:
        return dict(self.last)


# ---------------------------------------------------------------------------------------------
# Presets


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
    """

    frozen: bool = False
    teacher_logits: bool = False
    teacher_features: bool = False
    student_features: bool = False
    calibration: bool = False
    labelled: str | None = None


@dataclass(frozen=True)
class MethodPreset:
    """A named method: a target rule, a loss and an optional regulariser, with the paper's defaults.

    `loss=None` means no training (the `ensemble` baseline: the target rule's choice between S0 and
    T *is* the prediction). `labelled_split` names a labelled split of the dataset (`calib`, `train`)
    that the method also fine-tunes on: at every step a batch of it, drawn at random, adds a
    cross-entropy term on its labels next to the loss on the transfer batch. `defaults` are method options (`options.METHOD_OPTIONS`) that differ
    from their global defaults; `base_lr` is the method's base learning rate, which a run's default
    lr scales by batch_size / 256 (the paper's 1e-4; MCL's 1e-2).
    """

    name: str
    description: str
    target: str | None
    loss: str | None
    regulariser: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    base_lr: float = 1e-4
    reference: str = ""
    labelled_split: str | None = None

    @property
    def option_names(self) -> tuple[str, ...]:
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
        return MethodNeeds(frozen=rule is not None and rule.uses_frozen,
                           teacher_logits=rule is not None and rule.uses_teacher,
                           teacher_features=loss is not None and loss.needs_teacher_features,
                           student_features=loss is not None and loss.needs_features,
                           calibration=(rule is not None and rule.calibrate is not None)
                           or (regulariser is not None and regulariser.needs_calibration)
                           or self.labelled_split == "calib",
                           labelled=self.labelled_split)

    @property
    def needs_teacher(self) -> bool:
        """The method uses a teacher at all (its logits or its features)."""
        return self.needs.teacher_logits or self.needs.teacher_features

    @property
    def needs_frozen(self) -> bool:
        """The target rule uses the frozen initial student's outputs."""
        return self.needs.frozen

    @property
    def needs_teacher_logits(self) -> bool:
        """The target rule uses the teachers' outputs."""
        return self.needs.teacher_logits

    @property
    def needs_teacher_features(self) -> bool:
        """The loss uses the teacher's penultimate features (CD, CRD: single teacher)."""
        return self.needs.teacher_features

    @property
    def multi_teacher(self) -> bool:
        return self.target is not None and TARGET_RULES[self.target].multi_teacher and not self.needs_teacher_features

    @property
    def trains(self) -> bool:
        return self.loss is not None


METHODS: Registry[MethodPreset] = Registry("method")


def register_method(preset: MethodPreset) -> MethodPreset:
    """Add a preset to the registry (its parts must be registered already).

    Raises:
        RegistrationError: the name is taken, a part is not registered, or a default is not one of the
            preset's method options or out of range.
    """
    for kind, name, registry in (("target rule", preset.target, TARGET_RULES), ("loss", preset.loss, LOSSES),
                                 ("regulariser", preset.regulariser, REGULARISERS)):
        if name is not None and name not in registry:
            raise RegistrationError(f"preset {preset.name!r}: unknown {kind} {name!r}")
    for name, value in preset.defaults.items():
        if name not in preset.option_names:
            raise RegistrationError(f"preset {preset.name!r}: default {name!r} is not one of its method options "
                                    f"({', '.join(preset.option_names) or 'none'})")
        METHOD_OPTIONS[name].validate(value, f"of method {preset.name!r}")
    return METHODS.add(preset.name, preset)


for _preset in [
    MethodPreset("kl", "KL-Dist: KL to the teacher on every sample", "teacher", "kl"),
    MethodPreset("xekl", "XE-KL-Dist: α·KL to the teacher + (1−α)·CE", "teacher", "kl", defaults={"alpha": 0.5}),
    MethodPreset("cd", "CD: γ·CE + β·in-batch feature-similarity KL to the teacher", None, "cd",
                 defaults={"gamma": 0.1, "beta": 10.0}),
    MethodPreset("crd", "CRD: γ·CE + β·contrastive representation distillation", None, "crd",
                 defaults={"gamma": 1.0, "beta": 0.8}),
    MethodPreset("xekl+mcl", "XE-KL-Dist + MCL: KL skipped where T wrong and S right; slow weights exported",
                 "teacher-skip-lost", "kl", "mcl", defaults={"alpha": 0.68}, base_lr=1e-2),
    MethodPreset("kl+dp", "KL-Dist + DP (the proposal): per sample the more confident in y of T and S_frozen",
                 "dp", "kl"),
    MethodPreset("kl+dp-u", "KL-Dist + DP, unsupervised: per sample the higher max probability", "dp-u", "kl"),
    MethodPreset("kl+flip-st", "ablation: T on positive flips only, S_frozen elsewhere", "flip-st", "kl"),
    MethodPreset("kl+flip-t", "ablation: S_frozen on negative flips only, T elsewhere", "flip-t", "kl"),
    MethodPreset("kl+flip-avg", "ablation: T on positive flips, S_frozen on negative, mean on neutral",
                 "flip-avg", "kl"),
    MethodPreset("self", "self-distillation: KL to S_frozen on every sample", "frozen", "kl"),
    MethodPreset("pl+ens+wise", "teaching without labels: cross-entropy on the class of the student–teacher ensemble "
                 "(teacher weight chosen on the calib split), exported as the WiSE interpolation of S0 and the "
                 "student chosen on the calib split", "ens-hard", "kl", "wise"),
    MethodPreset("self+wise", "control of pl+ens+wise: self-distillation with the same WiSE guard, no teacher",
                 "frozen", "kl", "wise"),
    MethodPreset("self+xe+wise", "stronger control of pl+ens+wise: self-distillation on the transfer data plus "
                 "cross-entropy on the calib split's labels at every step, the same WiSE guard, no teacher",
                 "frozen", "kl", "wise", labelled_split="calib"),
    MethodPreset("xe", "baseline: plain cross-entropy fine-tuning, same budget, no teacher", None, "ce"),
    MethodPreset("ensemble", "baseline, no training: per sample the more confident of S0 and T", "dp-u", None),
]:
    register_method(_preset)


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
    resolved = {name: METHOD_OPTIONS[name].validate(preset.defaults.get(name, METHOD_OPTIONS[name].default), owner)
                for name in names}
    for name, value in (given or {}).items():
        if name not in METHOD_OPTIONS:
            raise AnyteachError(f"unknown method option {name!r}; method options: {', '.join(METHOD_OPTIONS)}")
        if name not in names:
            uses = ", ".join(names) or "none"
            raise AnyteachError(f"option {name!r} does not apply to method {method!r} (its options: {uses})")
        resolved[name] = METHOD_OPTIONS[name].validate(value, owner)
    return resolved


def method_table() -> list[dict[str, Any]]:
    """One row per preset: name, parts, method option defaults, base lr, description."""
    return [{"name": preset.name, "target": preset.target, "loss": preset.loss, "regulariser": preset.regulariser,
             "teacher": preset.needs_teacher, "defaults": resolve_method_options(preset.name),
             "base_lr": preset.base_lr, "description": preset.description} for preset in METHODS.values()]


# ---------------------------------------------------------------------------------------------
# A preset made concrete


@dataclass
class StepOutput:
    """One step of a method: the student's logits, the named loss terms and the target used."""

    logits: torch.Tensor
    losses: dict[str, torch.Tensor]
    target: Target | None


class TransferMethod(nn.Module):
    """A preset with resolved options: the target rule, the loss module and the regulariser.

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
            raise AnyteachError(f"method {preset.name!r} fine-tunes on the {preset.labelled_split!r} split, which "
                                "the trainer did not provide")
        if self.rule is not None and self.rule.calibrate is not None:
            if context.calibration is None:
                raise AnyteachError(f"method {preset.name!r} chooses its target on a calibration split: use a "
                                    "dataset with one (e.g. mnist1d:calib=5000)")
            self.rule_params = self.rule.calibrate(context.calibration)

    def target(self, labels: torch.Tensor, frozen: torch.Tensor | None, teachers: torch.Tensor | None,
               student: torch.Tensor) -> Target | None:
        """The target rule applied to one batch (None for methods without one)."""
        if self.rule is None:
            return None
        return self.rule.fn(RuleInputs(labels, frozen, teachers, student, self.rule_params))

    def forward(self, student: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                frozen_logits: torch.Tensor | None = None, teacher_logits: torch.Tensor | None = None,
                teacher_features: torch.Tensor | None = None) -> StepOutput:
        """Run the student on a batch and return its loss terms.

        Args:
            student: the classifier being trained (train mode).
            inputs, labels, index: the batch and the samples' positions in the transfer split.
            frozen_logits: `(B, C)` outputs of the frozen initial student.
            teacher_logits: `(K, B, C)` outputs of the teachers.
            teacher_features: `(B, D)` penultimate features of the (first) teacher.
        """
        labelled_logits = None
        if self.needs.student_features:
            logits, features = student.features(inputs)
        elif self.labelled_batch is not None:  # one forward pass over the transfer and the labelled batch
            extra_inputs, extra_labels = self.labelled_batch(index)
            both = student(torch.cat([inputs, extra_inputs]))
            logits, labelled_logits, features = both[:len(inputs)], both[len(inputs):], None
        else:
            logits, features = student(inputs), None
        target = self.target(labels, frozen_logits, teacher_logits, logits.detach())
        losses = self.loss(LossInputs(logits, features, labels, index, target, teacher_logits, teacher_features))
        if labelled_logits is not None:
            losses["loss_labelled"] = F.cross_entropy(labelled_logits.float(), extra_labels)
        return StepOutput(logits, losses, target)


def build_method(name: str, options: dict[str, Any], context: MethodContext) -> TransferMethod:
    """A `TransferMethod` for preset `name` with already-resolved options (`resolve_method_options`)."""
    return TransferMethod(get_method(name), options, context)


def build_regulariser(preset: MethodPreset, student: nn.Module, options: dict[str, Any],
                      context: MethodContext | None = None) -> WeightRegulariser | None:
    """The preset's weight regulariser watching `student` (None if the preset has none)."""
    if preset.regulariser is None:
        return None
    return REGULARISERS[preset.regulariser](student, options, context)


def ensemble_predictions(frozen_logits: torch.Tensor, teacher_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


__all__ = [
    "FROZEN", "LOSSES", "METHODS", "MIXED", "OPTIONS", "REGULARISERS", "SKIPPED", "TARGET_RULES", "Calibration",
    "LossInputs", "MethodContext", "MethodNeeds", "MethodPreset", "Option", "RuleInputs", "SlowWeights", "StepOutput",
    "Target", "TargetRule", "TransferLoss", "TransferMethod", "WeightInterpolation", "WeightRegulariser",
    "build_method", "build_regulariser", "choose_mixture_weight", "choose_mixture_weight_nll",
    "ensemble_predictions", "get_method", "hard_logits", "kl_divergence", "method_table", "mixture_log_probs",
    "most_confident", "nce_loss", "register_loss", "register_method", "register_regulariser", "register_target_rule",
    "resolve_method_options", "similarity_structure_loss",
]
