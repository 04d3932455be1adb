"""What a timm user reaches for: timm model arguments in a reference (a ViT at 32 px), a student
that plain timm reloads from its `config.json`, a push to a (local stand-in of the) Hugging Face
hub, one transfer from a YAML file, and experiment trackers, all offline on tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from anyteach import load_dataset, load_model, predict, save_model, timm_classifier
from anyteach.errors import AnyteachError

CLASSES, SIZE = 3, 32


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anyteach", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """`train/`, `val/` folders of 3 classes of 36x36 images: a class colour with noise."""
    from PIL import Image

    root = tmp_path_factory.mktemp("timm_user_images")
    rng = np.random.default_rng(0)
    colours = rng.uniform(40, 215, (CLASSES, 3))
    for split, n in (("train", 16), ("val", 8)):
        for c in range(CLASSES):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(n):
                pixels = colours[c] + rng.normal(0, 40, (36, 36, 3))
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / split / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory) -> Path:
    """Raw weights of a ViT built at img_size=32 (as a timm user trains one at a small size)."""
    torch.manual_seed(0)
    vit = timm_classifier("vit_tiny_patch16_224", num_classes=CLASSES, img_size=SIZE)
    path = tmp_path_factory.mktemp("vit") / "vit32.safetensors"
    save_file(vit.net.state_dict(), str(path))
    return path


def test_a_reference_takes_timm_model_arguments_and_records_the_built_input_size(vit_weights, image_root, tmp_path):
    plain = f"timm:vit_tiny_patch16_224@{vit_weights}"
    with pytest.raises(AnyteachError, match="pos_embed"):
        load_model(plain)  # built at 224, the weights are for 32
    vit = load_model(f"{plain}?img_size={SIZE}")
    assert vit.info.preprocessing.input_size == (3, SIZE, SIZE)
    assert vit.info.arch_kwargs == {"img_size": SIZE}
    assert vit.num_classes == CLASSES
    assert predict(vit, f"imagefolder:{image_root}").logits.shape[1] == CLASSES

    # saved by anyteach, the sidecar records the size the network takes, and it loads back as it was
    saved = save_model(vit, tmp_path / "student")
    assert json.loads(saved.with_suffix(".json").read_text())["preprocessing"]["input_size"] == [3, SIZE, SIZE]
    coded = timm_classifier("vit_tiny_patch16_224", num_classes=CLASSES, img_size=SIZE)
    assert coded.info.preprocessing.input_size == (3, SIZE, SIZE)
    again = load_model(saved)
    x = torch.rand(2, 3, 36, 36)
    torch.testing.assert_close(again(x), vit(x))

    shown = run_cli("info", str(saved), "--data", f"imagefolder:{image_root}", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["preprocessing"]["input_size"] == [3, SIZE, SIZE]


def test_bad_model_arguments_are_one_clear_error(vit_weights):
    with pytest.raises(AnyteachError, match="not <name>=<value>"):
        load_model(f"timm:vit_tiny_patch16_224@{vit_weights}?img_size")
    with pytest.raises(AnyteachError, match="num_classes is read from the weights"):
        load_model(f"timm:vit_tiny_patch16_224@{vit_weights}?num_classes=3")
    with pytest.raises(AnyteachError, match="cannot create timm:vit_tiny_patch16_224"):
        load_model(f"timm:vit_tiny_patch16_224@{vit_weights}?no_such_argument=1")


def test_the_offline_message_does_not_ask_to_set_what_is_already_set(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AnyteachError) as caught:
        load_model("timm:resnet10t")
    message = str(caught.value)
    assert "HF_HUB_OFFLINE is set" in message and "set HF_HUB_OFFLINE=1" not in message
    assert "timm:resnet10t@<file>" in message
