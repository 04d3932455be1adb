"""The GPU check of the glyphs image zoo: one run that prints what a CUDA machine adds, as ratios.

On a machine with CUDA it prints
1. the glyphs zoo's build time (a fresh cache; the members train on CPU worker processes, one per
   core up to the number of members: the zoo is sized for CPUs),
2. images/s of prediction (a zoo member over the 2,000 eval images, batch 1024) with
   `--amp bf16 --channels-last` against `--amp off`,
3. images/s of a `kl+dp` transfer (one epoch of the 4,000 transfer images, batch 256, evaluation
   included) with the same two settings,
4. a transfer under `torchrun --nproc-per-node 1`, and with every GPU where there are several,
   as a ratio to the single-GPU run.
Without CUDA it says so and exits 0 (nothing measured). It asserts nothing; timings are wall clock
and depend on what else runs on the machine. Usage: `python bench/gpu_check.py [--skip-build]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

STUDENT, TEACHER = "zoo:glyphs/resnet18_w16_aug", "zoo:glyphs/levit_d96"
DATA = "glyphs:train=4000,eval=2000,calib=1000"


def _transfer_args(out: Path, fast: bool) -> list[str]:
    amp = ["--amp", "bf16", "--channels-last"] if fast else ["--amp", "off"]
    return [
        "transfer",
        "--student",
        STUDENT,
        "--teacher",
        TEACHER,
        "--data",
        DATA,
        "--method",
        "kl+dp",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--device",
        "cuda",
        *amp,
        "--quiet",
        "--out",
        str(out),
    ]


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-build", action="store_true", help="use the zoo in the current cache")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; skipped (not measured on a GPU)")
        return
    from anyteach import load_dataset, load_model
    from anyteach.core.runtime import Runtime
    from anyteach.data.predictions import model_logits
    from anyteach.zoo import build_zoo, get_zoo

    env = dict(os.environ)
    if not args.skip_build:
        env["ANYTEACH_CACHE"] = os.environ["ANYTEACH_CACHE"] = tempfile.mkdtemp(prefix="anyteach-gpu-check-")
    gpus, cores = torch.cuda.device_count(), os.cpu_count() or 1
    print(f"device: {torch.cuda.get_device_name(0)} x {gpus}, {cores} CPU cores, torch {torch.__version__}")

    zoo = get_zoo("glyphs")
    start = time.perf_counter()
    build_zoo(zoo, workers=min(cores, len(zoo.members)))
    print(
        f"glyphs zoo build: {time.perf_counter() - start:.0f} s ({min(cores, len(zoo.members))} CPU workers"
        + (", already built" if args.skip_build else "")
        + ")"
    )

    data = load_dataset(DATA)
    model = load_model(STUDENT)
    rates = {}
    for name, runtime in (
        ("off", Runtime(torch.device("cuda"), amp="off")),
        ("bf16+cl", Runtime(torch.device("cuda"), amp="bf16", channels_last=True)),
    ):
        model_logits(model, data, "eval", runtime=runtime)  # warm-up (kernels, cuDNN autotuning)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            model_logits(model, data, "eval", runtime=runtime)
        torch.cuda.synchronize()
        rates[name] = 5 * data.size("eval") / (time.perf_counter() - start)
    print(
        f"prediction: {rates['off']:.0f} images/s (amp off), {rates['bf16+cl']:.0f} images/s (bf16 + channels-last): "
        f"ratio {rates['bf16+cl'] / rates['off']:.2f}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        anyteach = [sys.executable, "-m", "anyteach"]
        seconds = {}
        for fast in (False, True):
            _timed(anyteach + _transfer_args(Path(tmp) / f"warm{fast}", fast), env)  # teacher outputs cached
            seconds[fast] = _timed(anyteach + _transfer_args(Path(tmp) / f"run{fast}", fast), env)
        n = data.size("transfer")
        print(
            f"transfer (kl+dp, 1 epoch of {n} images, eval included): {n / seconds[False]:.0f} images/s (amp off), "
            f"{n / seconds[True]:.0f} images/s (bf16 + channels-last): ratio {seconds[False] / seconds[True]:.2f}"
        )
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        one = _timed(
            torchrun + ["--nproc-per-node", "1", "-m", "anyteach"] + _transfer_args(Path(tmp) / "ddp1", True), env
        )
        print(
            f"torchrun, 1 GPU: {one:.1f} s ({n / one:.0f} images/s; ratio to the plain run {seconds[True] / one:.2f})"
        )
        if gpus > 1:
            many = _timed(
                torchrun + ["--nproc-per-node", str(gpus), "-m", "anyteach"] + _transfer_args(Path(tmp) / "ddpN", True),
                env,
            )
            print(f"torchrun, {gpus} GPUs: {many:.1f} s: speed-up over 1 GPU {one / many:.2f}")
        else:
            print("torchrun, N GPUs: one GPU here; skipped")


if __name__ == "__main__":
    main()
