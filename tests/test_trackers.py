"""`--log tensorboard|wandb|mlflow`: one tracker run per transfer run, named after the pair and the
method, with the configuration and every evaluated epoch's metrics, read back offline from what each
tool wrote (TensorBoard event files, a W&B offline run, an MLflow file store). A tracker whose
package is absent skips its test; the CLI refuses it with one line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from anyteach import transfer
from anyteach.core.errors import AnyteachError
from anyteach.core.trackers import check_trackers, scalar_metrics
from tests.conftest import TINY_DATA

FAST = {"epochs": 2, "batch_size": 256, "lr": 1e-3, "optimizer": "adamw", "progress": False}


def test_tensorboard_event_files_hold_every_epoch_and_the_config(tiny_zoo, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = transfer(
        tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], TINY_DATA, "kl", tmp_path / "run", log=["tensorboard"], **FAST
    )
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert "student_acc" in events.Tags()["scalars"]
    accs = events.Scalars("student_acc")
    assert [e.step for e in accs] == [0, 1, 2]
    assert [round(e.value, 4) for e in accs] == [round(row["student_acc"], 4) for row in result.history]
    texts = {tag: events.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]}
    assert any("mlp_narrow <- mlp: kl" in text for text in texts.values())
    assert any('"method": "kl"' in text for text in texts.values())


def test_wandb_offline_run_is_named_after_the_pair_and_method(tiny_zoo, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB__SERVICE_WAIT", "300")  # W&B's local service starts slowly on a loaded machine
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    result = transfer(tiny_zoo["mlp_narrow"], tiny_zoo["mlp"], TINY_DATA, "kl", tmp_path / "run", log=["wandb"], **FAST)
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
    assert [row["_step"] for row in history] == [0, 1, 2]
    assert [row["student_acc"] for row in history] == pytest.approx([row["student_acc"] for row in result.history])
    assert history[-1]["student_acc"] == pytest.approx(result.final["student_acc"])


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
    result = transfer(tiny_zoo["mlp_narrow"], None, TINY_DATA, "xe", tmp_path / "run", log=["mlflow"], **FAST)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("anyteach")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "mlp_narrow: xe" and run.info.status == "FINISHED"
    assert run.data.params["method"] == "xe" and run.data.params["training.epochs"] == "2"
    history = client.get_metric_history(run.info.run_id, "transfer_delta")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2]
    assert sorted(history, key=lambda m: m.step)[-1].value == pytest.approx(result.final["transfer_delta"])


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
