"""The trainer's parts: state complete after construction, named routing statistics."""

from __future__ import annotations

import torch

from anyteach import TrainingOptions, load_model
from anyteach.methods import FROZEN, MIXED, SKIPPED, resolve_method_options
from anyteach.training.trainer import EvalReference, RoutingCounts, Trainer


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
    trainer = Trainer(
        student, [teacher], tiny_data, "kl+dp", resolve_method_options("kl+dp"), TrainingOptions(epochs=1, device="cpu")
    )
    assert isinstance(trainer.reference, EvalReference) and trainer.outputs is not None
    row = trainer.measure(student)  # the untouched student measured against itself: nothing changed
    assert row["transfer_delta"] == 0 and row["knowledge_gain"] == 0 and "epoch" not in row
    frozen, teachers, features = trainer.outputs(None, torch.arange(4))  # cached outputs, indexed
    assert frozen.shape == (4, 10) and teachers.shape == (1, 4, 10) and features is None
    xe = Trainer(student, [], tiny_data, "xe", resolve_method_options("xe"), TrainingOptions(epochs=1, device="cpu"))
    assert xe.outputs(None, torch.arange(4)) == (None, None, None)


def test_lr_schedules_are_factors_of_the_step():
    from anyteach.core.optim import lr_factor

    constant = lr_factor("constant", 100)
    assert [constant(s) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    warm = lr_factor("cosine", 100, warmup_steps=10)
    assert [warm(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert warm(10) == 1.0 and abs(warm(55) - 0.5) < 1e-12 and 0 < warm(99) < 0.001
    values = [warm(s) for s in range(10, 100)]
    assert values == sorted(values, reverse=True)


def test_a_cosine_run_ends_at_a_small_lr_and_moves_less_than_a_constant_one(tiny_zoo, tiny_data, tmp_path):
    from anyteach import transfer

    def moved(schedule: str) -> float:
        run = transfer(
            tiny_zoo["mlp"],
            None,
            tiny_data,
            "xe",
            tmp_path / schedule,
            epochs=2,
            batch_size=128,
            lr=3e-3,
            optimizer="adamw",
            lr_schedule=schedule,
            progress=False,
        )
        before, after = load_model(tiny_zoo["mlp"]).state_dict(), run.load_student().net.state_dict()
        return sum(float((after[k] - before[f"net.{k}"]).abs().sum()) for k in after)

    assert 0 < moved("cosine") < moved("constant")


def test_a_config_of_an_older_anyteach_without_a_new_option_is_the_same_run(tiny_zoo, tiny_data, tmp_path):
    import json

    from anyteach import transfer

    out = tmp_path / "run"
    options = {"epochs": 1, "batch_size": 128, "lr": 1e-3, "optimizer": "adamw", "progress": False}
    first = transfer(tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], tiny_data, "kl+dp", out, **options)
    config = json.loads((out / "config.json").read_text())
    for key in ("lr_schedule", "warmup_epochs"):  # as written before these options existed
        config["training"].pop(key)
    (out / "config.json").write_text(json.dumps(config))
    again = transfer(tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], tiny_data, "kl+dp", out, **options)
    assert again.final == first.final


def test_every_row_says_how_much_there_was_to_take(tiny_zoo, tiny_data, tmp_path):
    import pytest

    from anyteach import predict, transfer

    options = {"epochs": 1, "batch_size": 128, "lr": 1e-3, "optimizer": "adamw", "progress": False}
    ranked = sorted(tiny_zoo.values(), key=lambda ref: predict(ref, tiny_data).accuracy)
    student, teacher = ranked[0], ranked[-1]  # the weakest student next to the strongest teacher
    run = transfer(student, teacher, tiny_data, "kl+dp", tmp_path / "dp", **options)
    baseline = transfer(student, teacher, tiny_data, "ensemble", tmp_path / "ens", progress=False)
    final = run.final
    assert final["ensemble_maxconf_acc"] == pytest.approx(baseline.final["student_acc"])  # the paper's ensemble
    s0, t = predict(student, tiny_data), predict(teacher, tiny_data)
    mean = ((s0.logits.softmax(1) + t.logits.softmax(1)) / 2).argmax(1)
    assert final["ensemble_acc"] == pytest.approx(100.0 * (mean == s0.labels).float().mean().item())
    assert final["ensemble_delta"] == pytest.approx(final["ensemble_acc"] - final["student_acc_before"])
    assert final["ensemble_delta"] > 0  # a weak student next to a strong teacher: much to take
    assert final["transfer_efficiency"] == pytest.approx(100.0 * final["transfer_delta"] / final["ensemble_delta"])
    assert all(row["ensemble_delta"] == final["ensemble_delta"] for row in run.history)
    xe = transfer(student, None, tiny_data, "xe", tmp_path / "xe", **options)
    assert xe.final["ensemble_acc"] is None and xe.final["transfer_efficiency"] is None
