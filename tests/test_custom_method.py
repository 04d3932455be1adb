"""examples/custom_method.py, the documented way to add a method, registers a working method."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from anyteach import transfer
from anyteach.methods import FROZEN, METHODS, TARGET_RULES, RuleInputs

from .conftest import TINY_DATA

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_method.py"


@pytest.fixture
def example():
    spec = importlib.util.spec_from_file_location("custom_method_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    spec.loader.exec_module(module)  # importing twice registers once
    yield module
    METHODS.pop("kl+confident", None)
    TARGET_RULES.pop("confident-teacher", None)


def test_the_example_rule_routes_confident_teacher_samples_to_the_teacher(example):
    frozen = torch.zeros(3, 4)
    teachers = torch.tensor([[[9.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 9.0, 0]]])  # confident, uniform, confident
    target = TARGET_RULES["confident-teacher"].fn(
        RuleInputs(torch.zeros(3, dtype=torch.long), frozen, teachers, frozen)
    )
    assert target.routing.tolist() == [1, FROZEN, 1]
    assert torch.equal(target.logits[1], frozen[1]) and torch.equal(target.logits[2], teachers[0, 2])


def test_the_example_method_trains_a_student(example, tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.setattr(example, "CONFIDENCE", 0.3)  # the tiny zoo's teacher (22%) is rarely 90% sure
    preset = METHODS["kl+confident"]
    assert (preset.target, preset.loss, preset.needs.frozen, preset.needs.teacher_logits) == (
        "confident-teacher",
        "kl",
        True,
        True,
    )
    result = transfer(
        tiny_zoo["mlp"],
        tiny_zoo["gru_chunk4"],
        data=TINY_DATA,
        method="kl+confident",
        out=tmp_path / "run",
        epochs=1,
        batch_size=128,
        optimizer="adamw",
        lr=1e-3,
        progress=False,
    )
    assert result.student_path.exists()
    routing = result.final["routing"]
    assert routing["teacher"] + routing["frozen"] == pytest.approx(100.0)
    assert 0 < result.final["routed_to_teacher"] < 100  # the rule really chose per sample
