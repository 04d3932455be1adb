"""Pure metric functions of complementary knowledge and knowledge transfer (PAPER.md sections 1-2).

Everything here takes predicted labels and true labels (torch tensors or numpy arrays; a 2-D array
of logits is reduced to its argmax) and returns plain numbers or small numpy arrays. Nothing here
runs a model: the predictions come from `anyteach.predictions.predict`, computed once per model.
Percentages are percent of the evaluation samples (0-100), differences are percentage points. The
zoo-wide all-pairs versions of the same quantities live in `anyteach.complementarity`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..core.errors import AnyteachError

DEFAULT_TOP_P: tuple[float, ...] = (2.0, 5.0, 20.0, 50.0)

ArrayLike = Any  # torch.Tensor | np.ndarray | Sequence[int]


BUCKETS: tuple[str, ...] = ("much weaker", "weaker", "equal", "stronger", "much stronger")
"""Teacher-strength buckets of PAPER.md section 2, weakest teacher first."""

BUCKET_EDGES: tuple[float, ...] = (-3.0, -1.0, 1.0, 3.0)
"""Upper (inclusive) edges of the first four buckets, in percentage points: (-inf,-3], (-3,-1], ..."""

STRENGTH_DECIMALS = 6
"""Teacher strengths are rounded before bucketing, so 84.2 - 83.2 (= 1.0000000000000142) is `equal`."""


# ---------------------------------------------------------------------------------------------
# Input handling


def as_label_array(values: ArrayLike, name: str = "predictions") -> np.ndarray:
    """Predicted or true labels as a 1-D int64 numpy array.

    Args:
        values: a 1-D array of class indices, or a 2-D array of logits / probabilities
            (samples x classes), which is reduced to its per-row argmax.
        name: what `values` is, for the error message.

    Returns:
        A 1-D `np.int64` array.

    Raises:
        AnyteachError: if `values` is not 1-D or 2-D, or holds non-integer labels.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dim() == 2:
            values = values.argmax(1)
        values = values.numpy()
    array = np.asarray(values)
    if array.ndim == 2:
        array = array.argmax(1)
    if array.ndim != 1:
        raise AnyteachError(f"{name} must be a 1-D array of class indices (or 2-D logits), got shape {array.shape}")
    if array.dtype.kind == "b" or (
        array.dtype.kind not in "iu" and array.size and not np.array_equal(array, np.round(array))
    ):
        raise AnyteachError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _check_same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise AnyteachError(f"predictions and labels must cover the same samples: {described}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise AnyteachError("no samples: predictions and labels are empty")
    return n


def _percent(count: int, n: int) -> float:
    return 100.0 * count / n


# ---------------------------------------------------------------------------------------------
# Accuracy and flips


def accuracy(pred: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 accuracy in percent.

    Raises:
        AnyteachError: on mismatched lengths or empty input.
    """
    pred, labels = as_label_array(pred), as_label_array(labels, "labels")
    n = _check_same_length(predictions=pred, labels=labels)
    return _percent(int(np.count_nonzero(pred == labels)), n)


def _flip_masks(pred_a: ArrayLike, pred_b: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = as_label_array(pred_a, "pred_a"), as_label_array(pred_b, "pred_b")
    y = as_label_array(labels, "labels")
    _check_same_length(pred_a=a, pred_b=b, labels=y)
    return a == y, b == y, y


def positive_flip_mask(pred_a: ArrayLike, pred_b: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Boolean mask of the positive flips a->b: samples where a is wrong and b is right."""
    a_right, b_right, _ = _flip_masks(pred_a, pred_b, labels)
    return ~a_right & b_right


def positive_flips(pred_a: ArrayLike, pred_b: ArrayLike, labels: ArrayLike) -> float:
    """Positive flips a->b (a wrong, b right) as a percent of all samples.

    With a = student S0 and b = teacher T this is T's complementary knowledge for S0.

    Raises:
        AnyteachError: on mismatched lengths or empty input.
    """
    mask = positive_flip_mask(pred_a, pred_b, labels)
    return _percent(int(np.count_nonzero(mask)), len(mask))


def negative_flips(pred_a: ArrayLike, pred_b: ArrayLike, labels: ArrayLike) -> float:
    """Negative flips a->b (a right, b wrong) as a percent of all samples.

    Raises:
        AnyteachError: on mismatched lengths or empty input.
    """
    a_right, b_right, _ = _flip_masks(pred_a, pred_b, labels)
    return _percent(int(np.count_nonzero(a_right & ~b_right)), len(a_right))


def _infer_num_classes(labels: np.ndarray, num_classes: int | None, *others: np.ndarray) -> int:
    largest = max(int(a.max()) for a in (labels, *others)) + 1
    if (labels < 0).any() or any((a < 0).any() for a in others):
        raise AnyteachError("class indices must be non-negative")
    if num_classes is None:
        return largest
    if largest > num_classes:
        raise AnyteachError(f"class index {largest - 1} is out of range for {num_classes} classes")
    return num_classes


def per_class_positive_flips(
    pred_a: ArrayLike, pred_b: ArrayLike, labels: ArrayLike, num_classes: int | None = None
) -> np.ndarray:
    """Positive-flip counts a->b per true class: the per-class distribution of PAPER.md.

    Args:
        pred_a: predictions of the model that is wrong (e.g. the student S0).
        pred_b: predictions of the model that is right (e.g. the teacher T).
        labels: true labels.
        num_classes: length of the result (default: the largest class index seen + 1).

    Returns:
        An int64 array of length `num_classes`; entry c counts samples of true class c that a gets
        wrong and b gets right.

    Raises:
        AnyteachError: on mismatched lengths, empty input or a class index out of range.
    """
    a, b = as_label_array(pred_a, "pred_a"), as_label_array(pred_b, "pred_b")
    y = as_label_array(labels, "labels")
    _check_same_length(pred_a=a, pred_b=b, labels=y)
    num_classes = _infer_num_classes(y, num_classes, a, b)
    mask = (a != y) & (b == y)
    return np.bincount(y[mask], minlength=num_classes).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Per-class distribution: concentration


@dataclass(frozen=True)
class TopClasses:
    """The top-p% classes of a per-class flip distribution.

    Attributes:
        p: the requested share in percent.
        k: the smallest number of classes (by flip count, descending) whose flips make up at least
            p% of all flips; 0 when there are no flips at all.
        share: the percent of all flips those k classes hold (>= p unless there are no flips).
        classes: their class indices, most flips first (ties: lower class index first).
    """

    p: float
    k: int
    share: float
    classes: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form: `{"k": ..., "share": ..., "classes": [...]}`."""
        return {"k": self.k, "share": self.share, "classes": [int(c) for c in self.classes]}


def _check_counts(per_class_flips: ArrayLike) -> np.ndarray:
    counts = np.asarray(
        per_class_flips.detach().cpu() if isinstance(per_class_flips, torch.Tensor) else per_class_flips
    )
    if counts.ndim != 1 or counts.size == 0:
        raise AnyteachError(f"per-class flips must be a non-empty 1-D array of counts, got shape {counts.shape}")
    if (counts < 0).any():
        raise AnyteachError("per-class flip counts must be non-negative")
    return counts


def check_top_p(p: float) -> float:
    """`p` as a float, if it is a valid top-p share in percent (0 < p <= 100).

    Raises:
        AnyteachError: p out of range.
    """
    p = float(p)
    if not 0 < p <= 100:
        raise AnyteachError(f"top-p share must be in (0, 100] percent, got {p:g}")
    return p


def top_p_classes(per_class_flips: ArrayLike, p: float) -> TopClasses:
    """The smallest set of classes holding at least p% of all positive flips, and their share.

    Classes are ranked by flip count, descending (a stable sort, so ties keep class order).

    Args:
        per_class_flips: per-class flip counts (`per_class_positive_flips`).
        p: the share in percent, 0 < p <= 100.

    Returns:
        A `TopClasses`. With no flips at all: k = 0, share = 0.0, no classes.

    Raises:
        AnyteachError: if p is out of range or the counts are not a 1-D non-negative array.
    """
    p = check_top_p(p)
    counts = _check_counts(per_class_flips)
    total = counts.sum()
    if total == 0:
        return TopClasses(float(p), 0, 0.0, np.empty(0, dtype=np.int64))
    order = np.argsort(-counts, kind="stable")
    cumulative = np.cumsum(counts[order])
    # Compare in counts (cumulative * 100 >= p * total) so that, e.g., exactly 50% counts as reaching 50%.
    k = int(np.searchsorted(cumulative * 100.0 >= p * float(total), True)) + 1
    return TopClasses(float(p), k, 100.0 * float(cumulative[k - 1]) / float(total), order[:k].astype(np.int64))


def flip_entropy(per_class_flips: ArrayLike) -> float:
    """Shannon entropy (natural log) of the per-class flip distribution; 0.0 when there are no flips.

    Compare with `uniform_entropy(num_classes)`: lower means the flips concentrate in a few classes
    (the teacher's "areas of expertise").
    """
    counts = _check_counts(per_class_flips).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    probs = counts[counts > 0] / total
    return max(0.0, float(-(probs * np.log(probs)).sum()))  # one class: 0.0, not -0.0 from rounding


def uniform_entropy(num_classes: int) -> float:
    """ln(num_classes): the entropy of flips spread evenly over all classes."""
    if num_classes < 1:
        raise AnyteachError(f"number of classes must be positive, got {num_classes}")
    return math.log(num_classes)


# ---------------------------------------------------------------------------------------------
# Significance of gains and losses


_EXACT_TAIL_LIMIT = 20_000  # up to this n the tail is summed in exact integers (< 0.1 s), above in log space


def _exact_binomial_upper_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2) as an exact integer sum, correctly rounded to float."""
    from fractions import Fraction

    term, total = math.comb(n, k), 0
    for i in range(k, n + 1):
        total += term
        term = term * (n - i) // (i + 1)
    return float(Fraction(total, 2**n))


def _log_binomial_upper_tail(k: int, n: int) -> float:
    """log P(X >= k) for X ~ Binomial(n, 1/2), exact up to float64 rounding (log-space sum)."""
    i = torch.arange(k, n + 1, dtype=torch.float64)
    log_terms = (math.lgamma(n + 1) - torch.lgamma(i + 1) - torch.lgamma(n - i + 1)) - n * math.log(2.0)
    return float(torch.logsumexp(log_terms, 0))


SIGNIFICANCE = 0.05
"""The p-value below which a gain, a harm or a difference from a control is called significant, everywhere."""


def mcnemar_p_values(gain_count: int, loss_count: int) -> tuple[float, float]:
    """One-sided exact McNemar (binomial sign) test p-values of gains and losses.

    Under the null hypothesis each discordant sample (a gain or a loss) is equally likely to be
    either, so with n = gain_count + loss_count and X ~ Binomial(n, 1/2):

    Args:
        gain_count: number of positive flips (before wrong, after right).
        loss_count: number of negative flips (before right, after wrong).

    Returns:
        `(P(X >= gain_count), P(X >= loss_count))`: the p-value that the gains are no more than
        chance, and likewise for the losses. `(1.0, 1.0)` when n == 0. Exact integer arithmetic up to
        n = 20,000, a log-space sum above (relative error ~1e-12), so n in the hundreds of thousands
        neither overflows nor underflows to a wrong value (only to 0.0 when truly below ~1e-308).

    Raises:
        AnyteachError: on negative counts.
    """
    gain_count, loss_count = int(gain_count), int(loss_count)
    if gain_count < 0 or loss_count < 0:
        raise AnyteachError(f"flip counts must be non-negative, got gains={gain_count} losses={loss_count}")
    n = gain_count + loss_count
    if n == 0:
        return 1.0, 1.0

    def tail(k: int) -> float:
        if k == 0:
            return 1.0
        if n <= _EXACT_TAIL_LIMIT:
            return _exact_binomial_upper_tail(k, n)
        return min(1.0, math.exp(_log_binomial_upper_tail(k, n)))

    return tail(gain_count), tail(loss_count)


# ---------------------------------------------------------------------------------------------
# Transfer metrics


def transfer_metrics(
    pred_before: ArrayLike,
    pred_after: ArrayLike,
    pred_teacher: ArrayLike,
    labels: ArrayLike,
    teacher_top_classes: Mapping[float, Sequence[int] | np.ndarray] | None = None,
) -> dict[str, Any]:
    """The metrics of one knowledge transfer from teacher T into student S0, giving student S.

    Args:
        pred_before: predictions of the student before transfer (S0).
        pred_after: predictions of the student after transfer (S).
        pred_teacher: predictions of the teacher (T).
        labels: true labels.
        teacher_top_classes: optional `{p: class indices}`, the teacher's top-p% complementary classes
            for S0 (e.g. `top_p_classes(per_class_positive_flips(S0, T, y), p).classes`).

    Returns:
        A dict, percentages in percent of the samples and differences in percentage points:
        `student_acc` (S), `student_acc_before` (S0), `teacher_acc`, `transfer_delta`,
        `knowledge_gain` (positive flips S0->S), `knowledge_loss` (negative flips S0->S),
        `transfer_rate` (per sample: percent of T's complementary samples, where S0 is wrong and T is
        right, that S gets right; 0.0 when there are no such samples), `gain_count`, `loss_count`
        (ints), `p_gain`, `p_loss` (`mcnemar_p_values`), and with `teacher_top_classes`
        `top_p_improvement` `{p: percent of the gains whose true class is in T's top-p% classes}`
        (0.0 when there are no gains). `transfer_delta` is computed as
        `knowledge_gain - knowledge_loss`, so that identity holds exactly (it equals
        `student_acc - student_acc_before` up to float rounding).

    Raises:
        AnyteachError: on mismatched lengths or empty input.
    """
    before, after = as_label_array(pred_before, "pred_before"), as_label_array(pred_after, "pred_after")
    teacher, y = as_label_array(pred_teacher, "pred_teacher"), as_label_array(labels, "labels")
    n = _check_same_length(pred_before=before, pred_after=after, pred_teacher=teacher, labels=y)
    before_right, after_right, teacher_right = before == y, after == y, teacher == y
    gains = ~before_right & after_right
    gain_count, loss_count = int(np.count_nonzero(gains)), int(np.count_nonzero(before_right & ~after_right))
    knowledge_gain, knowledge_loss = _percent(gain_count, n), _percent(loss_count, n)
    complementary = ~before_right & teacher_right
    complementary_count = int(np.count_nonzero(complementary))
    transferred = int(np.count_nonzero(complementary & after_right))
    p_gain, p_loss = mcnemar_p_values(gain_count, loss_count)
    result: dict[str, Any] = {
        "student_acc": _percent(int(np.count_nonzero(after_right)), n),
        "student_acc_before": _percent(int(np.count_nonzero(before_right)), n),
        "teacher_acc": _percent(int(np.count_nonzero(teacher_right)), n),
        "transfer_delta": knowledge_gain - knowledge_loss,
        "knowledge_gain": knowledge_gain,
        "knowledge_loss": knowledge_loss,
        "transfer_rate": _percent(transferred, complementary_count) if complementary_count else 0.0,
        "gain_count": gain_count,
        "loss_count": loss_count,
        "p_gain": p_gain,
        "p_loss": p_loss,
    }
    if teacher_top_classes is not None:
        gained_classes = y[gains]
        improvement = {}
        for p, classes in teacher_top_classes.items():
            chosen = np.asarray(
                classes.detach().cpu() if isinstance(classes, torch.Tensor) else classes, dtype=np.int64
            ).reshape(-1)
            inside = int(np.count_nonzero(np.isin(gained_classes, chosen)))
            improvement[p] = _percent(inside, gain_count) if gain_count else 0.0
        result["top_p_improvement"] = improvement
    return result


# ---------------------------------------------------------------------------------------------
# Teacher strength


def teacher_strength(teacher_acc: float, student_acc_before: float) -> float:
    """acc(T) - acc(S0) in percentage points, rounded to `STRENGTH_DECIMALS` decimals."""
    return round(float(teacher_acc) - float(student_acc_before), STRENGTH_DECIMALS)


def strength_bucket(strength: float) -> str:
    """The PAPER.md bucket of a teacher strength (pp): much weaker (-inf,-3] ... much stronger (3,inf).

    Raises:
        AnyteachError: if `strength` is NaN.
    """
    if math.isnan(strength):
        raise AnyteachError("teacher strength is NaN: no bucket")
    strength = round(strength, STRENGTH_DECIMALS)
    for bucket, edge in zip(BUCKETS, BUCKET_EDGES):
        if strength <= edge:
            return bucket
    return BUCKETS[-1]


__all__ = [
    "SIGNIFICANCE",
    "BUCKETS",
    "BUCKET_EDGES",
    "DEFAULT_TOP_P",
    "TopClasses",
    "accuracy",
    "as_label_array",
    "check_top_p",
    "flip_entropy",
    "mcnemar_p_values",
    "negative_flips",
    "per_class_positive_flips",
    "positive_flip_mask",
    "positive_flips",
    "strength_bucket",
    "teacher_strength",
    "top_p_classes",
    "transfer_metrics",
    "uniform_entropy",
]
