"""The one `Registry` type behind every extension point: duplicates refused, unknown names explained."""

from __future__ import annotations

import pytest

from anyteach import AnyteachError
from anyteach.core.registry import RegistrationError, Registry
from anyteach.methods import LOSSES, METHODS, REGULARISERS, TARGET_RULES, MethodPreset, register_method
from anyteach.models.architectures import ARCHITECTURES, register_architecture


def test_a_registry_behaves_like_a_dict_and_refuses_a_taken_name():
    things: Registry[int] = Registry("thing")
    assert things.add("a", 1) == 1
    things["b"] = 2
    assert dict(things) == {"a": 1, "b": 2} and "a" in things and len(things) == 2
    assert things.get("missing") is None and things.pop("b") == 2
    with pytest.raises(RegistrationError, match="a thing named 'a' is already registered"):
        things.add("a", 3)
    assert things["a"] == 1  # the first registration stands
    with pytest.raises(AnyteachError) as error:
        things["zzz"]
    assert str(error.value) == "unknown thing 'zzz'; known: a"
    assert isinstance(error.value, KeyError)


@pytest.mark.parametrize("registry", [METHODS, TARGET_RULES, LOSSES, REGULARISERS, ARCHITECTURES])
def test_every_extension_point_is_a_registry(registry):
    assert isinstance(registry, Registry) and len(registry) > 0


def test_registering_a_built_in_name_again_fails_and_keeps_the_built_in():
    kl = METHODS["kl"]
    with pytest.raises(RegistrationError, match="method named 'kl' is already registered"):
        register_method(MethodPreset("kl", "an impostor", "teacher", "kl"))
    assert METHODS["kl"] is kl
    with pytest.raises(RegistrationError, match="architecture named 'mlp'"):

        @register_architecture("mlp", "mlp")
        class Impostor:  # noqa: F841 - never registered
            pass


def test_a_new_model_reference_kind_is_one_decorated_function():
    from anyteach import build_classifier, load_model
    from anyteach.models.references import REFERENCE_KINDS, register_reference_kind

    @register_reference_kind("test-fresh")
    def fresh(ref: str):
        return build_classifier("mlp", name=ref.partition(":")[2], width=8, depth=1)

    try:
        model = load_model("test-fresh:tiny")
        assert model.name == "tiny" and model.num_classes == 10
        assert {"timm", "zoo"} <= set(REFERENCE_KINDS)
    finally:
        REFERENCE_KINDS.pop("test-fresh")
    with pytest.raises(AnyteachError, match="unknown model reference 'test-fresh:tiny'"):
        load_model("test-fresh:tiny")


def test_every_user_facing_kind_is_a_registry_that_refuses_a_taken_name():
    from anyteach.core.registry import Registry
    from anyteach.core.trackers import TRACKERS
    from anyteach.data.references import DATASET_KINDS
    from anyteach.study.executors import EXECUTORS
    from anyteach.training.protocols import RECIPES
    from anyteach.zoo import ZOOS

    for registry, name in (
        (DATASET_KINDS, "mnist1d"),
        (ZOOS, "mnist1d"),
        (RECIPES, "paper-imagenet"),
        (EXECUTORS, "local"),
        (TRACKERS, "tensorboard"),
    ):
        assert isinstance(registry, Registry) and name in registry
        with pytest.raises(RegistrationError, match="already registered"):
            registry.add(name, registry[name])
