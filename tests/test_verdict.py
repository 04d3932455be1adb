"""One transfer, one verdict: a transfer runs its method's strongest no-teacher controls with its own
training options (reusing them across teachers), compares the students sample by sample, and ends with a
line saying whether the teacher added anything; without a control it says the number is no transfer claim.
With no method named, the method is chosen by the data the user has, and said."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from anyteach import AnyteachError, load_dataset, load_model, predict, transfer
from anyteach.analysis.metrics import mcnemar_p_values
from anyteach.training.transfer import default_method

FAST = {"epochs": 1, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3, "progress": False}
CALIB = "mnist1d:size=2000,eval=500,seed=0,calib=400"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anyteach", *args], capture_output=True, text=True, env=dict(os.environ), timeout=600
    )


def test_a_transfer_is_compared_with_its_strongest_control_sample_by_sample(tiny_zoo, tiny_data, tmp_path):
    result = transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], tiny_data, "kl+dp", tmp_path / "run", **FAST)
    control = result.control
    # kl+dp reads the transfer labels: its controls are self and xe, run with the run's own options
    assert [c["method"] for c in control["candidates"]] == ["self", "xe"]
    assert control["method"] == max(control["candidates"], key=lambda c: c["transfer_delta"])["method"]
    mine = predict(result.load_student(), tiny_data).correct
    from anyteach.core.io import cache_dir
    from anyteach.training.transfer import TransferResult

    best = next(c for c in control["candidates"] if c["method"] == control["method"])
    control_run = TransferResult.load(cache_dir() / "runs" / best["run"])  # keyed by its configuration: reusable
    assert control_run.config["training"] == result.config["training"]  # paired: the same budget, lr, schedule
    theirs = predict(control_run.load_student(), tiny_data).correct
    better, worse = int((mine & ~theirs).sum()), int((theirs & ~mine).sum())
    assert (control["samples_better"], control["samples_worse"]) == (better, worse)
    assert control["delta_beyond_control"] == pytest.approx(result.final["transfer_delta"] - best["transfer_delta"])
    assert (control["p_better"], control["p_worse"]) == mcnemar_p_values(better, worse)
    on_disk = json.loads((tmp_path / "run" / "final.json").read_text())
    assert on_disk["control"] == control and on_disk["verdict"] == result.verdict
    assert (
        result.verdict.startswith(f"Δ {result.final['transfer_delta']:+.2f} pp") and control["method"] in result.verdict
    )
    assert "<table>" in result._repr_html_() and result.verdict in str(result)


def test_the_control_is_reused_for_another_teacher(tiny_zoo, tiny_data, tmp_path):
    first = transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], tiny_data, "kl+dp", tmp_path / "a", **FAST)
    runs = [c["run"] for c in first.control["candidates"]]
    from anyteach.core.io import cache_dir

    stamps = {r: (cache_dir() / "runs" / r / "final.json").stat().st_mtime_ns for r in runs}
    second = transfer(tiny_zoo["mlp"], tiny_zoo["cnn_small_sgd"], tiny_data, "kl+dp", tmp_path / "b", **FAST)
    assert [c["run"] for c in second.control["candidates"]] == runs
    assert {r: (cache_dir() / "runs" / r / "final.json").stat().st_mtime_ns for r in runs} == stamps


def test_without_a_control_delta_is_said_to_be_no_claim(tiny_zoo, tiny_data, tmp_path):
    result = transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], tiny_data, "kl", tmp_path / "run", control=False, **FAST)
    assert result.control is None and "not a transfer claim" in result.verdict
    plain = transfer(tiny_zoo["mlp"], None, tiny_data, "xe", tmp_path / "xe", **FAST)
    assert plain.control is None and "itself a no-teacher control" in plain.verdict


def test_the_default_method_follows_the_data():
    plain = load_dataset("mnist1d:size=2000,eval=500,seed=0")
    assert default_method(plain, ["t"])[0] == "kl+dp"
    assert default_method(load_dataset(CALIB), ["t"])[0] == "pl+ens+wise"
    assert default_method(load_dataset(CALIB + ",fresh=600"), ["t"])[0] == "pl+ens+xetrain+wise"
    with pytest.raises(AnyteachError, match="give a teacher"):
        default_method(plain, [])


def test_the_cli_ends_with_the_verdict_and_runs_a_presets_control_from_the_same_file(tiny_zoo, tmp_path):
    common = ("--epochs", "1", "--batch-size", "128", "--optimizer", "adamw", "--lr", "1e-3", "--quiet")
    proc = run_cli(
        "transfer", "--student", tiny_zoo["mlp"], "--teacher", tiny_zoo["gru_chunk4"], "--data", CALIB, *common,
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("verdict: Δ") and "no-teacher control" in last
    assert "method: pl+ens+wise" in proc.stderr  # chosen by the data (a calib split), and said
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        f"student: {tiny_zoo['mlp']}\nteacher: {tiny_zoo['gru_chunk4']}\ndata: {CALIB}\nname: pl+ens+wise\n"
    )
    control = run_cli(
        "transfer", "--config", str(run_file), "--method", "self+xe+wise", *common, "--out", str(tmp_path / "c")
    )
    assert control.returncode == 0, control.stderr
    assert "takes no teacher: the run file's teacher is not used" in control.stderr


def test_a_student_at_chance_stops_the_transfer_with_its_likely_cause(tiny_zoo, tiny_data, tmp_path):
    """A real model fed its data with the labels in another order: the label order is named."""
    order = torch.roll(torch.arange(10), 1)
    splits = {
        "train": torch.utils.data.TensorDataset(tiny_data.inputs("train"), order[tiny_data.labels("train")]),
        "eval": torch.utils.data.TensorDataset(tiny_data.inputs("eval"), order[tiny_data.labels("eval")]),
    }
    from anyteach import build_classifier
    from anyteach.zoo._train import fit  # the zoo's own recipe: a model that is right most of the time
    from anyteach.zoo.recipe import TrainRecipe

    torch.manual_seed(0)
    model = build_classifier("mlp", num_classes=10)
    fit(model, tiny_data, TrainRecipe(epochs=30, lr=3e-3))
    assert predict(model, tiny_data, cache=False).accuracy > 40
    with pytest.raises(AnyteachError, match="at chance .* Likely cause: label order"):
        transfer(model, tiny_zoo["gru_chunk4"], splits, "kl+dp", tmp_path / "run", **FAST)
    assert not (tmp_path / "run").exists()
    weak = load_model(tiny_zoo["mlp"])
    result = transfer(weak, tiny_zoo["gru_chunk4"], tiny_data, "kl", tmp_path / "ok", control=False, **FAST)
    assert result.finished
