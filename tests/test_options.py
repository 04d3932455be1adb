"""Options are declared once (`anyteach.core.options`) and that declaration drives the API's validation,
the study definition's validation and the CLI's flags."""

from __future__ import annotations

import dataclasses
import math

import pytest
from typer.testing import CliRunner

from anyteach import AnyteachError, TrainingOptions
from anyteach.cli import app
from anyteach.core.options import METHOD_OPTIONS, TRAINING_OPTIONS, Option
from anyteach.methods import METHODS, resolve_method_options
from anyteach.study.driver import build_study_spec, load_study_spec
from anyteach.training.transfer import resolve_run_options


def test_training_options_are_the_declared_fields_with_their_defaults():
    assert set(TRAINING_OPTIONS) == {f.name for f in dataclasses.fields(TrainingOptions)}
    defaults = TrainingOptions()
    for name, option in TRAINING_OPTIONS.items():
        assert getattr(defaults, name) == option.default and option.help
    assert TRAINING_OPTIONS["lr"].optional and TRAINING_OPTIONS["epochs"].type is int
    assert TRAINING_OPTIONS["augment"].type is bool and TRAINING_OPTIONS["device"].type is str


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_everywhere(value):
    with pytest.raises(AnyteachError, match="weight_decay=.*finite"):
        TrainingOptions(weight_decay=value)
    with pytest.raises(AnyteachError, match="temperature=.*finite"):
        resolve_method_options("kl", {"temperature": value})
    with pytest.raises(AnyteachError, match="'recipe'.*lr=.*finite"):
        load_study_spec({"models": "mnist1d", "methods": ["kl"], "recipe": {"lr": value}})


def test_one_validation_serves_the_api_and_the_study():
    bad = {"temperature": 0.0}
    with pytest.raises(AnyteachError) as api:
        resolve_run_options("kl", bad)
    with pytest.raises(AnyteachError) as study:
        load_study_spec({"models": "mnist1d", "methods": [{"name": "kl", "options": bad}]})
    assert str(api.value) in str(study.value)
    training, method = resolve_run_options("xekl+mcl", {"batch_size": 128, "alpha": 0.5})
    assert training.lr == METHODS["xekl+mcl"].base_lr * 128 / 256 and method["alpha"] == 0.5


def test_presets_keep_method_options_and_training_defaults_apart():
    for preset in METHODS.values():
        assert set(preset.defaults) <= set(preset.option_names) <= set(METHOD_OPTIONS)
        assert preset.base_lr > 0


def test_every_declared_option_is_a_flag_of_transfer_and_a_recipe_flag_of_study():
    runner = CliRunner()
    transfer_help = runner.invoke(app, ["transfer", "--help"], env={"COLUMNS": "200"}).output
    study_help = runner.invoke(app, ["study", "--help"], env={"COLUMNS": "200"}).output
    for option in [*TRAINING_OPTIONS.values(), *METHOD_OPTIONS.values()]:
        assert option.flag in transfer_help
        if not option.per_run:  # a study sets the run seed from `--seeds`; its pair draw is `--pair-seed`
            assert option.flag in study_help
    assert "Passes over the transfer split" in transfer_help  # the declared help text


def test_a_declared_option_given_as_a_study_flag_lands_in_the_recipe(tmp_path):
    # the CLI maps flags to `build_study_spec(recipe=...)`; a method option goes only to the methods using it
    spec = build_study_spec(models="mnist1d", methods=["kl", "xe"], recipe={"temperature": 2.0, "epochs": 1})
    from anyteach.study.driver import run_options

    assert run_options(spec.methods[0], spec.recipe) == {"temperature": 2.0, "epochs": 1}
    assert run_options(spec.methods[1], spec.recipe) == {"epochs": 1}


def test_an_option_describes_its_own_error():
    option = Option("size", int, 1, "a size", lambda v: v >= 1, ">= 1")
    assert option.validate(3.0) == 3 and option.flag == "--size"
    with pytest.raises(AnyteachError, match=r"option size=0 of thing 'x' is out of range: it must be >= 1"):
        option.validate(0, "of thing 'x'")
    with pytest.raises(AnyteachError, match=r"option size=True must be an int"):
        option.validate(True)
