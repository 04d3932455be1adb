"""What leaves anyteach with a model: a `config.json` that plain timm rebuilds the model from
(`timm.create_model("local-dir:DIR", pretrained=True)`, offline) with the input size, pooling and
label names the model really has; a model card that names the teachers and the data by name, the
method, Δ and Δ beyond the no-teacher control with its test, and nothing from the user's file
system; and `anyteach push --dry-run`, which writes the folder a push would upload."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anyteach import save_model, timm_classifier, transfer
from anyteach.models.hub import HUB_FILES, model_card, public_text, stage_push
from anyteach.models.references import Classifier, load_model

from .conftest import TINY_DATA

NAMES = ["circle", "square", "triangle", "cross"]
RESNET_W8 = {"channels": (8, 16, 32, 64), "stem_width": 8}


def at_size(model: Classifier, size: int) -> Classifier:
    """The model with the input size it is trained at (as the glyphs zoo and a 32 px user model have)."""
    p = dataclasses.replace(model.info.preprocessing, input_size=(3, size, size), crop_pct=1.0)
    info = dataclasses.replace(model.info, preprocessing=p, class_names=list(NAMES))
    return Classifier(model.net, info)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess whose output is a pipe (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "anyteach", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    "name, kwargs, size",
    [
        ("resnet10t", RESNET_W8, 32),  # timm's default is 176 px (pool 6x6): the config must say 32 px (1x1)
        ("resnet10t", RESNET_W8, 64),
        ("test_vit", {"img_size": 32}, 32),
    ],
)
def test_plain_timm_rebuilds_the_model_from_its_folder_with_identical_logits(name, kwargs, size, tmp_path):
    import timm
    from timm.data import resolve_data_config

    torch.manual_seed(0)
    model = at_size(timm_classifier(name, num_classes=len(NAMES), **kwargs), size)
    save_model(model, tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["label_names"] == NAMES
    assert config["pretrained_cfg"]["input_size"] == [3, size, size]

    net = timm.create_model(f"local-dir:{tmp_path / 'saved'}", pretrained=True).eval()
    assert net.pretrained_cfg["label_names"] == NAMES
    data_config = resolve_data_config({}, model=net)  # what timm's own validate.py and a user's script use
    assert tuple(data_config["input_size"]) == (3, size, size) and data_config["crop_pct"] == 1.0
    x = torch.rand(3, 3, size, size)
    mean = torch.tensor(data_config["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(data_config["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        assert torch.equal(net((x - mean) / std), model(x))
        features = net.forward_features(torch.zeros(1, 3, size, size))
    if features.dim() == 4:  # a feature map: the pooled size is the real one, not the 176 px default's
        assert config["pretrained_cfg"]["pool_size"] == list(features.shape[-2:])
        assert config["global_pool"] == "avg"
    else:
        assert "pool_size" not in config["pretrained_cfg"] and config["global_pool"] == "token"


def test_measuring_the_pool_size_leaves_the_model_as_it_was(tmp_path):
    torch.manual_seed(0)
    model = at_size(timm_classifier("resnet10t", num_classes=len(NAMES), **RESNET_W8), 32)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    save_model(model, tmp_path / "saved")
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no batch-norm statistic moved


def test_a_sidecar_with_the_wrong_number_of_class_names_is_refused(tmp_path):
    from anyteach.core.errors import AnyteachError

    torch.manual_seed(0)
    weights = save_model(at_size(timm_classifier("test_vit", num_classes=4, img_size=32), 32), tmp_path / "m")
    sidecar = json.loads(weights.with_suffix(".json").read_text())
    assert load_model(weights).info.class_names == NAMES
    weights.with_suffix(".json").write_text(json.dumps({**sidecar, "class_names": NAMES[:3]}))
    with pytest.raises(AnyteachError, match="'class_names' must be 4 strings, one per class"):
        load_model(weights)


def test_public_text_cuts_paths_to_their_last_part_and_leaves_names_and_urls():
    assert public_text("imagefolder:/home/me/photos/glyphs32") == "imagefolder:glyphs32"
    assert public_text("imagefolder:/home/me/photos/,fraction=0.1") == "imagefolder:photos,fraction=0.1"
    assert public_text("timm:resnet10t@/data/w.safetensors?img_size=32") == "timm:resnet10t@w.safetensors?img_size=32"
    assert public_text("~/models/student.safetensors") == "student.safetensors"
    assert public_text("glyphs:train=4000,eval=2000,calib=1000") == "glyphs:train=4000,eval=2000,calib=1000"
    assert public_text("see https://huggingface.co/org/model") == "see https://huggingface.co/org/model"
    assert public_text("zoo:glyphs@1/levit_d64") == "zoo:glyphs@1/levit_d64"


CONTROL = {
    "method": "self+xe+wise",
    "transfer_delta": 0.67,
    "delta_beyond_control": 0.06,
    "samples_better": 14,
    "samples_worse": 12,
    "p_better": 0.42,
    "p_worse": 0.71,
    "teacher_added": False,
}


def sidecar_of(tmp_path: Path, **made) -> dict:
    torch.manual_seed(0)
    model = at_size(timm_classifier("resnet10t", num_classes=len(NAMES), **RESNET_W8), 32)
    transfer_info = {
        "method": "pl+ens+wise",
        "student": "timm:resnet10t@0123456789abcdef",
        "teachers": ["fedcba9876543210"],
        "student_name": "my_resnet",
        "teacher_names": ["levit_d96"],
        "data": f"imagefolder:{tmp_path / 'photos' / 'glyphs32'}",
        "data_name": "glyphs32",
        "transfer_delta": 0.73,
        **made,
    }
    weights = save_model(model, tmp_path / "student.safetensors", eval_acc=90.12, transfer=transfer_info)
    return json.loads(weights.with_suffix(".json").read_text())


def test_the_card_names_teachers_data_method_delta_and_the_control_with_its_test(tmp_path):
    verdict = "the teacher added +0.06 pp beyond self+xe+wise (p = 0.42): noise; the control explains the gain"
    card = model_card(sidecar_of(tmp_path, control=CONTROL, verdict=verdict), "me/glyphs-student")
    assert "| method | `pl+ens+wise` |" in card
    assert "| teachers | `levit_d96` |" in card and "fedcba9876543210" not in card  # by name, not by hash
    assert "| student before transfer | `my_resnet` |" in card
    assert "| data | `imagefolder:glyphs32` |" in card and str(tmp_path) not in card
    assert "| Δ accuracy vs the original student | +0.73 pp |" in card
    assert "| no-teacher control | `self+xe+wise`: Δ +0.67 pp |" in card
    assert "| Δ beyond the control | +0.06 pp (paired test over the eval samples: 14 better, 12 worse" in card
    assert "p = 0.42 that it is better, 0.71 that it is worse" in card
    assert "| the teacher added knowledge beyond the control | no |" in card
    assert f"**Verdict:** {verdict}" in card
    assert "| classes | 4 (circle, square, triangle, cross) |" in card and "| input size | 3×32×32 |" in card
    assert "not a transfer claim" not in card


def test_a_card_without_a_control_says_that_delta_alone_is_no_transfer_claim(tmp_path):
    card = model_card(sidecar_of(tmp_path, control=None), "me/glyphs-student")
    assert "| no-teacher control | none was run |" in card
    assert "No no-teacher control was run with this transfer, so the Δ above is not a transfer claim" in card
    assert "Δ beyond the control" not in card and "**Verdict:**" not in card


def test_a_card_of_a_model_trained_without_a_teacher_says_it_is_a_control(tmp_path):
    card = model_card(sidecar_of(tmp_path, method="xe", teachers=[], teacher_names=[]), "me/xe-student")
    assert "| teachers | none |" in card and "| method | `xe` |" in card
    assert "| no-teacher control | this model was trained without a teacher: it is one |" in card
    assert "not a transfer claim" not in card


def test_push_dry_run_writes_the_upload_folder_without_a_path_of_the_users(tiny_zoo, tmp_path):
    """A real transfer of the tiny zoo (its models are files in a temporary folder), pushed with
    --dry-run through the CLI: the folder holds the four hub files; nothing in them names a local path."""
    result = transfer(
        tiny_zoo["mlp_narrow"],
        tiny_zoo["mlp"],
        TINY_DATA,
        "kl",
        tmp_path / "run",
        epochs=1,
        batch_size=256,
        lr=1e-3,
        optimizer="adamw",
        progress=False,
    )
    work = tmp_path / "work"
    work.mkdir()
    student = work / "student.safetensors"  # copied out of its run directory: the card comes from the sidecar
    shutil.copyfile(result.student_path, student)
    shutil.copyfile(result.student_path.with_suffix(".json"), student.with_suffix(".json"))
    proc = run_cli("push", str(student), "me/tiny-student", "--dry-run", cwd=work)
    assert proc.returncode == 0, proc.stderr
    folder = work / "hub-me--tiny-student"
    assert "dry run: wrote hub-me--tiny-student" in proc.stdout and "nothing was uploaded" in proc.stdout
    assert sorted(p.name for p in folder.iterdir()) == sorted(HUB_FILES)
    assert HUB_FILES == ("README.md", "anyteach.json", "config.json", "model.safetensors")
    card = (folder / "README.md").read_text()
    assert "| teachers | `mlp` |" in card and "| student before transfer | `mlp_narrow` |" in card
    assert f"| data | `{TINY_DATA}` |" in card and "| method | `kl` |" in card
    assert f"| Δ accuracy vs the original student | {result.final['transfer_delta']:+.2f} pp |" in card
    control = result.final["control"]  # a transfer runs its no-teacher control unless told not to
    assert f"| no-teacher control | `{control['method']}`: Δ {control['transfer_delta']:+.2f} pp |" in card
    assert f"| Δ beyond the control | {control['delta_beyond_control']:+.2f} pp" in card
    assert f"**Verdict:** {result.final['verdict']}" in card and "not a transfer claim" not in card
    sidecar = json.loads((folder / "anyteach.json").read_text())
    assert sidecar["class_names"][:3] == ["zero", "one", "two"]  # the data's class names, in label order
    assert json.loads((folder / "config.json").read_text())["label_names"] == sidecar["class_names"]
    for path in folder.iterdir():
        if path.suffix in (".md", ".json"):
            text = path.read_text()
            for private in (str(tmp_path), os.environ["ANYTEACH_CACHE"], str(Path.home())):
                assert private not in text, (path.name, private)

    # again into a named folder: replaced in place (an earlier dry run), never over other files
    proc = run_cli("push", str(result.student_path), "me/tiny-student", "--dry-run", "--out", str(folder))
    assert proc.returncode == 0 and str(folder) in proc.stdout, proc.stderr
    (work / "mine").mkdir()
    (work / "mine" / "notes.txt").write_text("keep me")
    proc = run_cli("push", str(result.student_path), "me/tiny-student", "--dry-run", "--out", str(work / "mine"))
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    assert "holds other files than a dry run's (e.g. notes.txt)" in proc.stderr
    assert (work / "mine" / "notes.txt").read_text() == "keep me"
    assert not [p for p in work.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_stage_push_checks_the_repository_name_first(tmp_path):
    from anyteach.core.errors import AnyteachError

    with pytest.raises(AnyteachError, match="bad hub repository"):
        stage_push(tmp_path / "missing.safetensors", "no-owner", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_version_comes_from_the_package():
    import anyteach

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"anyteach {anyteach.__version__}"


def test_the_dry_run_folder_of_a_timm_model_is_itself_a_model_reference(tmp_path):
    torch.manual_seed(0)
    model = at_size(timm_classifier("resnet10t", num_classes=len(NAMES), **RESNET_W8), 32)
    weights = save_model(model, tmp_path / "student.safetensors")
    folder = stage_push(weights, "me/glyphs-student", tmp_path / "hub")
    assert "`anyteach info hf-hub:me/glyphs-student`" in (folder / "README.md").read_text()
    again = load_model(folder)  # as a download of the repository would be
    assert again.info.class_names == NAMES and again.info.preprocessing.input_size == (3, 32, 32)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
