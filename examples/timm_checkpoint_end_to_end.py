"""Your own timm model on your own images, end to end, offline.

What a timm user does with anyteach, step by step:

1. an image folder (`train/`, `val/`, `calib/` of class folders): here exported from anyteach's generated
   glyph images, in practice your own;
2. a student and two teachers trained at 32 px with a plain PyTorch loop and saved as plain state dicts
   (no anyteach involved), as you already have them;
3. the student loaded by reference: anyteach stops when the input size is missing (the model would see
   its images resized to timm's default size and be at chance) and says what to give;
4. the teachers ranked for the student before any training (`anyteach.rank_teachers`);
5. one transfer from the best-ranked teacher, with its no-teacher control and the verdict;
6. the transferred student written as a Hugging Face hub folder (`anyteach push --dry-run`) and loaded
   back with plain timm, which measures the same accuracy.

Run it as `python examples/timm_checkpoint_end_to_end.py --out /tmp/anyteach-example` (a few minutes on
a laptop's CPU); `--small` runs a smaller version (what the tests run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

import anyteach

SIZE = 32
MODELS = {  # name -> (timm architecture, its arguments): small networks, as trained at 32 px
    "student": ("resnet10t", {"stem_width": 8, "channels": [8, 16, 32, 64]}),
    "teacher_a": ("resnet10t", {"stem_width": 16, "channels": [16, 32, 64, 128]}),
    "teacher_b": ("resnet14t", {"stem_width": 8, "channels": [16, 32, 64, 128]}),
}


def reference(name: str, weights: Path, input_size: bool = True) -> str:
    """The anyteach reference of a plain state dict: architecture, weights, its arguments and input size."""
    arch, args = MODELS[name]
    query = [f"{k}={json.dumps(v).replace(' ', '')}" for k, v in args.items()]
    query += [f"input_size=3,{SIZE},{SIZE}"] if input_size else []
    return f"timm:{arch}@{weights}" + (f"?{'&'.join(query)}" if query else "")


def train(name: str, folder: Path, epochs: int, out: Path) -> Path:
    """Your own training loop: plain timm and torchvision at 32 px; saves the state dict as a .pth file."""
    arch, args = MODELS[name]
    torch.manual_seed(list(MODELS).index(name))
    net = timm.create_model(arch, num_classes=len(datasets.ImageFolder(folder / "train").classes), **args)
    mean, std = net.pretrained_cfg["mean"], net.pretrained_cfg["std"]
    augment = transforms.Compose(
        [transforms.RandomResizedCrop(SIZE, scale=(0.7, 1)), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(folder / "train", augment), batch_size=64, shuffle=True, num_workers=0
    )
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=epochs * len(loader))
    net.train()
    for _ in range(epochs):
        for x, y in loader:
            optimiser.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimiser.step()
            schedule.step()
    path = out / f"{name}.pth"
    torch.save(net.state_dict(), path)
    return path


def plain_timm_accuracy(hub_folder: Path, val: Path) -> float:
    """The accuracy plain timm measures for a hub folder: its config's transform, its weights."""
    net = timm.create_model(f"local-dir:{hub_folder}", pretrained=True).eval()
    config = timm.data.resolve_data_config({}, model=net)
    data = datasets.ImageFolder(val, timm.data.create_transform(**config))
    right = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(data, batch_size=256):
            right += int((net(x).argmax(1) == y).sum())
    return 100.0 * right / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="A new directory for everything it writes.")
    parser.add_argument("--small", action="store_true", help="Fewer images and epochs (what the tests run).")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True)
    train_n, eval_n, calib_n, epochs = (2400, 1200, 600, 8) if args.small else (6000, 4000, 2000, 20)

    # 1. an image folder (here: generated glyph images, 12 classes)
    folder = anyteach.data.export_imagefolder(
        anyteach.load_dataset(f"glyphs:train={train_n},eval={eval_n},calib={calib_n},seed=7"), out / "images"
    )

    # 2. three models trained at 32 px by your own loop, saved as plain state dicts
    weights = {name: train(name, folder, epochs, out) for name in MODELS}

    # 3. without their input size, the models would see their images resized to timm's default (176 px for
    #    resnet10t): anyteach stops and says what to give
    data = f"imagefolder:{folder}"
    teachers = [reference(name, weights[name]) for name in ("teacher_a", "teacher_b")]
    try:
        anyteach.rank_teachers(reference("student", weights["student"], input_size=False), teachers, data)
    except anyteach.AnyteachError as e:
        print(f"without the input size: {e}\n")

    # 4. the teachers ranked for the student, before any training (signals on the calib split)
    student = reference("student", weights["student"])
    ranking = anyteach.rank_teachers(student, teachers, data)
    print(ranking.table[["teacher", "teacher_acc", "complementary_knowledge", "forecast"]].to_string(index=False))
    best = ranking.table["teacher"].iloc[0]

    # 5. one transfer from the best-ranked teacher, with its no-teacher control and the verdict
    result = anyteach.transfer(student, best, data, out=out / "run", epochs=epochs, batch_size=64, progress=False)
    print(result)

    # 6. the student as a hub folder, and plain timm measuring it
    hub = out / "hub"
    push = ["push", str(result.student_path), "me/glyph-student", "--dry-run", "--out", str(hub)]
    subprocess.run([sys.executable, "-m", "anyteach", *push], check=True)
    accuracy = plain_timm_accuracy(hub, folder / "val")
    print(f"plain timm: {accuracy:.2f}% on val/; anyteach: {result.final['student_acc']:.2f}%")


if __name__ == "__main__":
    main()
