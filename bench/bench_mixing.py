"""Benchmark of input mixing: what a mixed training step costs next to an unmixed one, measured side by side.

A mixed step differs from an unmixed one in two ways: the batch is mixed (`data.mixing.mix_batch`: host-side
draws of O(batch) numbers, masks on the device) and the teacher and the frozen student run live on the mixed
batch instead of being read from the cache. The benchmark separates the two:
- `kl+dp` cached (unmixed, outputs from the cache: the usual step), live (unmixed, outputs computed every
  step: what augmentation costs) and mixed (mixup, cutmix, both): mixed / live is the cost of mixing itself,
  mixed / cached the whole cost of a mixed step;
- `xe` against `xe+mix` (no teacher, nothing to run live): the cost of mixing alone;
- `mix_batch` by itself on one batch, as a share of the unmixed step.
Conditions are run round-robin (`--repeats` rounds) and each is reported as its median over the rounds, so
every ratio compares steps measured within seconds of each other. It asserts nothing.

Pairs: the MNIST-1D zoo (student `zoo:mnist1d/transformer`, teacher `zoo:mnist1d/mlp`, a stratified 20% of the
train split, batch 256; needs the built zoo: `anyteach zoo build`) and timm (student resnet18, teacher
vit_tiny_patch16_224, random weights, synthetic 64x64 images, batch 64: cutmix cuts boxes).
Usage: `python bench/bench_mixing.py [--pair mnist1d|timm|both] [--threads N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_transfer import SyntheticImages, _at_64  # noqa: E402

from anyteach import load_dataset, load_model, timm_classifier, transfer  # noqa: E402
from anyteach.data.mixing import mix_batch  # noqa: E402
from anyteach.methods import get_method  # noqa: E402

CONDITIONS: dict[str, tuple[str, dict]] = {
    "kl+dp cached": ("kl+dp", {}),
    "kl+dp live": ("kl+dp", {"cache_teacher_outputs": False}),
    "kl+dp mixup": ("kl+dp", {"mix": "mixup"}),
    "kl+dp cutmix": ("kl+dp", {"mix": "cutmix"}),
    "kl+dp both": ("kl+dp", {"mix": "both"}),
    "xe": ("xe", {}),
    "xe+mix": ("xe+mix", {}),
}


def seconds_per_step(student, teacher, data, method: str, batch_size: int, out: Path, **options) -> float:
    """Training seconds per step of the second epoch (the first one warms up), eval excluded."""
    result = transfer(
        student,
        teacher if get_method(method).needs_teacher else None,
        data,
        method,
        out,
        overwrite=True,
        progress=False,
        epochs=2,
        batch_size=batch_size,
        eval_batch_size=256,
        **options,
    )
    first, second = result.history[-2:]
    return second["seconds_train"] / (second["steps"] - first["steps"])


def mix_seconds(data, batch_size: int, mode: str, repeats: int = 50) -> float:
    """Median seconds of `mix_batch` on one transfer batch."""
    x = next(iter(data.loader("transfer", batch_size=batch_size, drop_last=True)))[0]
    x = x.float().div(255) if x.dtype == torch.uint8 else x
    times = []
    for seed in range(repeats + 5):
        start = time.perf_counter()
        mix_batch(x, seed, mode)
        if seed >= 5:
            times.append(time.perf_counter() - start)
    return median(times)


def bench_pair(title: str, student, teacher, data, batch_size: int, repeats: int) -> None:
    steps = len(data.loader("transfer", batch_size=batch_size, drop_last=True))
    print(f"\n== {title}: batch {batch_size}, {steps} steps per epoch, {repeats} rounds ==", flush=True)
    times: dict[str, list[float]] = {name: [] for name in CONDITIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for name, (method, options) in CONDITIONS.items():
                times[name].append(
                    seconds_per_step(student, teacher, data, method, batch_size, Path(tmp) / name, lr=1e-3, **options)
                )
    ms = {name: median(values) * 1e3 for name, values in times.items()}
    for name, value in ms.items():
        print(f"{name:<16}{value:10.2f} ms/step")
    for mode in ("mixup", "cutmix", "both"):
        mixed, alone = ms[f"kl+dp {mode}"], mix_seconds(data, batch_size, mode) * 1e3
        print(
            f"kl+dp {mode:<7} / live {mixed / ms['kl+dp live']:.3f}   / cached {mixed / ms['kl+dp cached']:.3f}   "
            f"mix_batch alone {alone:.3f} ms ({100 * alone / ms['kl+dp live']:.1f}% of a live step)"
        )
    print(f"live / cached kl+dp {ms['kl+dp live'] / ms['kl+dp cached']:.3f}; xe+mix / xe {ms['xe+mix'] / ms['xe']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=("mnist1d", "timm", "both"), default="both")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the conditions (median reported)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    if args.pair in ("mnist1d", "both"):
        bench_pair(
            "mnist1d zoo: transformer <- mlp",
            load_model("zoo:mnist1d/transformer"),
            load_model("zoo:mnist1d/mlp"),
            load_dataset("mnist1d:fraction=0.2"),
            batch_size=256,
            repeats=args.repeats,
        )
    if args.pair in ("timm", "both"):
        torch.manual_seed(0)
        bench_pair(
            "timm: resnet18 <- vit_tiny_patch16_224 (random weights, 64x64)",
            _at_64(timm_classifier("resnet18", num_classes=10)),
            _at_64(timm_classifier("vit_tiny_patch16_224", num_classes=10, img_size=64)),
            SyntheticImages(n_train=64 * 8, n_eval=128),
            batch_size=64,
            repeats=args.repeats,
        )


if __name__ == "__main__":
    main()
