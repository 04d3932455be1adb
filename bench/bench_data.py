"""Benchmark of the image data path: what decoding and preprocessing cost on top of the model.

On a generated image folder (ImageNet layout, JPEGs of ImageNet's typical size, 500x375) and a timm
model at its native input size (random weights: speed does not depend on them), it prints images/s
of, measured side by side in one run (ratios survive a busy machine better than absolute numbers):

  (a) the model's forward on pre-decoded tensors (already in memory, already 224x224),
  (b) anyteach prediction of the folder (`predict`: loader workers decode, resize and crop),
  (c) a transfer step with cached teacher outputs (`transfer(..., cache_teacher_outputs=True)`:
      the trainer's own timing of the epoch, caching and evaluation excluded),
  (d) a transfer step with a live teacher (`cache_teacher_outputs=False`),
  (e) the student's forward + backward + optimiser step on pre-decoded tensors (the floor of c),
  (f) the loader alone: decode, resize, crop and collate with the default workers, no model (what
      a GPU could be fed at most from this machine's cores),

and the ratios b/a (goal >= 0.8: the data path costs at most 20% on top of the model), c/e and
d/(e with the teacher's forward). On a shared machine the rates drift with the other processes'
load, so the ratios come from pairs measured back to back on equal work: b/a is the median over
`--repeats` pairs of (a on `--chunk` pre-decoded images, b = predict() of a `--chunk`-image folder
subset); c/e likewise. (b) over the whole folder is measured once. It also prints the machine's
load and the busiest other processes before and after. It asserts nothing.

Usage: `python bench/bench_data.py [--model resnet18] [--images 2000] [--workers N] [--threads N]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anyteach import load_dataset, predict, timm_classifier, transfer
from anyteach.core.runtime import Runtime
from anyteach.data.references import default_workers


def make_folder(root: Path, images: int, classes: int = 10, val_per_class: int = 10, seed: int = 0) -> Path:
    """`root/train/<class>/*.jpg` (`images` in all) and `root/val/<class>/*.jpg`, 500x375 JPEGs of
    smooth class-coloured noise (JPEG-compressible like photographs), generated once and reused."""
    from PIL import Image

    marker = root / f".complete-{images}-{classes}-{val_per_class}-{seed}"
    if marker.exists():
        return root
    rng = np.random.default_rng(seed)
    palette = rng.uniform(40, 215, (classes, 3))
    for split, per_class in (("train", images // classes), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"class{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                coarse = rng.normal(0, 40, (12, 16, 3)) + palette[c]
                image = Image.fromarray(coarse.clip(0, 255).astype(np.uint8)).resize((500, 375), Image.BICUBIC)
                pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (375, 500, 3))
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    marker.touch()
    return root


def busy_processes(n: int = 6) -> str:
    """The load average and the busiest processes other than this one (what else was running)."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    try:
        ps = subprocess.run(["ps", "-eo", "pcpu,pid,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
        rows = [line.split(None, 2) for line in ps.splitlines()[1:]]
        others = [f"{comm} {cpu}%" for cpu, pid, comm in rows if int(pid) != os.getpid() and float(cpu) >= 1.0][:n]
    except (OSError, ValueError):
        others = []
    return f"load average {load}; busiest others: {', '.join(others) or 'none'}"


def predecoded(data, preprocessing, count: int, batch: int) -> list[torch.Tensor]:
    """`count` transfer-split images decoded and cropped once, as float batches in [0, 1]."""
    batches = []
    for x, _, _ in data.loader("transfer", batch_size=batch, preprocessing=preprocessing, num_workers=0):
        batches.append(x.float() / 255)
        if sum(len(b) for b in batches) >= count:
            break
    return batches


def loader_rate(data, preprocessing, batch: int, workers: int) -> float:
    """Images/s of the transfer split's loader alone (its workers started first)."""
    loader = data.loader("transfer", batch_size=batch, preprocessing=preprocessing, num_workers=workers)
    iterator = iter(loader)
    next(iterator)  # workers started
    start, count = time.perf_counter(), 0
    for x, _, _ in iterator:
        count += len(x)
    return count / (time.perf_counter() - start)


@torch.no_grad()
def forward_rate(model, batches: list[torch.Tensor]) -> float:
    model.eval()
    model(batches[0])  # warm-up
    start = time.perf_counter()
    for x in batches:
        model(x)
    return sum(len(x) for x in batches) / (time.perf_counter() - start)


def train_step_rate(student, batches: list[torch.Tensor], teacher=None) -> float:
    """Images/s of the floor of a transfer step: KL to fixed targets, forward + backward + SGD step
    (with `teacher`: plus the teacher's forward, as a live step)."""
    opt = torch.optim.SGD(student.parameters(), lr=1e-4, momentum=0.9)
    targets = torch.randn(len(batches[0]), student.num_classes)
    student.train()

    def step(x):
        if teacher is not None:
            with torch.no_grad():
                teacher(x)
        loss = F.kl_div(
            F.log_softmax(student(x), 1), F.log_softmax(targets[: len(x)], 1), log_target=True, reduction="batchmean"
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(batches[0])  # warm-up
    start = time.perf_counter()
    for x in batches:
        step(x)
    return sum(len(x) for x in batches) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18", help="timm architecture (random weights), at its native size")
    parser.add_argument("--images", type=int, default=2000, help="train images of the generated folder (>= 2000)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=256, help="images per paired measurement")
    parser.add_argument("--repeats", type=int, default=3, help="pairs per ratio")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: anyteach's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "anyteach-bench-images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    workers = default_workers() if args.workers is None else args.workers
    os.environ.setdefault("ANYTEACH_CACHE", str(Path(tempfile.mkdtemp(prefix="anyteach-bench-cache-"))))

    print(f"before: {busy_processes()}")
    start = time.perf_counter()
    root = make_folder(args.folder, args.images)
    print(f"image folder: {root} ({args.images} train images, 500x375 JPEG; {time.perf_counter() - start:.0f} s)")
    data = load_dataset(f"imagefolder:{root}")
    torch.manual_seed(0)
    student = timm_classifier(args.model, num_classes=data.num_classes)
    teacher = timm_classifier(args.model, num_classes=data.num_classes)
    size = student.info.preprocessing.input_size
    print(
        f"model: {args.model} ({student.info.num_params:,} parameters) at {size[1]}x{size[2]}, batch {args.batch}, "
        f"{torch.get_num_threads()} torch threads, {workers} loader workers, {os.cpu_count()} cores"
    )
    batches = predecoded(data, student.info.preprocessing, args.chunk, args.batch)
    fraction = len(batches) * args.batch / data.size("transfer")
    chunk = load_dataset(f"imagefolder:{root},fraction={fraction:.4f}")  # a stratified subset of the folder
    cpu = Runtime(torch.device("cpu"), workers=workers)

    a_rates, b_rates = [], []
    for _ in range(args.repeats):  # back to back: a busy machine slows both alike
        a_rates.append(forward_rate(student, batches))
        started = time.perf_counter()
        predict(student, chunk, "transfer", cache=False, batch_size=args.batch, runtime=cpu)
        b_rates.append(chunk.size("transfer") / (time.perf_counter() - started))
    started = time.perf_counter()
    predict(student, data, "transfer", cache=False, batch_size=args.batch, runtime=cpu)
    b_full = data.size("transfer") / (time.perf_counter() - started)

    c_rates, e_rates = [], []
    options = dict(
        epochs=1,
        batch_size=args.batch,
        eval_batch_size=args.batch,
        device="cpu",
        progress=False,
        workers=workers,
        optimizer="sgd",
    )
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            e_rates.append(train_step_rate(student, batches))
            run = transfer(student, teacher, chunk, "kl", Path(tmp) / f"cached{k}", control=False, **options)
            c_rates.append(run.final["steps"] * args.batch / run.final["seconds_train"])
        e_live = train_step_rate(student, batches, teacher)
        live = transfer(
            student, teacher, chunk, "kl", Path(tmp) / "live", control=False, cache_teacher_outputs=False, **options
        )
        d = live.final["steps"] * args.batch / live.final["seconds_train"]
    f = loader_rate(data, student.info.preprocessing, args.batch, workers)
    median = lambda values: float(np.median(values))  # noqa: E731
    a, b, c, e = median(a_rates), median(b_rates), median(c_rates), median(e_rates)
    ba = median([y / x for x, y in zip(a_rates, b_rates)])
    ce = median([y / x for x, y in zip(e_rates, c_rates)])

    print()
    print(f"{'measurement':<62} {'images/s':>9}")
    for label, value in (
        ("(a) model forward, pre-decoded tensors", a),
        ("(b) predict() of a folder subset (decode + resize + crop + forward)", b),
        (f"(b) predict() of the whole folder ({data.size('transfer')} images)", b_full),
        ("(c) transfer step, cached teacher outputs (kl)", c),
        ("(d) transfer step, live teacher (kl)", d),
        ("(e) student forward + backward + step, pre-decoded (floor of c)", e),
        ("(e') (e) + teacher forward, pre-decoded (floor of d)", e_live),
        (f"(f) the loader alone ({workers} workers), no model", f),
    ):
        print(f"{label:<62} {value:9.1f}")
    print()
    print(
        f"b/a  = {ba:.3f}   data-path overhead of prediction: {100 * (1 / ba - 1):.1f}% on top of the model "
        "(goal <= 20%; median of back-to-back pairs)"
    )
    print(f"c/e  = {ce:.3f}   cached-output transfer step vs its floor (median of pairs)")
    print(f"d/e' = {d / e_live:.3f}   live-teacher transfer step vs its floor")
    print(
        f"pairs: a {', '.join(f'{v:.1f}' for v in a_rates)}; b {', '.join(f'{v:.1f}' for v in b_rates)}; "
        f"e {', '.join(f'{v:.1f}' for v in e_rates)}; c {', '.join(f'{v:.1f}' for v in c_rates)}"
    )
    print(f"after: {busy_processes()}")


if __name__ == "__main__":
    main()
