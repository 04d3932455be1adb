"""The built-in zoo: a tiny build end to end, caching, listing, and the predictions cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from anyteach import load_model, predict
from anyteach.zoo import build_zoo, get_zoo, list_zoo, parse_zoo_ref

from .conftest import TINY_DATA, TINY_MEMBERS


def test_tiny_zoo_build_lists_and_reuses(tiny_zoo):
    zoo = get_zoo("mnist1d", data=TINY_DATA, members=TINY_MEMBERS, epochs=3)
    rows = list_zoo(zoo)
    assert [r["name"] for r in rows] == TINY_MEMBERS
    assert {r["family"] for r in rows} == {"mlp", "cnn", "rnn"}
    for r in rows:
        assert 10 < r["eval_acc"] <= 100 and r["params"] > 0 and r["plateau_delta"] is not None
    mtimes = {n: os.path.getmtime(p) for n, p in tiny_zoo.items()}
    build_zoo(zoo, workers=1)  # nothing missing: nothing retrained
    assert mtimes == {n: os.path.getmtime(p) for n, p in tiny_zoo.items()}
    # the recorded accuracy is what the saved model really scores
    mlp = load_model(tiny_zoo["mlp"])
    assert abs(predict(mlp, TINY_DATA).accuracy - mlp.info.extra["eval_acc"]) < 0.01


def test_recipe_change_gets_its_own_directory():
    a = get_zoo("mnist1d", data=TINY_DATA, members=TINY_MEMBERS, epochs=3)
    b = get_zoo("mnist1d", data=TINY_DATA, members=TINY_MEMBERS, epochs=4)
    c = get_zoo("mnist1d", seed=1)
    assert len({a.directory, b.directory, c.directory, get_zoo("mnist1d").directory}) == 4
    assert c.data == "mnist1d:seed=1" and c.refs()[0].startswith("zoo:mnist1d@1/")


def test_zoo_references_parse():
    assert parse_zoo_ref("zoo:mnist1d/cnn_bn") == ("mnist1d", 0, "cnn_bn")
    assert parse_zoo_ref("zoo:mnist1d@3/gru") == ("mnist1d", 3, "gru")


def test_full_recipe_is_diverse():
    zoo = get_zoo("mnist1d")
    assert len(zoo.members) >= 10
    assert {m.architecture for m in zoo.members} == {"mlp", "cnn1d", "gru", "transformer1d"}
    assert len({m.recipe.optimizer for m in zoo.members}) == 2
    assert any(m.recipe.augment for m in zoo.members) and not all(m.recipe.augment for m in zoo.members)


def test_predictions_are_cached_per_model_and_data(tiny_zoo, tiny_data, monkeypatch):
    model = load_model(tiny_zoo["cnn_small_sgd"])
    first = predict(model, tiny_data)
    import anyteach.data.predictions as P

    monkeypatch.setattr(P, "model_logits", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = predict(tiny_zoo["cnn_small_sgd"], TINY_DATA)
    assert torch.equal(first.logits, again.logits)
    assert first.accuracy == again.accuracy


def test_cli_zoo_list_json(tiny_zoo):
    out = subprocess.run(
        [sys.executable, "-m", "anyteach", "zoo", "list", "mnist1d", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert isinstance(json.loads(out.stdout), list)


def test_clean_epochs_turn_augmentation_off_at_the_end(tiny_data):
    """An augmented recipe whose every epoch is clean trains exactly like the unaugmented one;
    with only the last epoch clean it differs (the augmentation ran before)."""
    import dataclasses

    from anyteach.models.references import build_classifier
    from anyteach.zoo._train import TrainRecipe, fit

    def trained(recipe: TrainRecipe) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = build_classifier("mlp", width=32, depth=1)
        return fit(model, tiny_data, recipe).state_dict()

    plain = TrainRecipe(epochs=2, batch_size=256, seed=0)
    aug = dataclasses.replace(plain, augment={"shift": 3, "noise": 0.05})
    same = trained(plain)
    all_clean = trained(dataclasses.replace(aug, clean_epochs=2))
    last_clean = trained(dataclasses.replace(aug, clean_epochs=1))
    assert all(torch.equal(same[k], all_clean[k]) for k in same)
    assert not all(torch.equal(same[k], last_clean[k]) for k in same)
