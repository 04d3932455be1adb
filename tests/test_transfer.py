"""Transfer engine end to end on the tiny zoo: run directory, metrics, resume, validation, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from anyteach import build_classifier, load_model, predict, save_model
from anyteach.cli import app
from anyteach.core.errors import AnyteachError
from anyteach.methods import METHODS
from anyteach.training.transfer import TransferResult, transfer

FAST = {"epochs": 2, "batch_size": 128, "lr": 1e-3, "optimizer": "adamw", "progress": False}
ROW_KEYS = {
    "epoch",
    "student_acc",
    "student_acc_before",
    "teacher_acc",
    "transfer_delta",
    "knowledge_gain",
    "knowledge_loss",
    "transfer_rate",
    "gain_count",
    "loss_count",
    "p_gain",
    "p_loss",
}


def _weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _same_weights(a, b) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _without_timings(history):
    return [{k: v for k, v in row.items() if not k.startswith("seconds")} for row in history]


@pytest.fixture(scope="module")
def dropout_student(tiny_data, tmp_path_factory):
    """A small MLP with dropout, briefly trained: its training depends on the global RNG."""
    torch.manual_seed(3)
    model = build_classifier("mlp", name="mlp_dropout", num_classes=10, width=48, depth=2, dropout=0.2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(3):
        for x, y, _ in tiny_data.loader("train", batch_size=128, shuffle=True, epoch=epoch):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return str(save_model(model.eval(), tmp_path_factory.mktemp("models") / "mlp_dropout.safetensors"))


def test_kl_dp_run_writes_a_complete_run_directory(tiny_zoo, tiny_data, tmp_path):
    out = tmp_path / "run"
    result = transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], tiny_data, "kl+dp", out, control=False, **FAST)
    assert result.finished and result.run_dir == out  # (its control, compared in final.json: test_verdict.py)
    for name in ("config.json", "metrics.jsonl", "student.safetensors", "student.json", "final.json"):
        assert (out / name).exists(), name
    assert not (out / "checkpoint.pt").exists()  # a finished run drops its optimiser checkpoint (keep_checkpoints)
    assert [row["epoch"] for row in result.history] == [0, 1, 2]
    assert all(ROW_KEYS <= set(row) for row in result.history)
    first = result.history[0]
    assert first["transfer_delta"] == first["knowledge_gain"] == first["knowledge_loss"] == 0.0
    assert first["student_acc"] == pytest.approx(predict(tiny_zoo["mlp"], tiny_data).accuracy)
    assert first["teacher_acc"] == pytest.approx(predict(tiny_zoo["gru_chunk4"], tiny_data).accuracy)
    final = result.final
    assert final == json.loads((out / "final.json").read_text()) == result.history[-1]
    assert [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] == result.history
    assert final["transfer_delta"] == pytest.approx(final["student_acc"] - final["student_acc_before"])
    assert 0 < final["routed_to_teacher"] < 100
    assert sum(final["routing"].values()) == pytest.approx(100.0)
    assert set(final["top_p_improvement"]) == {"2", "5", "20", "50"}
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "kl+dp" and config["training"]["epochs"] == 2
    assert config["method_options"] == {"temperature": 1.0, "top_k": None, "alpha": 1.0}
    # the exported student is a model reference that reproduces the final accuracy
    student = load_model(out / "student.safetensors")
    assert student.info.extra["transfer"]["method"] == "kl+dp"
    assert predict(student, tiny_data).accuracy == pytest.approx(final["student_acc"])
    assert TransferResult.load(out).final == final


def test_finished_run_is_returned_without_training_and_a_different_config_is_refused(tiny_zoo, tiny_data, tmp_path):
    out = tmp_path / "run"
    first = transfer(tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], tiny_data, "kl", out, **FAST)
    calls = []
    again = transfer(
        tiny_zoo["mlp_narrow"],
        tiny_zoo["mlp"],
        tiny_data,
        "kl",
        out,
        on_epoch=calls.append,
        **{**FAST, "device": "cpu", "eval_batch_size": 256},
    )  # settings that do not change results
    assert calls == [] and again.final == first.final
    with pytest.raises(AnyteachError, match="different configuration.*training.lr"):
        transfer(tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], tiny_data, "kl", out, **{**FAST, "lr": 5e-4})
    replaced = transfer(
        tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], tiny_data, "kl", out, overwrite=True, **{**FAST, "lr": 5e-4}
    )
    assert replaced.config["training"]["lr"] == 5e-4


@pytest.mark.parametrize("case", ["kl+dp", "xekl+mcl", "crd-augment-dropout", "kl+dp-warmup-cosine"])
def test_a_resumed_run_ends_bitwise_equal_to_an_uninterrupted_one(case, tiny_zoo, tiny_data, dropout_student, tmp_path):
    method, student, extra = {
        "kl+dp": ("kl+dp", tiny_zoo["mlp"], {}),
        "xekl+mcl": ("xekl+mcl", tiny_zoo["cnn_small_sgd"], {"mcl_interpolation": 0.8}),
        "crd-augment-dropout": ("crd", dropout_student, {"augment": True, "crd_negatives": 64}),
        "kl+dp-warmup-cosine": ("kl+dp", tiny_zoo["mlp"], {"lr_schedule": "cosine", "warmup_epochs": 0.5}),
    }[case]
    options = {**FAST, "epochs": 3, **extra}
    full = transfer(student, tiny_zoo["gru_chunk4"], tiny_data, method, tmp_path / "full", **options)
    part = transfer(
        student, tiny_zoo["gru_chunk4"], tiny_data, method, tmp_path / "part", stop_after_epoch=1, **options
    )
    assert not part.finished and part.final is None
    assert (tmp_path / "part" / "checkpoint.pt").exists() and not (tmp_path / "part" / "final.json").exists()
    assert [row["epoch"] for row in TransferResult.load(tmp_path / "part").history] == [0, 1]
    resumed = transfer(student, tiny_zoo["gru_chunk4"], tiny_data, method, tmp_path / "part", **options)
    assert resumed.finished
    assert _same_weights(full.student_path, resumed.student_path)
    assert _without_timings(full.history) == _without_timings(resumed.history)
    assert not _same_weights(full.student_path, student)  # it did train


def test_a_run_killed_by_an_exception_resumes_to_the_same_weights(tiny_zoo, tiny_data, tmp_path):
    options = {**FAST, "epochs": 3}
    full = transfer(
        tiny_zoo["mlp_narrow"], tiny_zoo["cnn_small_sgd"], tiny_data, "kl+dp-u", tmp_path / "full", **options
    )

    def crash(history):
        if history[-1]["epoch"] == 2:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        transfer(
            tiny_zoo["mlp_narrow"],
            tiny_zoo["cnn_small_sgd"],
            tiny_data,
            "kl+dp-u",
            tmp_path / "part",
            on_epoch=crash,
            **options,
        )
    resumed = transfer(
        tiny_zoo["mlp_narrow"], tiny_zoo["cnn_small_sgd"], tiny_data, "kl+dp-u", tmp_path / "part", **options
    )
    assert _same_weights(full.student_path, resumed.student_path)


def test_mcl_with_interpolation_one_exports_the_initial_student(tiny_zoo, tiny_data, tmp_path):
    result = transfer(
        tiny_zoo["mlp"],
        tiny_zoo["gru_chunk4"],
        tiny_data,
        "xekl+mcl",
        tmp_path / "run",
        mcl_interpolation=1.0,
        mcl_period=1,
        **FAST,
    )
    assert _same_weights(result.student_path, tiny_zoo["mlp"])
    assert result.final["transfer_delta"] == 0.0
    assert result.final["routing"]["skipped"] > 0  # the teacher's negative flips got no KL


@pytest.mark.parametrize("method", ["self", "kl"])
def test_distilling_from_itself_leaves_accuracy_unchanged(method, tiny_zoo, tiny_data, tmp_path):
    teacher = tiny_zoo["gru_chunk4"] if method == "kl" else None
    result = transfer(tiny_zoo["gru_chunk4"], teacher, tiny_data, method, tmp_path / "run", **FAST)
    assert abs(result.final["transfer_delta"]) <= 1.0
    assert result.final["knowledge_gain"] <= 1.0 and result.final["knowledge_loss"] <= 1.0


def test_cached_and_live_teacher_outputs_train_the_same_student(tiny_zoo, tiny_data, tmp_path):
    args = (tiny_zoo["mlp"], tiny_zoo["cnn_small_sgd"], tiny_data, "kl+dp")
    cached = transfer(*args, tmp_path / "cached", **FAST)
    live = transfer(*args, tmp_path / "live", cache_teacher_outputs=False, **FAST)
    a, b = _weights(cached.student_path), _weights(live.student_path)
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    assert cached.final["routed_to_teacher"] == pytest.approx(live.final["routed_to_teacher"], abs=0.5)


def test_ensemble_needs_no_training(tiny_zoo, tiny_data, tmp_path):
    result = transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], tiny_data, "ensemble", tmp_path / "run", **FAST)
    assert result.student_path is None and not (tmp_path / "run" / "student.safetensors").exists()
    s, t = predict(tiny_zoo["mlp"], tiny_data), predict(tiny_zoo["gru_chunk4"], tiny_data)
    teacher_wins = t.probabilities().amax(1) > s.probabilities().amax(1)
    expected = torch.where(teacher_wins, t.predicted, s.predicted)
    assert result.final["student_acc"] == pytest.approx(100.0 * (expected == s.labels).float().mean().item())
    assert result.final["routed_to_teacher"] == pytest.approx(100.0 * teacher_wins.float().mean().item())
    assert [row["epoch"] for row in result.history] == [0]


def test_several_teachers_route_per_candidate(tiny_zoo, tiny_data, tmp_path):
    result = transfer(
        tiny_zoo["mlp_narrow"],
        [tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]],
        tiny_data,
        "kl+dp",
        tmp_path / "run",
        **{**FAST, "epochs": 1},
    )
    routing = result.final["routing"]
    assert set(routing) == {"frozen", "teacher1", "teacher2", "mixed", "skipped"}
    assert routing["teacher1"] > 0 and routing["teacher2"] > 0
    assert len(result.final["teacher_accs"]) == 2
    assert result.final["teacher_acc"] == max(result.final["teacher_accs"])


def test_xe_needs_no_teacher_and_reports_no_teacher_metrics(tiny_zoo, tiny_data, tmp_path):
    result = transfer(tiny_zoo["mlp_narrow"], None, tiny_data, "xe", tmp_path / "run", **{**FAST, "epochs": 1})
    assert result.final["teacher_acc"] is None and result.final["transfer_rate"] is None
    assert "routing" not in result.final and result.final["train_loss_ce"] > 0


def test_eval_every_measures_the_chosen_epochs_and_the_last(tiny_zoo, tiny_data, tmp_path):
    result = transfer(
        tiny_zoo["mlp_narrow"],
        tiny_zoo["mlp"],
        tiny_data,
        "kl",
        tmp_path / "run",
        **{**FAST, "epochs": 3, "eval_every": 2},
    )
    assert [row["epoch"] for row in result.history] == [0, 2, 3]


@pytest.fixture(scope="module")
def five_class_model(tmp_path_factory):
    model = build_classifier("mlp", name="five", num_classes=5, width=8, depth=1)
    return str(save_model(model, tmp_path_factory.mktemp("five") / "five.safetensors"))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"method": "nope"}, "unknown method 'nope'"),
        ({"lr": -0.1}, "lr=-0.1"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": -2.0}, "temperature"),
        ({"epoch": 3}, "unknown option 'epoch'"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"batch_size": 0}, "batch_size"),
        ({"mcl_period": 2}, "does not apply to method 'kl'"),
        ({"teacher": None}, "needs a teacher"),
        ({"teacher": "two"}, "takes one teacher"),
        ({"teacher": "five"}, "has 5 classes but dataset"),
        ({"student": "five", "method": "xe", "teacher": None}, "has 5 classes but dataset"),
    ],
)
def test_bad_options_fail_before_any_work(kwargs, fragment, tiny_zoo, tiny_data, five_class_model, tmp_path):
    args = {"student": tiny_zoo["mlp"], "teacher": tiny_zoo["gru_chunk4"], "method": "kl", **kwargs}
    models = {"two": [tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]], "five": five_class_model}
    args = {k: models.get(v, v) if isinstance(v, str) else v for k, v in args.items()}
    out = tmp_path / "run"
    options = {k: v for k, v in FAST.items() if k not in kwargs}
    with pytest.raises(AnyteachError, match=fragment):
        transfer(args.pop("student"), args.pop("teacher"), tiny_data, args.pop("method"), out, **args, **options)
    assert not out.exists()


def test_the_student_argument_is_not_modified(tiny_zoo, tiny_data, tmp_path):
    student = load_model(tiny_zoo["mlp"])
    before = {k: v.clone() for k, v in student.state_dict().items()}
    transfer(student, tiny_zoo["gru_chunk4"], tiny_data, "kl+dp", tmp_path / "run", **{**FAST, "epochs": 1})
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_transfer_end_to_end(tiny_zoo, tiny_data, tmp_path):
    out = tmp_path / "cli-run"
    runner = CliRunner()
    args = [
        "transfer",
        "--student",
        tiny_zoo["mlp_narrow"],
        "--teacher",
        tiny_zoo["mlp"],
        "--data",
        tiny_data.ref,
        "--method",
        "kl+dp",
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--optimizer",
        "adamw",
        "--lr",
        "1e-3",
        "--option",
        "temperature=2",
        "-o",
        str(out),
        "--quiet",
    ]
    result = runner.invoke(app, args + ["--json"])
    assert result.exit_code == 0, result.output
    final = json.loads(result.output)
    assert final == json.loads((out / "final.json").read_text())
    assert json.loads((out / "config.json").read_text())["method_options"]["temperature"] == 2.0
    table = runner.invoke(app, args)  # the same command again: the finished run, shown as a table
    assert table.exit_code == 0 and "transfer delta" in table.output
    assert load_model(out / "student.safetensors").num_classes == 10


def test_cli_methods_lists_every_preset():
    result = CliRunner().invoke(app, ["methods", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list(METHODS)
    table = CliRunner().invoke(app, ["methods"])
    assert table.exit_code == 0 and "kl+dp" in table.output and "mcl_interpolation" in table.output


def test_cli_user_error_is_one_line_with_status_2(tiny_zoo, tiny_data, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "anyteach",
            "transfer",
            "--student",
            tiny_zoo["mlp"],
            "--teacher",
            tiny_zoo["mlp"],
            "--data",
            tiny_data.ref,
            "--method",
            "kl",
            "--temperature",
            "0",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "temperature" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
