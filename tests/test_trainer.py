"""The trainer's parts: state complete after construction, named routing statistics."""

from __future__ import annotations

import torch

from anyteach import TrainingOptions, load_model
from anyteach.methods import FROZEN, MIXED, SKIPPED, resolve_method_options
from anyteach.trainer import EvalReference, RoutingCounts, Trainer


def test_routing_counts_are_named_shares():
    counts = RoutingCounts(2, torch.device("cpu"))
    counts.add(torch.tensor([FROZEN, 1, 1, 2]))
    counts.add(torch.tensor([MIXED, SKIPPED, 2, 2]))
    shares = counts.shares()
    assert shares["routing"] == {"frozen": 12.5, "teacher1": 25.0, "teacher2": 37.5, "mixed": 12.5, "skipped": 12.5}
    assert shares["routed_to_teacher"] == 62.5
    single = RoutingCounts(1, torch.device("cpu"))
    single.add(torch.tensor([1, FROZEN]))
    assert single.shares()["routing"]["teacher"] == 50.0


def test_a_trainer_is_ready_to_measure_after_construction(tiny_zoo, tiny_data):
    student, teacher = load_model(tiny_zoo["mlp"]), load_model(tiny_zoo["gru_chunk4"])
    trainer = Trainer(student, [teacher], tiny_data, "kl+dp", resolve_method_options("kl+dp"),
                      TrainingOptions(epochs=1, device="cpu"))
    assert isinstance(trainer.reference, EvalReference) and trainer.outputs is not None
    row = trainer.measure(student)  # the untouched student measured against itself: nothing changed
    assert row["transfer_delta"] == 0 and row["knowledge_gain"] == 0 and "epoch" not in row
    frozen, teachers, features = trainer.outputs(None, torch.arange(4))  # cached outputs, indexed
    assert frozen.shape == (4, 10) and teachers.shape == (1, 4, 10) and features is None
    xe = Trainer(student, [], tiny_data, "xe", resolve_method_options("xe"), TrainingOptions(epochs=1, device="cpu"))
    assert xe.outputs(None, torch.arange(4)) == (None, None, None)
