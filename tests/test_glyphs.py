"""The glyphs image dataset and its timm zoo: the generator (determinism, balance, disjoint splits,
variation), export as an image folder read back by `imagefolder:`, one zoo member trained for a
step and its saved weights loaded by plain timm. The full zoo build is not part of the suite."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from anyteach import load_dataset, load_model
from anyteach.core.errors import AnyteachError
from anyteach.data.glyph_images import GLYPH_CLASSES, augment_images, generate_glyphs
from anyteach.models.references import save_model
from anyteach.zoo import get_zoo
from anyteach.zoo._train import fit
from anyteach.zoo.build import new_member_model

SMALL = "glyphs:train=240,eval=120,calib=60,fresh=96,seed=5"


@pytest.fixture(scope="module")
def small():
    return load_dataset(SMALL)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(r) for r in x.flatten(1).numpy()}


def test_generator_is_deterministic_per_seed_and_stream():
    a, la = generate_glyphs(50, seed=3)
    b, lb = generate_glyphs(50, seed=3)
    assert a.dtype == torch.uint8 and a.shape == (50, 3, 32, 32)
    assert torch.equal(a, b) and torch.equal(la, lb)
    c, _ = generate_glyphs(50, seed=4)
    d, _ = generate_glyphs(50, seed=3, stream=1)
    assert not torch.equal(a, c) and not torch.equal(a, d)


def test_labels_are_balanced():
    for n in (120, 125, 2501):
        _, labels = generate_glyphs(n, seed=0)
        counts = torch.bincount(labels, minlength=len(GLYPH_CLASSES))
        assert len(counts) == len(GLYPH_CLASSES) >= 10
        assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == n


def test_splits_are_disjoint_and_sized(small):
    sizes = {"train": 240, "eval": 120, "calib": 60, "transfer": 96}
    seen: list[set[bytes]] = []
    for split, n in sizes.items():
        x = small.inputs(split)
        assert len(x) == n == small.size(split)
        rows = _rows(x)
        assert len(rows) == n  # no image twice within a split
        assert all(not (rows & other) for other in seen), f"{split} shares an image with another split"
        seen.append(rows)
    assert small.has_split("calib") and small.split_identity("transfer").endswith("fresh-96")
    assert not load_dataset("glyphs:train=24,eval=12,calib=0").has_split("calib")


def test_images_of_one_class_vary_in_shape_not_only_colour():
    x, y = generate_glyphs(240, seed=1)
    grey = x.float().mean(1)  # colour removed
    same = grey[y == 0]
    centred = same - same.mean((1, 2), keepdim=True)
    spread = (centred[:, None] - centred[None]).abs().mean((2, 3))
    off_diagonal = spread[~torch.eye(len(same), dtype=torch.bool)]
    assert float(off_diagonal.min()) > 1.0  # every two images of a class differ, even in grey


def test_augmentation_is_batched_and_seeded():
    x, _ = generate_glyphs(8, seed=0)
    a = augment_images(x, torch.Generator().manual_seed(1), shift=0.1, rotate=0.2, noise=0.02)
    b = augment_images(x, torch.Generator().manual_seed(1), shift=0.1, rotate=0.2, noise=0.02)
    assert a.shape == x.shape and a.dtype == torch.float32 and torch.equal(a, b)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert not torch.allclose(a, x.float() / 255, atol=0.05)


def test_bad_glyphs_references_are_refused():
    with pytest.raises(AnyteachError, match="unknown option 'size'"):
        load_dataset("glyphs:size=10")
    with pytest.raises(AnyteachError, match="train >= 12"):
        load_dataset("glyphs:train=5")
    with pytest.raises(AnyteachError, match="exclude each other"):
        load_dataset("glyphs:fresh=10,fraction=0.5")


def test_export_reads_back_through_imagefolder(small, tmp_path):
    out = tmp_path / "glyphs"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "anyteach",
            "data",
            "export",
            "glyphs:train=48,eval=24,calib=12,seed=5",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    assert sorted(p.name for p in out.iterdir()) == ["calib", "train", "val"]
    folder = load_dataset(f"imagefolder:{out}")
    memory = load_dataset("glyphs:train=48,eval=24,calib=12,seed=5")
    assert folder.class_names == [f"{i:02d}_{name}" for i, name in enumerate(memory.class_names)]
    assert folder.has_split("calib")
    member = new_member_model(get_zoo("glyphs").member("resnet10t_w8"), memory)
    for split in ("train", "eval", "calib"):
        x, y, _ = next(
            iter(folder.loader(split, batch_size=100, num_workers=0, preprocessing=member.info.preprocessing))
        )
        # files are written in split order, class by class: the same multiset of (image, label)
        got = sorted((bytes(r), int(lbl)) for r, lbl in zip(x.flatten(1).numpy(), y))
        want = sorted(
            (bytes(r), int(lbl)) for r, lbl in zip(memory.inputs(split).flatten(1).numpy(), memory.labels(split))
        )
        assert got == want  # PNG is lossless and a 32-px model's transform neither resizes nor crops
    result = subprocess.run(
        [sys.executable, "-m", "anyteach", "data", "export", "glyphs", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "exists" in result.stderr


def test_zoo_recipe_is_diverse_and_every_member_builds():
    zoo = get_zoo("glyphs")
    assert len(zoo.members) >= 8
    archs = {m.architecture.removeprefix("timm:") for m in zoo.members}
    assert {next(a for a in archs if a.startswith(f)) for f in ("resnet", "mobilenetv3", "levit")}
    assert len({m.recipe.optimizer for m in zoo.members}) == 2
    assert any(m.recipe.augment for m in zoo.members) and not all(m.recipe.augment for m in zoo.members)
    assert all(m.recipe.clean_epochs for m in zoo.members if m.recipe.augment)
    data = load_dataset("glyphs:train=24,eval=12,calib=0")
    x, _, _ = next(iter(data.loader("eval", batch_size=4)))
    families = set()
    for m in zoo.members:
        model = new_member_model(m, data).eval()
        with torch.no_grad():
            assert model(x).shape == (4, len(GLYPH_CLASSES))
        assert model.info.preprocessing.input_size == (3, 32, 32)
        families.add(model.info.family)
    assert families == {"cnn", "transformer"}
    assert get_zoo("glyphs", 1).data.endswith(",seed=1")


def test_member_trains_a_step_and_plain_timm_loads_it(small, tmp_path):
    import timm
    from safetensors.torch import load_file

    member = get_zoo("glyphs").member("levit_d64_aug")
    recipe = dataclasses.replace(member.recipe, epochs=1, batch_size=120, warmup_epochs=0)
    model = new_member_model(member, small)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    fit(model, small, recipe)  # 2 steps, augmented
    after = model.net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    path = save_model(model, tmp_path / "vit.safetensors")

    meta = json.loads(path.with_suffix(".json").read_text())
    arch = meta["architecture"].removeprefix("timm:")
    plain = timm.create_model(arch, num_classes=meta["num_classes"], **meta["arch_kwargs"])
    plain.load_state_dict(load_file(str(path)))
    plain.eval()
    x = small.inputs("eval")[:16]
    p = meta["preprocessing"]
    normalised = (x.float() / 255 - torch.tensor(p["mean"]).view(1, 3, 1, 1)) / torch.tensor(p["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.eval()(x)
        assert torch.allclose(plain(normalised), expected, atol=1e-5)
        assert torch.allclose(load_model(path)(x), expected, atol=1e-5)


def test_export_writes_the_draw_a_zoo_was_trained_on_when_asked_and_says_which(tmp_path):
    def export(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "anyteach", "data", "export", *args], capture_output=True, text=True, timeout=600
        )

    zoo = get_zoo("glyphs", 7)
    result = export("--zoo", "glyphs@7", "--out", str(tmp_path / "zoo7"))
    assert result.returncode == 0, result.stderr
    assert f"the draw {zoo.data} (the draw zoo glyphs (seed 7) was trained on); train 4000, val 10000, calib 2000" in (
        " ".join(result.stdout.split())
    )
    assert "note:" not in result.stderr
    folder, memory = load_dataset(f"imagefolder:{tmp_path / 'zoo7'}"), load_dataset(zoo.data)
    member = new_member_model(zoo.member("resnet10t_w8"), memory)
    x, y, _ = next(
        iter(folder.loader("eval", batch_size=10000, num_workers=0, preprocessing=member.info.preprocessing))
    )
    got = sorted((bytes(r), int(label)) for r, label in zip(x.flatten(1).numpy(), y))
    want = sorted(
        (bytes(r), int(label)) for r, label in zip(memory.inputs("eval").flatten(1).numpy(), memory.labels("eval"))
    )
    assert got == want  # the very images the zoo's members were measured on

    # another draw is written as asked, but not silently
    result = export("glyphs:train=24,eval=12,calib=0,seed=7", "--out", str(tmp_path / "other"))
    assert result.returncode == 0, result.stderr
    assert "the draw glyphs:train=24,eval=12,calib=0,seed=7; train 24, val 12 images" in " ".join(result.stdout.split())
    note = " ".join(result.stderr.split())
    assert "note: this is not the draw the glyphs zoo (seed 7) was trained on" in note
    assert "anyteach data export --zoo glyphs@7 --out DIR" in note


def test_a_larger_eval_split_measures_the_built_zoo_again_without_training_it():
    from anyteach import predict
    from anyteach.zoo import build_zoo

    member = ["resnet10t_w8"]
    built = get_zoo("glyphs", seed=5, data="glyphs:train=48,eval=24,calib=12,seed=5", members=member, epochs=1)
    build_zoo(built, workers=1)
    weights = built.path("resnet10t_w8").read_bytes()
    larger = get_zoo(
        "glyphs", seed=5, data="glyphs:train=48,eval=60,calib=36,fresh=12,seed=5", members=member, epochs=1
    )
    # the same training images (each split is its own stream), so the same zoo: nothing to train
    assert torch.equal(load_dataset(built.data).inputs("train"), load_dataset(larger.data).inputs("train"))
    assert larger.directory == built.directory and larger.missing() == []
    assert larger.measured_elsewhere() == ["resnet10t_w8"]
    (row,) = build_zoo(larger, workers=1)
    assert larger.path("resnet10t_w8").read_bytes() == weights  # not trained again
    assert larger.measured_elsewhere() == []
    # another calib or fresh size measures on the same eval images: nothing to measure again
    same_eval = "glyphs:train=48,eval=60,calib=12,seed=5"
    assert get_zoo("glyphs", seed=5, data=same_eval, members=member, epochs=1).measured_elsewhere() == []
    assert abs(predict(str(larger.path("resnet10t_w8")), larger.data).accuracy - row["eval_acc"]) < 0.01
    # other training images are another zoo
    other = get_zoo("glyphs", seed=5, data="glyphs:train=60,eval=24,seed=5", members=member, epochs=1)
    assert other.directory != built.directory and other.missing() == member


def test_the_mnist1d_zoo_keeps_its_identity():
    # MNIST-1D's eval samples are held out of one generation: its whole reference names the training data
    from anyteach.core.io import text_digest

    zoo = get_zoo("mnist1d", seed=1)
    spec = json.dumps([zoo.data, [dataclasses.asdict(m) for m in zoo.members]], sort_keys=True, default=str)
    assert zoo.training_data == zoo.data and zoo.directory.name == f"mnist1d-seed1-{text_digest(spec, 8)}"
