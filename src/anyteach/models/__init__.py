"""Models: what a user hands over (a reference string or an object) resolved to a `Classifier`.

A classifier carries its metadata (`ModelInfo`: classes, label names, preprocessing, family,
parameters). `references` holds the reference kinds (`timm:`, `zoo:`, `hf-hub:`, files) and safe
weight loading; `architectures` the built-in MNIST-1D networks; `hub` the folder a student is
pushed to the Hugging Face hub as.

May import: `core`.
"""

from .references import (
    Classifier,
    ModelInfo,
    Preprocessing,
    build_classifier,
    count_parameters,
    display_name,
    hub_config,
    hub_config_path,
    load_model,
    load_saved,
    load_weights_into,
    parse_model_args,
    read_weights,
    register_reference_kind,
    save_model,
    timm_classifier,
    timm_family,
)

__all__ = [
    "Classifier",
    "ModelInfo",
    "Preprocessing",
    "build_classifier",
    "count_parameters",
    "display_name",
    "hub_config",
    "hub_config_path",
    "load_model",
    "load_saved",
    "load_weights_into",
    "parse_model_args",
    "read_weights",
    "register_reference_kind",
    "save_model",
    "timm_classifier",
    "timm_family",
]
