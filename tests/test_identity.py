"""Identity is content: a study's run key holds the models' weight digests and the data's manifest,
an image folder's identity is a manifest of its files (path, class, size, time; contents with
`verify=1`), so overwriting a model file, or editing, relabelling or swapping images, invalidates
exactly what depends on it and is never answered from a stale cache or store row."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from anyteach import load_dataset, load_model, predict, save_model, timm_classifier
from anyteach.study.driver import run_study

from .conftest import TINY_DATA

RECIPE = {"epochs": 1, "batch_size": 256, "optimizer": "adamw", "lr": 1e-3}


def test_overwriting_a_model_file_reruns_exactly_its_runs_and_says_so(tiny_zoo, tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("mlp", "gru_chunk4"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(Path(tiny_zoo[name]).with_suffix(suffix), models / f"{name}{suffix}")
    a, b = str(models / "mlp.safetensors"), str(models / "gru_chunk4.safetensors")
    spec = {
        "models": [a, b],
        "data": TINY_DATA,
        "methods": ["kl", "xe"],
        "recipe": RECIPE,
        "pairs": {"students": [a], "teachers": [b]},
    }
    first = run_study(spec, tmp_path / "study", progress=False)
    assert (first.finished, first.skipped) == (2, 0)
    again = run_study(spec, tmp_path / "study", progress=False)
    assert (again.finished, again.skipped, again.changed) == (0, 2, [])
    # the teacher's file now holds other weights (another architecture's sidecar and weights)
    for suffix in (".safetensors", ".json"):
        shutil.copy(Path(tiny_zoo["cnn_small_sgd"]).with_suffix(suffix), models / f"gru_chunk4{suffix}")
    changed = run_study(spec, tmp_path / "study", progress=True)
    assert (changed.finished, changed.skipped) == (1, 1)  # the kl run re-runs; the xe control did not read b
    assert len(changed.changed) == 1 and b in changed.changed[0] and "weights" in changed.changed[0]
    assert f"model {b} changed" in capsys.readouterr().err
    from anyteach.study.store import load_runs

    runs = load_runs(tmp_path / "study")
    assert len(runs) == 2 and set(runs.teacher_name.dropna()) - {""} == {"cnn_small_sgd"}


@pytest.fixture
def image_root(tmp_path) -> Path:
    """2 classes x 6 images of 16x16 (train and val), a class's colour plus noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, colour in enumerate(((200, 40, 40), (40, 40, 200))):
            (tmp_path / "imgs" / split / f"c{c}").mkdir(parents=True)
            for i in range(6):
                pixels = np.clip(np.array(colour) + rng.normal(0, 60, (16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(tmp_path / "imgs" / split / f"c{c}" / f"{i}.png")
    return tmp_path / "imgs"


def _swap_classes(root: Path) -> None:
    a, b, t = root / "val" / "c0", root / "val" / "c1", root / "val" / "tmp"
    a.rename(t)
    b.rename(a)
    t.rename(b)


def test_swapping_or_touching_images_changes_exactly_their_splits_identity(image_root):
    data = load_dataset(f"imagefolder:{image_root}")
    eval_before, train_before = data.split_identity("eval"), data.split_identity("transfer")
    _swap_classes(image_root)  # same counts, same names: the old identity (path, classes, counts) was blind
    swapped = load_dataset(f"imagefolder:{image_root}")
    assert swapped.split_identity("eval") != eval_before and swapped.split_identity("transfer") == train_before
    verified = load_dataset(f"imagefolder:{image_root},verify=1").split_identity("eval")
    some = image_root / "val" / "c0" / "0.png"
    os.utime(some, ns=(some.stat().st_atime_ns, some.stat().st_mtime_ns + 10**9))  # touched, same bytes
    assert load_dataset(f"imagefolder:{image_root}").split_identity("eval") != swapped.split_identity("eval")
    assert load_dataset(f"imagefolder:{image_root},verify=1").split_identity("eval") == verified
    some.write_bytes((image_root / "val" / "c0" / "1.png").read_bytes())  # replaced by another image
    assert load_dataset(f"imagefolder:{image_root},verify=1").split_identity("eval") != verified


def test_predictions_after_a_swap_are_those_of_a_fresh_copy_not_the_cache(image_root, tmp_path):
    torch.manual_seed(0)
    net = timm_classifier("test_byobnet", num_classes=2)
    model = load_model(str(save_model(net.eval(), tmp_path / "m.safetensors")))
    before = predict(model, load_dataset(f"imagefolder:{image_root}"), "eval")
    _swap_classes(image_root)
    after = predict(model, load_dataset(f"imagefolder:{image_root}"), "eval")
    copy = tmp_path / "copy"
    shutil.copytree(image_root, copy)
    fresh = predict(model, load_dataset(f"imagefolder:{copy}"), "eval")
    assert torch.allclose(after.logits, fresh.logits) and torch.equal(after.labels, fresh.labels)
    assert not torch.allclose(after.logits, before.logits)  # other images at each position: not the stale cache


def test_a_study_names_the_data_whose_files_changed(tmp_path):
    from anyteach.study.driver import ModelEntry, StudyPlan, content_changes
    from anyteach.study.store import StudyStore

    model = ModelEntry("m.safetensors", "m", "mlp", 10, identity="aaaa")
    with StudyStore(tmp_path) as store:
        store.add_models([model.__dict__])
        store.set_meta("data_identities", '{"imagefolder:/d": "old", "mnist1d": "same"}')
        plan = StudyPlan(None, [model], [], [], {"imagefolder:/d": "new", "mnist1d": "same"})
        notes = content_changes(store, plan)
    assert len(notes) == 1 and notes[0].startswith("data imagefolder:/d changed since the last run")
