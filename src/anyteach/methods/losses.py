"""Losses: pure loss functions and the registered loss modules of the transfer methods.

A loss is a small `nn.Module` (mdistiller style) whose forward takes a batch's `LossInputs` and
returns named loss terms, already weighted, so the training loss is their sum. Class flags say what
it needs (`needs_target`, `needs_features`, `needs_teacher_features`) and which method options it
reads (`options`). Losses are registered by `register_loss` and reachable by name in `LOSSES`.
`MethodContext` is what a method's parts may need when they are built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import AnyteachError
from ..core.registry import Registry
from ..data.mixing import Mix
from .targets import Calibration, Target

# ---------------------------------------------------------------------------------------------
# Loss functions (pure, batch in, scalar out)


def kl_divergence(
    student_logits: torch.Tensor,
    target_logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    reference: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
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
    per_sample = F.kl_div(log_student, log_target, log_target=True, reduction="none").sum(1) * temperature**2
    if weight is None:
        return per_sample.mean()
    weight = weight.float()
    return (per_sample * weight).sum() / weight.sum().clamp_min(1e-12)


def label_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mix: Mix | None = None) -> torch.Tensor:
    """Cross-entropy on the labels, averaged over the batch; on a mixed batch each sample's term weighs its
    own label and its partner's by their shares (`Mix.share`), as mixup and cutmix train.

    Args:
        logits: `(B, C)` student logits.
        labels: `(B,)` labels of the samples before mixing.
        mix: how the batch was mixed (None: not mixed).
    """
    if mix is None:
        return F.cross_entropy(logits.float(), labels)
    log_probs = F.log_softmax(logits.float(), dim=1)
    own = log_probs.gather(1, labels.view(-1, 1)).squeeze(1)
    partner = log_probs.gather(1, mix.partner_labels(labels).view(-1, 1)).squeeze(1)
    return -(mix.share * own + (1 - mix.share) * partner).mean()


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
    """What a method's parts may need when they are built: sizes (losses), the transfer labels and
    seed (CRD's memory bank), and the calibration split (target rules with a `calibrate` step, the
    `wise` regulariser's `calib_score`)."""

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
    mix: Mix | None = None  # how the batch was mixed (label terms weigh both samples' labels), None: not mixed


class TransferLoss(nn.Module):
    """Base class of registered losses. Subclasses set the class flags and implement `forward`."""

    options: ClassVar[tuple[str, ...]] = ()
    needs_target: ClassVar[bool] = False
    needs_features: ClassVar[bool] = False
    needs_teacher_features: ClassVar[bool] = False
    labelled: ClassVar[bool] = True  # reads the transfer batch's labels (see `uses_labels`)

    @classmethod
    def uses_labels(cls, options: Mapping[str, Any]) -> bool:
        """Whether the loss, with these options, reads the transfer batch's labels."""
        return cls.labelled

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

    @classmethod
    def uses_labels(cls, options: Mapping[str, Any]) -> bool:
        return options.get("alpha", 1.0) < 1  # the (1 − α)·CE term

    def forward(self, batch: LossInputs) -> dict[str, torch.Tensor]:
        alpha, target = self.opts["alpha"], batch.target
        assert target is not None, "a KL loss is built only with a target rule (needs_target)"
        # top-k classes come from the teacher when there is exactly one, else from the target itself
        reference = (
            batch.teacher_logits[0] if batch.teacher_logits is not None and len(batch.teacher_logits) == 1 else None
        )
        losses = {}
        if alpha > 0:
            losses["loss_kl"] = alpha * kl_divergence(
                batch.logits, target.logits, self.opts["temperature"], self.opts["top_k"], reference, target.weight
            )
        if alpha < 1:
            losses["loss_ce"] = (1 - alpha) * label_cross_entropy(batch.logits, batch.labels, batch.mix)
        return losses


@register_loss("ce")
class CrossEntropy(TransferLoss):
    """Cross-entropy on the labels only: plain supervised fine-tuning."""

    def forward(self, batch: LossInputs) -> dict[str, torch.Tensor]:
        return {"loss_ce": label_cross_entropy(batch.logits, batch.labels, batch.mix)}


@register_loss("cd")
class ContrastiveDistillation(TransferLoss):
    """γ·CE + β·KL between the in-batch feature-similarity structures of teacher and student."""

    options = ("gamma", "beta")
    needs_features = True
    needs_teacher_features = True

    def forward(self, batch: LossInputs) -> dict[str, torch.Tensor]:
        assert batch.features is not None and batch.teacher_features is not None  # needs_*features
        return {
            "loss_ce": self.opts["gamma"] * label_cross_entropy(batch.logits, batch.labels, batch.mix),
            "loss_cd": self.opts["beta"] * similarity_structure_loss(batch.features, batch.teacher_features),
        }


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
    # buffers (registered in __init__), declared for the type checker
    memory_student: torch.Tensor
    memory_teacher: torch.Tensor
    normaliser: torch.Tensor
    by_class: torch.Tensor
    class_start: torch.Tensor
    class_count: torch.Tensor
    labels: torch.Tensor

    def __init__(self, options: dict[str, Any], context: MethodContext):
        super().__init__(options, context)
        if (
            context.transfer_labels is None
            or context.student_feature_dim is None
            or context.teacher_feature_dim is None
        ):
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
        assert batch.features is not None and batch.teacher_features is not None  # needs_*features
        student = F.normalize(self.embed_student(batch.features.float()), dim=1)
        teacher = F.normalize(self.embed_teacher(batch.teacher_features.float()), dim=1)
        idx = torch.cat([batch.index.unsqueeze(1), self.negatives(batch.index)], dim=1)
        n = len(self.labels)
        # student anchors against the teacher bank and teacher anchors against the student bank
        loss = nce_loss(self._scores(self.memory_teacher, student, idx, 0), n) + nce_loss(
            self._scores(self.memory_student, teacher, idx, 1), n
        )
        self._update_memory(self.memory_student, student, batch.index)
        self._update_memory(self.memory_teacher, teacher, batch.index)
        return {
            "loss_ce": self.opts["gamma"] * label_cross_entropy(batch.logits, batch.labels, batch.mix),
            "loss_crd": self.opts["beta"] * loss,
        }
