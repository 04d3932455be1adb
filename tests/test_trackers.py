"""`--log tensorboard|wandb|mlflow`: one tracker run per transfer run, named after the pair and the
method, with the configuration, every evaluated epoch's metrics and, throttled, the per-step loss and
learning rate, read back offline from what each tool wrote (TensorBoard event files, a W&B offline
run, an MLflow file store). A tracker whose package is absent skips its test; the CLI refuses it
with one line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from anyteach import transfer
from anyteach.core.errors import AnyteachError
from anyteach.core.optim import lr_factor
from anyteach.core.trackers import STEP_EVERY, RunTrackers, check_trackers, scalar_metrics
from tests.conftest import TINY_DATA

FAST = {"epochs": 2, "batch_size": 256, "lr": 1e-3, "optimizer": "adamw", "progress": False}
STEPPED = {**FAST, "batch_size": 75, "lr_schedule": "cosine"}
"""1,500 transfer samples at batch 75: 20 optimiser steps an epoch, one per-step point (every
`STEP_EVERY` = 20 steps) at the end of each epoch, whose loss is then the epoch's mean training loss."""


def test_tensorboard_event_files_hold_every_epoch_each_steps_loss_and_lr_and_the_config(tiny_zoo, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert STEP_EVERY == 20  # what STEPPED is sized for
    result = transfer(
        tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], TINY_DATA, "kl", tmp_path / "run", log=["tensorboard"], **STEPPED
    )
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert "student_acc" in events.Tags()["scalars"]
    accs = events.Scalars("student_acc")
    assert [e.step for e in accs] == [0, 1, 2]
    assert [round(e.value, 4) for e in accs] == [round(row["student_acc"], 4) for row in result.history]
    losses = events.Scalars("step/loss")
    assert [e.step for e in losses] == [20, 40]
    assert [e.value for e in losses] == pytest.approx([row["train_loss"] for row in result.history[1:]], rel=1e-5)
    assert [e.value for e in events.Scalars("step/loss_kl")] == pytest.approx([e.value for e in losses], rel=1e-5)
    lr = lr_factor("cosine", 40)
    assert [e.value for e in events.Scalars("step/lr")] == pytest.approx([1e-3 * lr(19), 1e-3 * lr(39)], rel=1e-5)
    texts = {tag: events.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]}
    assert any("mlp_narrow <- mlp: kl" in text for text in texts.values())
    assert any('"method": "kl"' in text for text in texts.values())


def test_wandb_offline_run_is_named_after_the_pair_and_method(tiny_zoo, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB__SERVICE_WAIT", "300")  # W&B's local service starts slowly on a loaded machine
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    # first a run that cannot log in (no key, no login under HOME): W&B keeps its first settings in a process,
    # and the offline run below must still be offline
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(AnyteachError, match="--log wandb cannot start"):
        transfer(
            tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], TINY_DATA, "kl", tmp_path / "refused", log=["wandb"], **STEPPED
        )
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = transfer(
        tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], TINY_DATA, "kl", tmp_path / "run", log=["wandb"], **STEPPED
    )
    runs: list = []
    for _ in range(60):  # W&B's service process may still be writing the offline file when finish() returns
        files = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
        records = [r for f in files for r in wandb_records(f)]
        runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        if runs:
            break
        time.sleep(0.5)
    assert len(files) == 1, files
    (run,) = runs
    assert run.display_name == "mlp_narrow <- mlp: kl"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["method"] == "kl" and config["training"]["epochs"] == 2
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    epochs = [row for row in history if "epoch" in row]
    assert [row["epoch"] for row in epochs] == [0, 1, 2]
    assert [row["student_acc"] for row in epochs] == pytest.approx([row["student_acc"] for row in result.history])
    assert epochs[-1]["student_acc"] == pytest.approx(result.final["student_acc"])
    steps = [row for row in history if "optimizer_step" in row]
    assert [row["optimizer_step"] for row in steps] == [20, 40]
    assert [row["step/loss"] for row in steps] == pytest.approx([r["train_loss"] for r in result.history[1:]], rel=1e-5)
    assert [row["_step"] for row in history] == sorted(row["_step"] for row in history)  # W&B's own step only grows
    metrics = {
        r.metric.name or r.metric.glob_name: r.metric.step_metric
        for r in records
        if r.WhichOneof("record_type") == "metric"
    }
    assert metrics.get("step/*") == "optimizer_step" and metrics.get("student_acc") == "epoch"


def wandb_records(path: Path) -> list:
    """The records of a W&B run file: a 7-byte header (`:W&B`, magic, version), then LevelDB-log
    blocks of 32 KiB holding chunks `crc32 (4) | length (2, little-endian) | type (1) | data`."""
    from wandb.proto import wandb_internal_pb2

    raw, records, pending, position = path.read_bytes(), [], b"", 7
    assert raw[:4] == b":W&B"
    while position + 7 <= len(raw):
        left_in_block = 32768 - position % 32768
        if left_in_block < 7:  # block padding
            position += left_in_block
            continue
        length, kind = int.from_bytes(raw[position + 4 : position + 6], "little"), raw[position + 6]
        if kind == 0 and length == 0:
            break
        pending += raw[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_mlflow_file_store_holds_params_and_metric_history(tiny_zoo, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the file store: offline, no database
    result = transfer(tiny_zoo["mlp_narrow"], None, TINY_DATA, "xe", tmp_path / "run", log=["mlflow"], **STEPPED)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("anyteach")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "mlp_narrow: xe" and run.info.status == "FINISHED"
    assert run.data.params["method"] == "xe" and run.data.params["training.epochs"] == "2"
    history = client.get_metric_history(run.info.run_id, "transfer_delta")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2]
    assert sorted(history, key=lambda m: m.step)[-1].value == pytest.approx(result.final["transfer_delta"])
    steps = sorted(client.get_metric_history(run.info.run_id, "step/loss"), key=lambda m: m.step)
    assert [m.step for m in steps] == [20, 40]
    assert [m.value for m in steps] == pytest.approx([r["train_loss"] for r in result.history[1:]], rel=1e-5)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "step/lr")] == [20, 40]


def test_an_unknown_or_missing_tracker_is_one_clear_error(monkeypatch):
    with pytest.raises(AnyteachError, match="unknown tracker 'neptune'"):
        check_trackers(["neptune"])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(AnyteachError, match=r"pip install 'anyteach\[wandb\]'"):
        check_trackers(["wandb"])


def test_scalar_metrics_keep_finite_numbers_and_flatten_nested_rows():
    row = {
        "student_acc": 90.5,
        "gain_count": 3,
        "teacher_acc": None,
        "routing": [1, 2],
        "ok": True,
        "vs_original": {"transfer_delta": -0.5},
        "bad": float("nan"),
    }
    assert scalar_metrics(row) == {"student_acc": 90.5, "gain_count": 3.0, "vs_original/transfer_delta": -0.5}


class _Collect:
    """A tracker that keeps what it is given (`RunTrackers.opened` holds such objects)."""

    def __init__(self):
        self.points: list[tuple[int, dict[str, float]]] = []

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self.points.append((step, metrics))


def test_step_points_are_throttled_by_steps_or_seconds_and_average_the_window(tmp_path):
    import torch

    tracked = RunTrackers([], "s: xe", {}, tmp_path, every_steps=4, every_seconds=3600)
    tracked.opened = [_Collect()]
    for step in range(1, 11):
        tracked.log_step(step, {"loss_xe": torch.tensor(float(step)), "loss_kl": torch.tensor(1.0)}, 0.1 * step)
    points = tracked.opened[0].points
    assert [step for step, _ in points] == [4, 8]
    assert points[0][1] == {"step/loss": 3.5, "step/loss_xe": 2.5, "step/loss_kl": 1.0, "step/lr": pytest.approx(0.4)}
    assert points[1][1]["step/loss_xe"] == 6.5  # the mean of steps 5 to 8, not since the start
    slow = RunTrackers([], "s: xe", {}, tmp_path, every_steps=1000, every_seconds=0.0)
    slow.opened = [_Collect()]
    for step in (1, 2, 3):
        slow.log_step(step, {"loss_xe": torch.tensor(2.0)}, 0.1)
    assert [step for step, _ in slow.opened[0].points] == [1, 2, 3]  # every step once the time has passed
