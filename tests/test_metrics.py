"""Pure metric functions: hand-computed golden values, exact McNemar tails, properties, bad input."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anyteach import AnyteachError
from anyteach.analysis.metrics import (
    accuracy,
    flip_entropy,
    mcnemar_p_values,
    negative_flips,
    per_class_positive_flips,
    positive_flips,
    top_p_classes,
    transfer_metrics,
    uniform_entropy,
)

# Hand-made example. Correct (y == prediction) per sample:
#   a: T F T F T F   (50%)
#   b: T T F T T T   (83.33%)
Y = [0, 1, 2, 0, 1, 2]
A = [0, 0, 2, 1, 1, 0]
B = [0, 1, 0, 0, 1, 2]


def test_flips_golden_values():
    # a wrong & b right: samples 1 (class 1), 3 (class 0), 5 (class 2) -> 3/6
    assert positive_flips(A, B, Y) == 50.0
    # a right & b wrong: sample 2 -> 1/6
    assert negative_flips(A, B, Y) == pytest.approx(100 / 6)
    assert accuracy(A, Y) == 50.0
    assert accuracy(B, Y) == pytest.approx(500 / 6)
    assert per_class_positive_flips(A, B, Y).tolist() == [1, 1, 1]
    assert per_class_positive_flips(A, B, Y, num_classes=5).tolist() == [1, 1, 1, 0, 0]


def test_inputs_as_torch_numpy_and_logits():
    logits_b = torch.nn.functional.one_hot(torch.tensor(B), 3).float() * 5
    assert positive_flips(torch.tensor(A), logits_b, np.array(Y)) == 50.0
    assert positive_flips(np.array(A, dtype=np.int16), np.array(B, dtype=np.uint8), torch.tensor(Y)) == 50.0


def test_top_p_classes_golden_values():
    counts = [5, 3, 2, 0]  # 10 flips
    assert (top_p_classes(counts, 50).k, top_p_classes(counts, 50).share) == (1, 50.0)  # exactly 50% reaches 50%
    assert (top_p_classes(counts, 51).k, top_p_classes(counts, 51).share) == (2, 80.0)
    assert (top_p_classes(counts, 2).k, top_p_classes(counts, 2).share) == (1, 50.0)
    assert (top_p_classes(counts, 80).k, top_p_classes(counts, 80).share) == (2, 80.0)
    assert (top_p_classes(counts, 100).k, top_p_classes(counts, 100).share) == (3, 100.0)
    assert top_p_classes(counts, 51).classes.tolist() == [0, 1]
    # ties keep class order
    assert top_p_classes([1, 4, 4, 1], 40).classes.tolist() == [1]  # 4 of 10 flips
    assert top_p_classes([1, 4, 4, 1], 41).classes.tolist() == [1, 2]
    empty = top_p_classes([0, 0, 0], 20)
    assert (empty.k, empty.share, empty.classes.tolist()) == (0, 0.0, [])
    assert top_p_classes(counts, 50).as_dict() == {"k": 1, "share": 50.0, "classes": [0]}


def test_entropy_golden_values():
    # -(0.5 ln 0.5 + 0.3 ln 0.3 + 0.2 ln 0.2) = 0.346574 + 0.361192 + 0.321888
    assert flip_entropy([5, 3, 2, 0]) == pytest.approx(1.029653, abs=1e-6)
    assert flip_entropy([7, 7, 7, 7]) == pytest.approx(math.log(4))
    assert flip_entropy([0, 9, 0]) == 0.0
    assert flip_entropy([0, 0]) == 0.0
    assert uniform_entropy(1000) == pytest.approx(6.907755, abs=1e-6)


def test_mcnemar_golden_values():
    # n = 3: P(X >= 3) = 1/8, P(X >= 0) = 1
    assert mcnemar_p_values(3, 0) == (0.125, 1.0)
    # n = 4: P(X >= 3) = (4 + 1)/16, P(X >= 1) = 15/16
    assert mcnemar_p_values(3, 1) == (0.3125, 0.9375)
    assert mcnemar_p_values(0, 0) == (1.0, 1.0)
    assert mcnemar_p_values(1, 1) == (0.75, 0.75)


def _exact_tail(k: int, n: int) -> float:
    """Reference: P(X >= k) = sum_{i >= k} C(n, i) / 2^n in exact integers (C(n, i-1) from C(n, i))."""
    term, total = 1, 1  # C(n, n)
    for i in range(n, k, -1):
        term = term * i // (n - i + 1)  # C(n, i - 1)
        total += term
    return float(Fraction(total, 2**n))


@pytest.mark.parametrize("gains,losses", [(10_050, 9_950), (10_001, 10_000), (10_400, 9_900), (12, 30_000)])
def test_mcnemar_large_n_matches_exact_sum(gains, losses):
    """Above 20,000 discordant samples the tail is summed in log space: it must match the exact sum."""
    p_gain, p_loss = mcnemar_p_values(gains, losses)
    n = gains + losses
    assert p_gain == pytest.approx(_exact_tail(gains, n), rel=1e-9, abs=1e-300)
    assert p_loss == pytest.approx(_exact_tail(losses, n), rel=1e-9, abs=1e-300)


def test_mcnemar_very_large_n_no_overflow():
    p_gain, p_loss = mcnemar_p_values(50_400, 49_600)
    assert 0.0 < p_gain < 0.01 and 0.99 < p_loss < 1.0
    p_gain, p_loss = mcnemar_p_values(70_000, 30_000)  # astronomically significant: underflows to 0, not an error
    assert p_gain == 0.0 and p_loss == 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(0, 300))
def test_mcnemar_tails_are_complementary(gains, losses):
    """P(X >= g) + P(X >= l) = 1 + P(X = g) when g + l = n (X symmetric about n/2)."""
    n = gains + losses
    p_gain, p_loss = mcnemar_p_values(gains, losses)
    point = math.comb(n, gains) / 2**n if n else 1.0
    assert 0.0 <= p_gain <= 1.0 and 0.0 <= p_loss <= 1.0
    assert p_gain + p_loss == pytest.approx(1.0 + point, rel=1e-12)


# Transfer example. Correct per sample:
#   before:  T T F F T F T F   (4/8 = 50%)
#   after:   T T T T F T T F   (6/8 = 75%)
#   teacher: T F T F T T F T   (5/8 = 62.5%)
TY = [0, 1, 2, 3, 0, 1, 2, 3]
BEFORE = [0, 1, 0, 0, 0, 2, 2, 1]
AFTER = [0, 1, 2, 3, 1, 1, 2, 0]
TEACHER = [0, 0, 2, 0, 0, 1, 1, 3]


def test_transfer_metrics_golden_values():
    m = transfer_metrics(BEFORE, AFTER, TEACHER, TY, teacher_top_classes={50: [2], 20: np.array([2, 3])})
    assert m["student_acc"] == 75.0 and m["student_acc_before"] == 50.0 and m["teacher_acc"] == 62.5
    # gains: samples 2, 3, 5 (classes 2, 3, 1); loss: sample 4
    assert (m["gain_count"], m["loss_count"]) == (3, 1)
    assert (m["knowledge_gain"], m["knowledge_loss"], m["transfer_delta"]) == (37.5, 12.5, 25.0)
    # the teacher's complementary samples (before wrong, teacher right): 2, 5, 7; after right on 2 and 5
    assert m["transfer_rate"] == pytest.approx(200 / 3)
    assert (m["p_gain"], m["p_loss"]) == (0.3125, 0.9375)
    # gains in class {2}: 1 of 3; in classes {2, 3}: 2 of 3
    assert m["top_p_improvement"][50] == pytest.approx(100 / 3)
    assert m["top_p_improvement"][20] == pytest.approx(200 / 3)


def test_transfer_rate_without_complementary_samples_is_zero():
    # the teacher is never right where the student is wrong
    m = transfer_metrics([0, 0], [0, 1], [0, 0], [0, 1])
    assert m["transfer_rate"] == 0.0 and m["gain_count"] == 1
    assert "top_p_improvement" not in m
    m = transfer_metrics([0, 0], [0, 0], [0, 1], [0, 1], teacher_top_classes={2: [1]})
    assert m["top_p_improvement"] == {2: 0.0}  # no gains at all


# ---------------------------------------------------------------------------------------------
# Properties


@st.composite
def predictions(draw, count: int = 2):
    n = draw(st.integers(1, 80))
    k = draw(st.integers(1, 6))
    labels = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    preds = [draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)) for _ in range(count)]
    return np.array(labels), [np.array(p) for p in preds], k


@settings(max_examples=150, deadline=None)
@given(predictions(count=3))
def test_gain_minus_loss_is_delta_exactly(case):
    labels, (before, after, teacher), _ = case
    m = transfer_metrics(before, after, teacher, labels)
    assert m["knowledge_gain"] - m["knowledge_loss"] == m["transfer_delta"]
    assert m["transfer_delta"] == pytest.approx(m["student_acc"] - m["student_acc_before"], abs=1e-9)
    assert m["knowledge_gain"] == positive_flips(before, after, labels)
    assert m["knowledge_loss"] == negative_flips(before, after, labels)
    assert 0.0 <= m["transfer_rate"] <= 100.0


@settings(max_examples=150, deadline=None)
@given(predictions(count=2))
def test_flip_symmetries(case):
    labels, (a, b), k = case
    assert positive_flips(a, a, labels) == 0.0 and negative_flips(a, a, labels) == 0.0
    assert positive_flips(a, b, labels) == negative_flips(b, a, labels)
    assert positive_flips(a, b, labels) - negative_flips(a, b, labels) == pytest.approx(
        accuracy(b, labels) - accuracy(a, labels), abs=1e-9
    )
    per_class = per_class_positive_flips(a, b, labels, k)
    assert per_class.sum() == round(positive_flips(a, b, labels) * len(labels) / 100)
    assert 0.0 <= flip_entropy(per_class) <= uniform_entropy(k) + 1e-12


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=30), st.sampled_from([2, 5, 20, 50, 33.3, 100]))
def test_top_p_is_the_smallest_set(counts, p):
    top = top_p_classes(counts, p)
    total = sum(counts)
    if total == 0:
        assert top.k == 0
        return
    ranked = sorted(counts, reverse=True)
    assert sum(ranked[: top.k]) * 100 >= p * total  # reaches p%
    assert sum(ranked[: top.k - 1]) * 100 < p * total  # one class fewer does not
    assert top.share == pytest.approx(100 * sum(ranked[: top.k]) / total)
    assert sorted(np.asarray(counts)[top.classes].tolist(), reverse=True) == ranked[: top.k]


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "call",
    [
        lambda: positive_flips([0, 1, 2], [0, 1], [0, 1, 2]),
        lambda: negative_flips([0, 1], [0, 1], [0]),
        lambda: accuracy([0, 1], [0, 1, 1]),
        lambda: per_class_positive_flips([0, 1], [0, 1, 1], [0, 1]),
        lambda: transfer_metrics([0, 1], [0, 1], [0, 1, 0], [0, 1]),
    ],
)
def test_mismatched_lengths_raise(call):
    with pytest.raises(AnyteachError, match="same samples"):
        call()


def test_other_bad_input_raises():
    with pytest.raises(AnyteachError, match="no samples"):
        positive_flips([], [], [])
    with pytest.raises(AnyteachError, match="1-D"):
        accuracy(np.zeros((2, 2, 2)), [0, 1])
    with pytest.raises(AnyteachError, match="integer"):
        accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(AnyteachError, match="out of range"):
        per_class_positive_flips([0, 3], [0, 1], [0, 1], num_classes=2)
    with pytest.raises(AnyteachError, match="non-negative"):
        per_class_positive_flips([0, -1], [0, 1], [0, 1])
    with pytest.raises(AnyteachError, match="top-p"):
        top_p_classes([1, 2], 0)
    with pytest.raises(AnyteachError, match="top-p"):
        top_p_classes([1, 2], 150)
    with pytest.raises(AnyteachError, match="non-negative"):
        top_p_classes([1, -2], 50)
    with pytest.raises(AnyteachError, match="non-negative"):
        mcnemar_p_values(-1, 3)
