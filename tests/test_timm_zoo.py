"""timm's registry as a zoo (listing from bundled metadata only, study expansion) and named recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anyteach import AnyteachError
from anyteach.cli import app
from anyteach.study.driver import build_study_spec, load_study_spec
from anyteach.zoo.timm_zoo import list_timm, timm_refs

REPO = Path(__file__).resolve().parents[1]


def test_pretrained_tags_are_listed_with_family_parameters_input_size_and_classes():
    rows = {r["name"]: r for r in list_timm("resnet18*", pretrained=True)}
    assert "resnet18.a1_in1k" in rows and all(name.startswith("resnet18") for name in rows)
    row = rows["resnet18.a1_in1k"]
    # the parameter count of torchvision's ResNet-18, counted on the meta device (no weights, no network)
    assert row == {
        "ref": "timm:resnet18.a1_in1k",
        "name": "resnet18.a1_in1k",
        "family": "cnn",
        "params": 11_689_512,
        "input_size": [3, 224, 224],
        "num_classes": 1000,
        "top1": None,
    }
    assert rows["resnet18.a3_in1k"]["input_size"] == [3, 160, 160]  # each tag's own pretrained config


def test_architectures_are_listed_without_tags_and_families_follow_the_network():
    rows = list_timm("vit_tiny_patch16_224*", pretrained=False, parameters=False)
    assert [r["name"] for r in rows] == ["vit_tiny_patch16_224"]
    assert rows[0]["family"] == "transformer" and rows[0]["params"] is None


def test_cli_zoo_list_timm_json_and_table():
    runner = CliRunner()
    result = runner.invoke(app, ["zoo", "list", "timm", "--filter", "resnet18.a*", "--pretrained", "--json"])
    assert result.exit_code == 0, result.output
    assert [r["name"] for r in json.loads(result.output)] == [
        "resnet18.a1_in1k",
        "resnet18.a2_in1k",
        "resnet18.a3_in1k",
    ]
    table = runner.invoke(app, ["zoo", "list", "timm", "--filter", "resnet18.a*", "--pretrained"])
    assert table.exit_code == 0 and "11,689,512" in table.output
    wrong = runner.invoke(app, ["zoo", "list", "mnist1d", "--filter", "x*"])
    assert wrong.exit_code != 0


def test_a_study_expands_the_timm_zoo_and_filters_to_imagenet_1k_heads():
    spec = load_study_spec({"models": "timm:resnet18.*", "data": "imagefolder:/data/imagenet", "methods": ["kl"]})
    assert "timm:resnet18.a1_in1k" in spec.models and all(m.startswith("timm:resnet18.") for m in spec.models)
    assert set(spec.models) == set(timm_refs("resnet18.*"))
    assert all(ref in timm_refs() for ref in spec.models)  # `models: timm`: every ImageNet-1k tag
    assert "timm:vit_base_patch16_224.augreg_in21k" not in timm_refs("vit_base_patch16_224.*")  # 21k classes
    with pytest.raises(AnyteachError, match="'models'.*no pretrained timm model matches 'nothing_like_this\\*'"):
        load_study_spec({"models": "timm:nothing_like_this*", "data": "mnist1d", "methods": ["kl"]})


def test_the_paper_imagenet_recipe_sets_the_protocol_and_the_ten_percent():
    spec = load_study_spec(
        {
            "models": ["timm:resnet18.a1_in1k", "timm:resnet50.a1_in1k"],
            "data": "imagefolder:/data/imagenet",
            "methods": ["kl", "xekl+mcl"],
            "recipe": "paper-imagenet",
        }
    )
    assert spec.data == "imagefolder:/data/imagenet,fraction=0.1"
    assert spec.recipe["batch_size"] == 128 and spec.recipe["epochs"] == 20 and spec.recipe["optimizer"] == "sgd"
    assert spec.recipe["lr"] is None  # lr 1e-4 x batch / 256: each method's base lr
    assert load_study_spec(spec).to_dict() == spec.to_dict()  # the resolved study round-trips
    changed = build_study_spec(
        {
            "models": ["a", "b"],
            "data": "imagefolder:/d,fraction=0.5",
            "methods": ["kl"],
            "recipe": {"base": "paper-imagenet", "epochs": 5},
        },
        recipe={"batch_size": 64},
    )
    assert changed.recipe["epochs"] == 5 and changed.recipe["batch_size"] == 64
    assert changed.data == "imagefolder:/d,fraction=0.5"  # the reference's own fraction wins
    flags = build_study_spec(
        {"models": ["a", "b"], "data": "mnist1d", "methods": ["kl"], "recipe": "paper-imagenet"}, recipe={"epochs": 2}
    )
    assert flags.recipe["epochs"] == 2 and flags.recipe["batch_size"] == 128 and flags.data == "mnist1d:fraction=0.1"
    with pytest.raises(AnyteachError, match="recipe.base.*unknown recipe 'paper-cifar'"):
        load_study_spec({"models": ["a", "b"], "data": "mnist1d", "methods": ["kl"], "recipe": "paper-cifar"})
    with pytest.raises(AnyteachError, match="batch_size"):
        load_study_spec(
            {
                "models": ["a", "b"],
                "data": "mnist1d",
                "methods": ["kl"],
                "recipe": {"base": "paper-imagenet", "batch_size": 0},
            }
        )


def test_the_imagenet_example_uses_the_named_recipe():
    spec = load_study_spec(REPO / "examples" / "study_imagenet_timm.yaml")
    assert spec.data.endswith("fraction=0.1") and spec.recipe["batch_size"] == 128 and len(spec.models) == 10


def test_the_long_teaching_example_runs_the_best_teacher_per_student():
    spec = load_study_spec(REPO / "examples" / "study_teaching_long.yaml")
    best, *controls = spec.methods
    assert (
        best.name == "pl+ens+wise" and best.teacher == "best" and {c.name for c in controls} == {"self", "self+xe+wise"}
    )
    assert spec.data.endswith("fresh=500000") and spec.recipe["epochs"] == 1
