"""Benchmark of the transfer engine: seconds per step per method, and how close a step is to its floor.

The floor of a transfer step is the student's own forward + backward + optimiser step. With teacher
and frozen-student outputs cached (no augmentation), every method should cost close to that; with
live outputs (`cache_teacher_outputs=False`) each step also runs the teacher and the frozen student.

Two pairs:
- mnist1d zoo: student `zoo:mnist1d/transformer`, teacher `zoo:mnist1d/mlp`, transfer on a stratified
  20% of the train split (needs the built zoo: `anyteach zoo build`);
- timm: student resnet18, teacher vit_tiny_patch16_224, random weights, synthetic 64x64 images,
  batch 64.

Prints seconds per step for each method (from the trainer's own timing of a second epoch, eval
excluded; the floor is the median of single steps after warm-up),
the ratio kl+dp / kl, and the ratio of each method's cached-output step to the floor. It asserts
nothing. Usage: `python bench/bench_transfer.py [--pair mnist1d|timm|both] [--threads N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from anyteach import load_dataset, load_model, timm_classifier, transfer
from anyteach.data.references import Dataset, TensorLoader
from anyteach.methods import get_method
from anyteach.models.references import Classifier

MNIST1D_METHODS = ["xe", "self", "kl", "xekl", "kl+dp", "kl+dp-u", "kl+flip-avg", "xekl+mcl", "cd", "crd"]
TIMM_METHODS = ["xe", "kl", "kl+dp", "kl+dp-u", "xekl+mcl", "cd", "crd"]
LIVE = ["kl", "kl+dp"]  # also measured with live teacher / frozen-student outputs


class SyntheticImages(Dataset):
    """Random images and labels held in memory (a stand-in for an image folder)."""

    def __init__(self, n_train: int, n_eval: int, size: int = 64, classes: int = 10, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self._x = {s: torch.rand(n, 3, size, size, generator=g) for s, n in (("train", n_train), ("eval", n_eval))}
        self._y = {s: torch.randint(0, classes, (n,), generator=g) for s, n in (("train", n_train), ("eval", n_eval))}
        self._x["transfer"], self._y["transfer"] = self._x["train"], self._y["train"]
        self.ref = self.name = self.identity = f"synthetic-images:{n_train},{n_eval},{size},{classes},{seed}"
        self.num_classes, self.class_names, self.kind = classes, [str(c) for c in range(classes)], "image"

    def labels(self, split: str) -> torch.Tensor:
        return self._y[split]

    def loader(
        self,
        split,
        batch_size=256,
        shuffle=False,
        seed=0,
        epoch=0,
        preprocessing=None,
        augment=False,
        drop_last=False,
        num_workers=0,
        generator=None,
        shard=(0, 1),
    ):
        return TensorLoader(self._x[split], self._y[split], batch_size, shuffle, seed, epoch, drop_last, shard=shard)


def _at_64(model: Classifier) -> Classifier:
    """Run a timm model at 64x64 (no resizing to its pretrained 224)."""
    model.info.preprocessing = dataclasses.replace(model.info.preprocessing, input_size=(3, 64, 64))
    return model


def floor_seconds_per_step(student: Classifier, data: Dataset, batch_size: int, steps: int, lr: float) -> float:
    """The student's own forward + backward + SGD step on the transfer batches (cross-entropy)."""
    import copy

    model = copy.deepcopy(student).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    batches = list(data.loader("transfer", batch_size=batch_size, shuffle=True, drop_last=True))[: steps + 2]
    times = []
    for i, (x, y, _) in enumerate(batches):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def seconds_per_step(student, teacher, data, method: str, batch_size: int, out: Path, **options) -> float:
    """Training seconds per step of the second epoch (the first one warms up), eval excluded."""
    result = transfer(
        student,
        teacher if get_method(method).needs_teacher else None,  # xe and self take no teacher
        data,
        method,
        out,
        control=False,  # the step of the method alone
        allow_chance=True,  # the timm pair has random weights: at chance by design
        overwrite=True,
        progress=False,
        epochs=2,
        batch_size=batch_size,
        eval_batch_size=256,
        **options,
    )
    first, second = result.history[-2:]
    return second["seconds_train"] / (second["steps"] - first["steps"])


def bench_pair(
    title: str, student, teacher, data, methods: list[str], batch_size: int, lr: float, extra: dict | None = None
) -> None:
    extra = extra or {}
    with tempfile.TemporaryDirectory() as tmp:
        steps = len(data.loader("transfer", batch_size=batch_size, drop_last=True))
        floor = floor_seconds_per_step(student, data, batch_size, min(steps, 12), lr)
        print(f"\n== {title}: batch {batch_size}, {steps} steps per epoch ==")
        print(f"floor (student fwd+bwd+step, median): {floor * 1e3:8.1f} ms/step")
        print(f"{'method':<14}{'cached ms/step':>16}{'x floor':>9}{'live ms/step':>14}{'x floor':>9}")
        cached: dict[str, float] = {}
        live: dict[str, float] = {}
        for method in methods:
            options = {"lr": lr, **extra.get(method, {})}
            cached[method] = seconds_per_step(student, teacher, data, method, batch_size, Path(tmp) / method, **options)
            line = f"{method:<14}{cached[method] * 1e3:16.1f}{cached[method] / floor:9.2f}"
            if method in LIVE:
                live[method] = seconds_per_step(
                    student,
                    teacher,
                    data,
                    method,
                    batch_size,
                    Path(tmp) / f"{method}-live",
                    cache_teacher_outputs=False,
                    **options,
                )
                line += f"{live[method] * 1e3:14.1f}{live[method] / floor:9.2f}"
            print(line, flush=True)
        print(f"ratio kl+dp / kl: cached {cached['kl+dp'] / cached['kl']:.3f}, live {live['kl+dp'] / live['kl']:.3f}")
        print(
            f"ratio cached kl+dp step / floor: {cached['kl+dp'] / floor:.3f}; "
            f"live / cached kl+dp: {live['kl+dp'] / cached['kl+dp']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=("mnist1d", "timm", "both"), default="both")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    if args.pair in ("mnist1d", "both"):
        data = load_dataset("mnist1d:fraction=0.2")
        bench_pair(
            "mnist1d zoo: transformer <- mlp",
            load_model("zoo:mnist1d/transformer"),
            load_model("zoo:mnist1d/mlp"),
            data,
            MNIST1D_METHODS,
            batch_size=256,
            lr=1e-3,
        )
    if args.pair in ("timm", "both"):
        torch.manual_seed(0)
        student = _at_64(timm_classifier("resnet18", num_classes=10))
        teacher = _at_64(timm_classifier("vit_tiny_patch16_224", num_classes=10, img_size=64))
        data = SyntheticImages(n_train=64 * 8, n_eval=128)
        bench_pair(
            "timm: resnet18 <- vit_tiny_patch16_224 (random weights, 64x64)",
            student,
            teacher,
            data,
            TIMM_METHODS,
            batch_size=64,
            lr=1e-3,
            extra={"crd": {"crd_negatives": 256}},
        )  # 512 samples cannot supply 4096 distinct negatives


if __name__ == "__main__":
    main()
