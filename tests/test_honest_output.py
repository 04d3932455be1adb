"""Output a user can trust and read in a log: presets run with their own recipe (shown by `anyteach
methods`, overridden by the user), a run that changed nothing says so and the study summary counts
such runs, a study says when zoo models meet another draw of the data or a recipe cuts the data,
progress lines inside an epoch when the output is not a terminal, tables not cut at 80 columns,
exact accuracies, no "-0.000"."""

from __future__ import annotations

import io
import json
import math

from typer.testing import CliRunner

from anyteach.cli import app
from anyteach.methods import TEACHING_RECIPE, preset_recipe
from anyteach.training.run_notes import DID_NOT_MOVE, KEPT_ORIGINAL, note_kind, run_note
from anyteach.training.transfer import ConsoleReporter, resolve_run_options
from tests.conftest import TINY_DATA


def test_presets_carry_their_recipe_and_the_user_overrides_it():
    training, _ = resolve_run_options("pl+ens+wise", {})
    assert (training.optimizer, training.lr, training.lr_schedule) == ("adamw", 1e-3, "cosine")
    training, _ = resolve_run_options("pl+ens+wise", {"lr": 5e-4, "optimizer": "sgd"})
    assert (training.optimizer, training.lr, training.lr_schedule) == ("sgd", 5e-4, "cosine")
    training, _ = resolve_run_options("kl", {"batch_size": 128})  # the paper's: base lr x batch / 256, SGD
    assert (training.optimizer, training.lr, training.lr_schedule) == ("sgd", 5e-5, "constant")
    assert preset_recipe("pl+ens+wise") == TEACHING_RECIPE
    rows = json.loads(CliRunner().invoke(app, ["methods", "--json"]).stdout)
    assert {r["name"]: r["recipe"] for r in rows}["pl+ens+wise"] == TEACHING_RECIPE
    assert {r["name"]: r["recipe"] for r in rows}["xekl+mcl"]["lr"] == "0.01 x batch_size / 256"


def test_note_kinds_of_runs_that_changed_nothing():
    moved = {"gain_count": 3, "loss_count": 1}
    assert note_kind(moved, trains=True) is None
    assert note_kind({"gain_count": 0, "loss_count": 0}, trains=True) == DID_NOT_MOVE
    assert note_kind({"gain_count": 0, "loss_count": 0}, trains=False) is None  # the ensemble baseline
    assert note_kind({"gain_count": 0, "loss_count": 0, "wise_alpha": 0.0}, trains=True) == KEPT_ORIGINAL
    assert note_kind({**moved, "wise_alpha": 0.4}, trains=True) is None
    line = run_note({"gain_count": 0, "loss_count": 0, "wise_alpha": 0.0}, True, 40, 1.25e-5, TEACHING_RECIPE)
    assert "α = 0" in line and "40 steps at lr 1.25e-05" in line and "optimizer adamw, lr 0.001" in line


def test_a_run_that_does_not_move_says_so_and_the_study_counts_it(tiny_zoo, tmp_path):
    from anyteach import run_study
    from anyteach.report.aggregate import summarize

    result = CliRunner().invoke(
        app,
        [
            "transfer",
            "--student",
            tiny_zoo["mlp"],
            "--method",
            "xe",
            "--data",
            TINY_DATA,
            "--epochs",
            "1",
            "--lr",
            "1e-12",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "note: the student did not move" in result.stderr and "steps at lr 1e-12" in result.stderr

    study = {
        "models": [tiny_zoo["mlp"], tiny_zoo["mlp_narrow"]],
        "data": TINY_DATA,
        "methods": ["xe"],
        "recipe": {"epochs": 1, "lr": 1e-12},
    }
    run_study(study, tmp_path / "study", progress=False)
    assert "changed nothing: 2 did not move the student" in summarize(tmp_path / "study").status_line()


def test_a_study_says_when_zoo_models_meet_another_draw_or_a_recipe_cuts_the_data(tiny_zoo):
    from anyteach.study.notices import study_notices
    from anyteach.study.spec import load_study_spec

    other_draw = load_study_spec({"models": "mnist1d@1", "data": "mnist1d", "methods": ["xe"]})
    (notice,) = study_notices(other_draw)
    assert "mnist1d@1" in notice and "never saw" in notice and "data: mnist1d:" in notice
    assert study_notices(load_study_spec({"models": "mnist1d@1", "methods": ["xe"]})) == []
    cut = load_study_spec(
        {
            "models": [tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]],
            "data": TINY_DATA,
            "methods": ["xe"],
            "recipe": "paper-imagenet",
        }
    )
    assert any("fraction 0.1" in n for n in study_notices(cut))


def test_progress_lines_inside_an_epoch_when_the_output_is_a_log():
    from rich.console import Console

    log = io.StringIO()
    reporter = ConsoleReporter("kl: s <- t", console=Console(file=log, width=80), every_steps=2, every_seconds=1e9)
    reporter.start(epochs=2, steps_per_epoch=3, history=[{"epoch": 0, "student_acc": 50.0}])
    for _ in range(6):
        reporter.step()
    reporter.close()
    lines = [line for line in log.getvalue().splitlines() if "step " in line]
    assert [line.split(",")[0].strip() for line in lines] == [
        "step 2/6 (epoch 1",
        "step 4/6 (epoch 2",
        "step 6/6 (epoch 2",
    ]


def test_tables_in_a_log_are_not_cut_at_80_columns(tiny_zoo, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "transfer",
            "--student",
            tiny_zoo["mlp_narrow"],
            "--teacher",
            tiny_zoo["mlp"],
            "--method",
            "kl",
            "--data",
            TINY_DATA,
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout and "knowledge gain / loss %" in result.stdout


def test_accuracies_are_exact_and_entropy_is_never_negative_zero():
    import torch

    from anyteach.analysis.complementarity import _concentration
    from anyteach.analysis.metrics import flip_entropy
    from anyteach.data.predictions import Predictions

    labels = torch.arange(40) % 4
    predicted = labels.clone()
    predicted[0] = (predicted[0] + 1) % 4
    logits = torch.nn.functional.one_hot(predicted, 4).float()
    assert Predictions(logits, labels).accuracy == 97.5  # 39 / 40, not 97.50000238418579
    assert math.copysign(1.0, flip_entropy([7, 0, 0])) == 1.0
    for count, classes in ((1, 3), (7, 3)):  # the histogram path (count < classes) and the sorting path
        per_class = torch.zeros(classes, 2, 2, dtype=torch.int64)
        per_class[0, 0, 1] = count  # every positive flip of the pair in one class
        entropy, _, _ = _concentration(per_class, [50.0])
        assert f"{float(entropy[0, 1]):.3f}" == "0.000" and math.copysign(1.0, float(entropy[0, 1])) == 1.0
