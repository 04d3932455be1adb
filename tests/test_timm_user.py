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

from anyteach import load_model, predict, save_model, timm_classifier
from anyteach.core.errors import AnyteachError

CLASSES, SIZE = 3, 32


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anyteach", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


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


# ---------------------------------------------------------------------------------------------
# config.json: plain timm reloads a saved model


@pytest.mark.parametrize("name, kwargs", [("resnet10t", {}), ("vit_tiny_patch16_224", {"img_size": SIZE})])
def test_plain_timm_rebuilds_a_saved_model_from_its_config_json(name, kwargs, tmp_path):
    import timm
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = timm_classifier(name, num_classes=CLASSES, **kwargs)
    weights = save_model(model, tmp_path / "saved")
    config = json.loads((weights.parent / "config.json").read_text())
    assert config["architecture"] == name and config["num_classes"] == CLASSES
    assert config["model_args"] == kwargs
    assert config["pretrained_cfg"]["input_size"] == list(model.info.preprocessing.input_size)

    net = timm.create_model(
        config["architecture"],
        num_classes=config["num_classes"],
        pretrained_cfg=config["pretrained_cfg"],
        **config["model_args"],
    )
    net.load_state_dict(load_file(str(weights)))
    net.eval()
    x = torch.rand(2, *config["pretrained_cfg"]["input_size"])
    mean = torch.tensor(config["pretrained_cfg"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(config["pretrained_cfg"]["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net((x - mean) / std), model(x))
    # a file path (not a directory) gets <stem>.config.json beside <stem>.json
    other = save_model(model, tmp_path / "student.safetensors")
    assert json.loads(other.with_name("student.config.json").read_text()) == config


class LocalHub:
    """A stand-in for `huggingface_hub.HfApi`: repositories are folders under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.created: list[tuple[str, bool]] = []

    def create_repo(self, repo_id: str, private: bool = False, exist_ok: bool = False, repo_type: str = "model"):
        (self.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)
        self.created.append((repo_id, private))
        return f"http://127.0.0.1/{repo_id}"

    def upload_folder(self, repo_id: str, folder_path: str, repo_type: str = "model", commit_message: str = ""):
        import shutil

        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)
        (self.root / repo_id / ".commit").write_text(commit_message)


def test_push_uploads_the_weights_a_timm_config_and_a_model_card(tmp_path):
    import timm
    from safetensors.torch import load_file

    from anyteach.models.hub import push_to_hub

    torch.manual_seed(0)
    student = timm_classifier("vit_tiny_patch16_224", num_classes=CLASSES, img_size=SIZE)
    weights = save_model(
        student,
        tmp_path / "student.safetensors",
        eval_acc=91.25,
        transfer={
            "method": "kl+dp",
            "student": "s0",
            "teachers": ["t"],
            "data": "imagefolder:x",
            "transfer_delta": 1.5,
        },
    )
    hub = LocalHub(tmp_path / "hub")
    url = push_to_hub(weights, "someone/vit-student", private=True, api=hub)
    assert url == "http://127.0.0.1/someone/vit-student" and hub.created == [("someone/vit-student", True)]
    repo = tmp_path / "hub" / "someone" / "vit-student"
    assert sorted(p.name for p in repo.iterdir()) == [
        ".commit",
        "README.md",
        "anyteach.json",
        "config.json",
        "model.safetensors",
    ]
    card = (repo / "README.md").read_text()
    assert "library_name: timm" in card and "`kl+dp`" in card and "+1.50 pp" in card and "91.25%" in card
    config = json.loads((repo / "config.json").read_text())
    net = timm.create_model(config["architecture"], num_classes=config["num_classes"], **config["model_args"])
    net.load_state_dict(load_file(str(repo / "model.safetensors")))
    with pytest.raises(AnyteachError, match="bad hub repository"):
        push_to_hub(weights, "no-owner", api=hub)
    with pytest.raises(AnyteachError, match="not a model saved by anyteach"):
        push_to_hub(tmp_path / "missing.safetensors", "someone/x", api=hub)


# ---------------------------------------------------------------------------------------------
# One transfer from a YAML file, on the ViT, with a tracker; the flags override the file


def test_transfer_from_a_config_file_on_a_vit_with_model_arguments(vit_weights, image_root, tmp_path):
    import yaml

    teacher = timm_classifier("resnet10t", num_classes=CLASSES)
    teacher_file = tmp_path / "teacher.safetensors"
    save_file(teacher.net.state_dict(), str(teacher_file))
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        yaml.safe_dump(
            {
                "student": f"timm:vit_tiny_patch16_224@{vit_weights}?img_size={SIZE}",
                "teacher": f"timm:resnet10t@{teacher_file}",
                "data": f"imagefolder:{image_root}",
                "name": "kl",
                "options": {"epochs": 3, "batch_size": 16, "lr": 1e-3, "optimizer": "adamw", "workers": 0},
            }
        )
    )
    out = tmp_path / "run"
    done = run_cli("transfer", "--config", str(run_file), "--epochs", "1", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "kl" and config["training"]["epochs"] == 1  # the flag won
    assert config["training"]["optimizer"] == "adamw" and config["training"]["batch_size"] == 16
    assert config["student"]["name"] == "vit_tiny_patch16_224"
    student = json.loads((out / "student.json").read_text())
    assert student["preprocessing"]["input_size"] == [3, SIZE, SIZE]
    hub = json.loads((out / "student.config.json").read_text())
    assert hub["model_args"] == {"img_size": SIZE} and hub["architecture"] == "vit_tiny_patch16_224"
    assert json.loads(done.stdout)["student_acc"] == load_json_final(out)["student_acc"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("student: x\nepochs: 3\n")
    refused = run_cli("transfer", "--config", str(bad))
    assert refused.returncode == 2 and "unknown key 'epochs'" in refused.stderr


def load_json_final(run_dir: Path) -> dict:
    return json.loads((run_dir / "final.json").read_text())


def test_an_image_student_needs_data_named(vit_weights):
    done = run_cli(
        "transfer", "--student", f"timm:vit_tiny_patch16_224@{vit_weights}?img_size={SIZE}", "--method", "xe"
    )
    assert done.returncode == 2
    assert "give the data: --data" in done.stderr and "(3, 32, 32)" in done.stderr


def test_a_study_runs_on_the_vit_named_with_model_arguments(vit_weights, image_root, tmp_path):
    from anyteach import run_study
    from anyteach.report.aggregate import summarize

    teacher = timm_classifier("resnet10t", num_classes=CLASSES)
    teacher_file = tmp_path / "cnn.safetensors"
    save_file(teacher.net.state_dict(), str(teacher_file))
    vit = f"timm:vit_tiny_patch16_224@{vit_weights}?img_size={SIZE}"
    study = {
        "models": [vit, f"timm:resnet10t@{teacher_file}"],
        "data": f"imagefolder:{image_root}",
        "pairs": {"students": [vit]},
        "methods": ["kl"],
        "recipe": {"epochs": 1, "batch_size": 16, "optimizer": "adamw", "lr": 1e-3, "workers": 0},
    }
    outcome = run_study(study, tmp_path / "study", progress=False)
    assert outcome.complete and not outcome.failed
    runs = summarize(tmp_path / "study").runs
    assert list(runs["student_name"]) == ["vit_tiny_patch16_224"] and list(runs["teacher_name"]) == ["resnet10t"]
