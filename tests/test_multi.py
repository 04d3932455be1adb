"""Multi-teacher transfer on the tiny zoo: parallel routing, sequential stages and resume, weight soups."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from anyteach import build_classifier, load_model, predict, transfer, transfer_multi
from anyteach.cli import app
from anyteach.core.errors import AnyteachError
from anyteach.methods import FROZEN, TARGET_RULES, RuleInputs
from anyteach.report.figures import multi_teacher_figures
from anyteach.training.multi_teacher import (
    MultiTransferResult,
    average_weights,
    metrics_over_epochs,
    reestimate_batchnorm,
)

# batch 150 divides the 1,500 transfer samples: every sample is routed once per epoch
FAST = {"epochs": 2, "batch_size": 150, "lr": 1e-3, "optimizer": "adamw", "progress": False}


def _same_weights(a, b) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _without_timings(history):
    return [{k: v for k, v in row.items() if not k.startswith("seconds")} for row in history]


# ---------------------------------------------------------------------------------------------
# parallel


def test_routing_picks_the_most_confident_candidate_ties_to_the_frozen_student():
    big = 5.0
    labels = torch.tensor([0, 1, 2, 3, 0])
    frozen = torch.zeros(5, 4)
    teachers = torch.zeros(2, 5, 4)
    frozen[0, 0] = big  # sample 0: only the frozen student is sure of its label
    teachers[0, 1, 1] = big  # sample 1: teacher 1
    teachers[1, 2, 2] = big  # sample 2: teacher 2
    teachers[:, 3, 3] = big  # sample 3: the teachers tie: the first one
    frozen[4, 0] = teachers[1, 4, 0] = big  # sample 4: frozen ties with teacher 2: the frozen student
    for rule in ("dp", "dp-u"):
        target = TARGET_RULES[rule].fn(RuleInputs(labels, frozen, teachers, frozen))
        assert target.routing.tolist() == [FROZEN, 1, 2, 1, FROZEN]
        candidates = torch.cat([frozen[None], teachers])
        assert torch.equal(target.logits, candidates[target.routing, torch.arange(5)])


def test_parallel_reports_per_epoch_the_share_routed_to_each_candidate(tiny_zoo, tiny_data, tmp_path):
    student, teachers = tiny_zoo["mlp_narrow"], [tiny_zoo["mlp"], tiny_zoo["cnn_small_sgd"]]
    result = transfer_multi(student, teachers, tiny_data, "kl+dp", "parallel", tmp_path / "par", **FAST)
    # the expected routing: the dp rule over the models' cached outputs on the whole transfer split
    outputs = [predict(m, tiny_data, "transfer").logits for m in [student, *teachers]]
    labels = tiny_data.labels("transfer")
    scores = torch.stack(outputs).softmax(-1).gather(2, labels.view(1, -1, 1).expand(3, -1, 1)).squeeze(2)
    choice = scores.argmax(0)
    expected = {
        name: 100.0 * (choice == k).float().mean().item() for k, name in enumerate(["frozen", "teacher1", "teacher2"])
    }
    history = result.stages[0].history
    assert [row["epoch"] for row in history] == [0, 1, 2]
    lines = (result.run_dir / "parallel" / "metrics.jsonl").read_text().splitlines()
    for row in [json.loads(line) for line in lines][1:]:
        assert {k: row["routing"][k] for k in expected} == pytest.approx(expected)
    assert result.final["teacher_accs"] == pytest.approx(result.config["teacher_accs"])
    assert result.final["transfer_delta"] == pytest.approx(result.stages[0].final["transfer_delta"])


# ---------------------------------------------------------------------------------------------
# sequential


def test_sequential_with_one_teacher_equals_the_single_teacher_run(tiny_zoo, tiny_data, tmp_path):
    single = transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], tiny_data, "kl+dp", tmp_path / "single", **FAST)
    multi = transfer_multi(
        tiny_zoo["mlp"], [tiny_zoo["gru_chunk4"]], tiny_data, "kl+dp", "sequential", tmp_path / "seq", **FAST
    )
    assert _same_weights(single.student_path, multi.student_path)
    assert multi.final["transfer_delta"] == single.final["transfer_delta"]
    stage = multi.stage_metrics[0]
    assert stage["vs_start"] == stage["vs_original"]
    assert stage["vs_original"]["transfer_delta"] == single.final["transfer_delta"]


def test_sequential_chains_stages_in_curriculum_order_and_resumes_inside_a_stage(tiny_zoo, tiny_data, tmp_path):
    student = tiny_zoo["mlp_narrow"]
    teachers = [tiny_zoo["gru_chunk4"], tiny_zoo["mlp"]]
    args = (student, teachers, tiny_data, "kl+dp", "sequential")
    full = transfer_multi(*args, tmp_path / "full", curriculum="asc", **FAST)
    accs = [predict(t, tiny_data).accuracy for t in teachers]
    assert full.config["teacher_accs"] == pytest.approx(accs)
    by_accuracy = [load_model(teachers[i]).name for i in sorted(range(2), key=accs.__getitem__)]
    assert full.config["order"] == [row["teacher"] for row in full.stage_metrics] == by_accuracy
    first, second = full.stages
    # stage 2 starts from stage 1's student: its S_frozen and optimiser are fresh
    assert second.config["student"]["identity"] == load_model(first.student_path).info.identity
    assert second.history[0]["student_acc"] == first.final["student_acc"]
    assert second.history[0]["vs_original"]["transfer_delta"] == pytest.approx(first.final["transfer_delta"])
    assert second.config["original"]["identity"] == first.config["student"]["identity"]
    # metrics against the stage's start and against the original student
    s0_acc, last = first.history[0]["student_acc"], full.stage_metrics[-1]
    assert last["vs_start"]["transfer_delta"] == pytest.approx(last["student_acc"] - first.final["student_acc"])
    assert last["vs_original"]["transfer_delta"] == pytest.approx(last["student_acc"] - s0_acc)
    assert full.final["transfer_delta"] == pytest.approx(last["vs_original"]["transfer_delta"])
    assert full.final["knowledge_gain"] == pytest.approx(last["vs_original"]["knowledge_gain"])
    curve = metrics_over_epochs(full)
    assert [(row["epoch"], row["stage"]) for row in curve] == [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2)]

    # interrupted after stage 2's first epoch (epoch 3 overall), then resumed with the same call
    part = transfer_multi(*args, tmp_path / "part", curriculum="asc", stop_after_epoch=3, **FAST)
    assert not part.finished and part.final is None and len(part.stages) == 2
    assert part.stages[0].finished and not part.stages[1].finished
    assert (tmp_path / "part" / "stage2" / "checkpoint.pt").exists()
    assert not (tmp_path / "part" / "summary.json").exists()
    assert [r["epoch"] for r in MultiTransferResult.load(tmp_path / "part").stages[1].history] == [0, 1]
    resumed = transfer_multi(*args, tmp_path / "part", curriculum="asc", **FAST)
    assert resumed.finished
    assert _same_weights(full.student_path, resumed.student_path)
    assert _without_timings(full.stages[1].history) == _without_timings(resumed.stages[1].history)
    (tmp_path / "part").rename(tmp_path / "moved")  # a run directory is self-contained
    again = MultiTransferResult.load(tmp_path / "moved")
    assert again.final == resumed.final and again.stage_metrics == resumed.stage_metrics
    assert again.student_path == tmp_path / "moved" / "stage2" / "student.safetensors"

    written = multi_teacher_figures({full.label: full, "stage 1 alone": first}, tmp_path / "fig")
    assert [p.name for p in written] == ["multi_teacher_epochs.png", "multi_teacher_comparison.png"]
    assert all(p.stat().st_size > 10_000 for p in written)


# ---------------------------------------------------------------------------------------------
# soup


def test_soup_of_one_student_is_that_student_and_reuses_the_finished_run(tiny_zoo, tiny_data, tmp_path):
    single = transfer(tiny_zoo["mlp"], tiny_zoo["cnn_small_sgd"], tiny_data, "kl+dp", **FAST)  # the run cache
    finished_at = (single.run_dir / "final.json").stat().st_mtime_ns
    soup = transfer_multi(
        tiny_zoo["mlp"], [tiny_zoo["cnn_small_sgd"]], tiny_data, "kl+dp", "soup", tmp_path / "soup", **FAST
    )
    assert soup.stages[0].run_dir == single.run_dir
    assert (single.run_dir / "final.json").stat().st_mtime_ns == finished_at  # reused, not trained again
    assert soup.student_path == tmp_path / "soup" / "soup.safetensors"
    assert _same_weights(soup.student_path, single.student_path)
    reloaded = load_model(str(soup.student_path))  # a model reference
    assert predict(reloaded, tiny_data).accuracy == pytest.approx(soup.final["student_acc"])
    assert soup.final["transfer_delta"] == single.final["transfer_delta"]


def test_soup_of_copies_is_the_same_weights_and_of_two_students_their_mean():
    torch.manual_seed(0)
    a = build_classifier("mlp", num_classes=10, width=16, depth=1)
    b = build_classifier("mlp", num_classes=10, width=16, depth=1)
    for copies in ([a, a], [a, a, a]):
        soup = average_weights(copies)
        assert all(torch.equal(v, a.state_dict()[k]) for k, v in soup.state_dict().items())
    mean = average_weights([a, b]).state_dict()
    assert all(torch.allclose(mean[k], (a.state_dict()[k] + b.state_dict()[k]) / 2) for k in mean)
    with pytest.raises(AnyteachError, match="architectures differ"):
        average_weights([a, build_classifier("mlp", num_classes=10, width=8, depth=1)])


def test_soup_reestimates_batchnorm_statistics_on_the_transfer_split(tiny_data):
    torch.manual_seed(0)
    students = [build_classifier("cnn1d", num_classes=10, channels=4, depth=2, batchnorm=True) for _ in range(2)]
    soup = average_weights(students)
    x = tiny_data.inputs("transfer")
    assert reestimate_batchnorm(soup, tiny_data, batch_size=len(x))  # one batch: exact statistics
    conv, norm = soup.net.features[0], soup.net.features[1]
    with torch.no_grad():
        h = conv(x.unsqueeze(1))
    assert torch.allclose(norm.running_mean, h.mean((0, 2)), atol=1e-5)
    assert torch.allclose(norm.running_var, h.transpose(0, 1).flatten(1).var(1), rtol=1e-4)
    assert not norm.training and norm.momentum == 0.1
    plain = build_classifier("mlp", num_classes=10, width=8, depth=1)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    assert not reestimate_batchnorm(plain, tiny_data)
    assert all(torch.equal(v, before[k]) for k, v in plain.state_dict().items())


# ---------------------------------------------------------------------------------------------
# validation and CLI


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"mode": "tree"}, "unknown mode 'tree'"),
        ({"mode": "soup", "curriculum": "asc"}, "curriculum orders the stages of the sequential mode"),
        ({"mode": "sequential", "curriculum": "random"}, "unknown curriculum"),
        ({"mode": "parallel", "method": "kl"}, "routes between teachers"),
        ({"mode": "soup", "method": "xe"}, "trains the student from a teacher"),
        ({"mode": "sequential", "epochs": -1}, "epochs=-1"),
    ],
)
def test_bad_multi_teacher_configurations_fail_before_any_work(kwargs, fragment, tiny_zoo, tiny_data, tmp_path):
    kwargs = {"method": "kl+dp", **kwargs}
    with pytest.raises(AnyteachError, match=fragment):
        transfer_multi(
            tiny_zoo["mlp"],
            [tiny_zoo["mlp_narrow"], tiny_zoo["gru_chunk4"]],
            tiny_data,
            out=tmp_path / "run",
            progress=False,
            **kwargs,
        )
    assert not (tmp_path / "run").exists()


def test_cli_multi_teacher_transfer_end_to_end(tiny_zoo, tiny_data, tmp_path):
    teachers = [tiny_zoo["mlp"], tiny_zoo["cnn_small_sgd"]]
    args = [
        "transfer",
        "--student",
        tiny_zoo["mlp_narrow"],
        "--data",
        tiny_data.ref,
        "--mode",
        "soup",
        "--out",
        str(tmp_path / "soup"),
        "--epochs",
        "1",
        "--batch-size",
        "150",
        "--optimizer",
        "adamw",
        "--lr",
        "1e-3",
        "--plots",
        str(tmp_path / "fig"),
        "--quiet",
    ]
    for teacher in teachers:
        args += ["--teacher", teacher]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "soup" in result.output and "stage" in result.output
    soup = MultiTransferResult.load(tmp_path / "soup")
    expected = average_weights([run.load_student() for run in soup.stages]).state_dict()
    weights = load_file(str(soup.student_path))
    assert all(torch.allclose(weights[k], expected[f"net.{k}"]) for k in weights)
    assert (tmp_path / "fig" / "multi_teacher_comparison.png").exists()
    bad = CliRunner().invoke(
        app, ["transfer", "--student", tiny_zoo["mlp"], "--teacher", tiny_zoo["mlp"], "--curriculum", "asc"]
    )
    assert isinstance(bad.exception, AnyteachError) and "--mode" in str(bad.exception)
