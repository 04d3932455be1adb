"""Real images end to end, offline: a small image folder generated here, two tiny timm models trained
on it (saved as model references), then `flips`, `transfer` (one process and 2-rank DDP), a 2-model
`study` and `report`; the image data path (one decode per sample per epoch, workers kept between
epochs, augmentation that follows (seed, epoch, sample) whatever the workers or ranks); and the
GPU code paths (bfloat16 autocast, channels-last, torch.compile) exercised on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from anyteach import load_dataset, load_model, predict, save_model, timm_classifier, transfer
from anyteach.core.runtime import Runtime

CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, SIZE = 4, 24, 8, 32
FAST = {
    "epochs": 1,
    "batch_size": 16,
    "eval_batch_size": 32,
    "lr": 1e-3,
    "optimizer": "adamw",
    "progress": False,
    "workers": 0,
}


def run_cli(*args: str, torchrun: bool = False) -> subprocess.CompletedProcess:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        if torchrun
        else [sys.executable]
    )
    return subprocess.run(
        [*launcher, "-m", "anyteach", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=600
    )


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """`train/<class>/*.png` and `val/<class>/*.png`: 40x48 images of a class colour with noise, and
    a bright square at a class position (learnable in a few steps, not trivially)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    colours = rng.uniform(60, 200, (CLASSES, 3))
    for split, n in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for c in range(CLASSES):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(n):
                pixels = colours[c] + rng.normal(0, 50, (40, 48, 3))
                y, x = divmod(c, 2)
                pixels[5 + 20 * y : 15 + 20 * y, 5 + 24 * x : 15 + 24 * x] = 255
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / split / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def images(image_root):
    return load_dataset(f"imagefolder:{image_root}")


@pytest.fixture(scope="module")
def image_models(images, tmp_path_factory) -> dict[str, str]:
    """A tiny CNN and a tiny ViT, at 32x32, trained for a few steps; saved model references by name."""
    out = tmp_path_factory.mktemp("image-models")
    paths = {}
    for seed, (name, kwargs) in enumerate((("test_byobnet", {}), ("test_vit", {"img_size": SIZE}))):
        torch.manual_seed(seed)
        model = timm_classifier(name, num_classes=CLASSES, **kwargs)
        model.info.preprocessing = dataclasses.replace(model.info.preprocessing, input_size=(3, SIZE, SIZE))
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for epoch in range(3):
            for x, y, _ in images.loader(
                "train",
                batch_size=16,
                shuffle=True,
                seed=seed,
                epoch=epoch,
                preprocessing=model.info.preprocessing,
                num_workers=0,
            ):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        paths[name] = str(save_model(model.eval(), out / f"{name}.safetensors"))
    return paths


# ---------------------------------------------------------------------------------------------
# the data path


def test_a_live_teacher_epoch_decodes_each_image_once_and_loaders_keep_their_workers(
    image_root, image_models, tmp_path
):
    data = load_dataset(f"imagefolder:{image_root}")  # its own dataset object: decodes counted here only
    folder = data._folders["train"]
    decodes = []
    decode = folder.loader
    folder.loader = lambda path: decodes.append(path) or decode(path)
    transfer(
        image_models["test_vit"],
        image_models["test_byobnet"],
        data,
        "kl+dp",
        tmp_path / "live",
        control=False,  # the decodes of this run alone
        cache_teacher_outputs=False,
        **{**FAST, "epochs": 2},
    )
    # the student, the frozen student and the teacher share each decoded batch
    assert len(decodes) == 2 * data.size("transfer") and len(set(decodes)) == data.size("transfer")
    preprocessing = load_model(image_models["test_vit"]).info.preprocessing
    first = data.loader("transfer", batch_size=16, preprocessing=preprocessing, num_workers=2, epoch=1)
    again = data.loader("transfer", batch_size=16, preprocessing=preprocessing, num_workers=2, epoch=2)
    assert first.loader is again.loader and first.loader.persistent_workers  # the same workers every epoch
    x, _, _ = next(iter(first))
    assert x.dtype == torch.uint8 and x.shape == (16, 3, SIZE, SIZE)  # 8-bit: a quarter of the bytes of floats


def test_augmented_batches_follow_seed_epoch_and_sample_not_workers_or_ranks(images, image_models):
    preprocessing = load_model(image_models["test_vit"]).info.preprocessing

    def batch(epoch: int, workers: int, shard=(0, 1)):
        loader = images.loader(
            "transfer",
            batch_size=16,
            shuffle=True,
            seed=3,
            epoch=epoch,
            augment=True,
            preprocessing=preprocessing,
            num_workers=workers,
            shard=shard,
            drop_last=True,
        )
        return next(iter(loader))

    x0, y0, i0 = batch(1, 0)
    x2, y2, i2 = batch(1, 2)
    assert torch.equal(x0, x2) and torch.equal(i0, i2)
    ranks = [batch(1, 0, (r, 2)) for r in (0, 1)]  # two ranks: each its half of the same batch
    assert torch.equal(torch.cat([r[0] for r in ranks]), x0) and torch.equal(torch.cat([r[2] for r in ranks]), i0)
    x_next, _, i_next = batch(2, 0)
    assert not torch.equal(i_next, i0)  # another epoch: another order
    plain = next(
        iter(
            images.loader(
                "transfer", batch_size=16, shuffle=True, seed=3, epoch=1, preprocessing=preprocessing, num_workers=0
            )
        )
    )[0]
    assert not torch.equal(plain, x0)  # augmented


# ---------------------------------------------------------------------------------------------
# end to end


def cli(*args: str) -> int:
    """`anyteach ARGS` in this process (a subprocess per command would cost seconds of imports)."""
    from anyteach.cli import main

    old = sys.argv
    sys.argv = ["anyteach", *args]
    try:
        main()
        return 0
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = old


def test_flips_transfer_ddp_study_and_report_on_real_images(image_root, image_models, tmp_path, capsys):
    data = f"imagefolder:{image_root}"
    cnn, vit = image_models["test_byobnet"], image_models["test_vit"]
    assert cli("flips", cnn, vit, "--data", data, "--json-out", str(tmp_path / "pair.json")) == 0
    pair = json.loads((tmp_path / "pair.json").read_text())
    assert pair["num_classes"] == CLASSES and 0 <= pair["positive_flips"] <= 100

    recipe = ["--epochs=2", "--batch-size=16", "--lr=1e-3", "--optimizer=adamw", "--workers=0", "--quiet", "--json"]
    capsys.readouterr()
    assert (
        cli(
            "transfer",
            "--student",
            vit,
            "--teacher",
            cnn,
            "--data",
            data,
            "--method",
            "kl+dp",
            "--out",
            str(tmp_path / "single"),
            *recipe,
        )
        == 0
    )
    one = json.loads(capsys.readouterr().out)
    ddp = run_cli(
        "transfer",
        "--student",
        vit,
        "--teacher",
        cnn,
        "--data",
        data,
        "--method",
        "kl+dp",
        "--out",
        str(tmp_path / "ddp"),
        *recipe,
        torchrun=True,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    two = json.loads(ddp.stdout)
    # the same global batches: the same accuracies and flips; losses and weights to rounding (test_ddp.py)
    assert {k: v for k, v in one.items() if not k.startswith(("seconds", "train_loss"))} == {
        k: v for k, v in two.items() if not k.startswith(("seconds", "train_loss"))
    }
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    wa = load_file(str(tmp_path / "single" / "student.safetensors"))
    wb = load_file(str(tmp_path / "ddp" / "student.safetensors"))
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4

    spec = {
        "models": [cnn, vit],
        "data": data,
        "methods": ["kl+dp", "xe"],
        "recipe": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "optimizer": "adamw", "workers": 0},
    }
    (tmp_path / "study.yaml").write_text(json.dumps(spec))  # JSON is YAML
    assert cli("study", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "study")) == 0
    assert cli("report", str(tmp_path / "study")) == 0
    assert "kl+dp" in (tmp_path / "study" / "report.md").read_text()
    assert (tmp_path / "study" / "report.html").exists()


# ---------------------------------------------------------------------------------------------
# GPU hygiene on the CPU


def test_bf16_autocast_channels_last_and_compile_run_on_the_cpu(images, image_models, tmp_path):
    cnn, vit = image_models["test_byobnet"], image_models["test_vit"]
    plain = transfer(cnn, vit, images, "kl+dp", tmp_path / "plain", **FAST)
    fast = transfer(
        cnn,
        vit,
        images,
        "kl+dp",
        tmp_path / "fast",
        amp="bf16",
        channels_last=True,
        compile=True,
        compile_backend="aot_eager",
        cache_teacher_outputs=False,
        **FAST,
    )
    assert fast.finished and fast.config["training"]["amp"] == "bf16"
    # bfloat16 changes the numbers a little (so it did run), not the outcome
    assert fast.final["train_loss"] != plain.final["train_loss"]
    assert fast.final["train_loss"] == pytest.approx(plain.final["train_loss"], rel=0.1)
    assert abs(fast.final["student_acc"] - plain.final["student_acc"]) <= 25.0
    model = load_model(cnn)
    reference = predict(model, images, cache=False, runtime=Runtime(torch.device("cpu"))).logits
    runtime = Runtime(torch.device("cpu"), amp="bf16", channels_last=True, compile=True, compile_backend="aot_eager")
    assert runtime.autocast_enabled and not Runtime(torch.device("cpu")).autocast_enabled
    logits = predict(model, images, cache=False, runtime=runtime).logits
    assert not torch.equal(logits, reference) and torch.allclose(logits, reference, atol=0.1, rtol=0.05)
    assert next(model.parameters()).device.type == "cpu" and not any(
        k.startswith("_orig_mod") for k in model.state_dict()
    )


def test_to_device_turns_8_bit_images_into_floats_in_channels_last():
    runtime = Runtime(torch.device("cpu"), channels_last=True)
    x = runtime.to_device(torch.full((2, 3, 4, 5), 255, dtype=torch.uint8))
    assert x.dtype == torch.float32 and x.max() == 1.0 and x.is_contiguous(memory_format=torch.channels_last)
    assert runtime.to_device(torch.zeros(2, 40)).shape == (2, 40)  # signals are left as they are


def test_an_old_config_with_amp_true_resumes_as_amp_auto(tmp_path):
    from anyteach.core.options import TrainingOptions
    from anyteach.training.transfer import _comparable

    assert TrainingOptions(amp=True).amp == "auto" and TrainingOptions(amp=False).amp == "off"
    config = {"student": {"ref": "s"}, "teachers": [], "data": {"ref": "d"}, "training": {"amp": True}}
    assert _comparable(config)["training"]["amp"] == "auto"
