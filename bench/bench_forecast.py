"""Benchmark: the teacher forecast's available gain at timm-zoo scale (issue 17), against the plain loop.

`anyteach teachers` ranks every teacher of a student from calib-split logits. Its cost per teacher is the
calibrated ensemble's choice of the teacher weight w (21 candidates, `methods.choose_mixture_weight`): the plain
loop builds the log-mixture over all N x C probabilities at every w; the shipped code computes the softmaxes once
and finds each mixture's class among each model's top-8 classes first (`methods.mixture_classes`, exact). Prints
seconds per teacher for both on synthetic logits of the ImageNet shape (default 10,000 calib samples, 1,000
classes), their ratio, and what ranking 300 teachers of one student costs.

Run: `python bench/bench_forecast.py [--samples 10000 --classes 1000 --teachers 3]`
"""

from __future__ import annotations

import argparse
import time

import torch

from anyteach.methods import MIXTURE_WEIGHTS, Calibration, choose_mixture_weight, mixture_log_probs


def plain_loop(calibration: Calibration) -> float:
    """The weight the straightforward loop chooses (the log-mixture over all classes at every w)."""
    labels, scored = calibration.labels, []
    for w in MIXTURE_WEIGHTS:
        logp = mixture_log_probs(calibration.frozen, calibration.teachers[0], w)
        accuracy = (logp.argmax(1) == labels).float().mean().item()
        scored.append((-accuracy, -logp.gather(1, labels.view(-1, 1)).mean().item(), w))
    return min(scored)[2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--teachers", type=int, default=3)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, args.classes, (args.samples,), generator=g)

    def logits() -> torch.Tensor:  # about 60-80% accurate models with their own errors
        x = torch.randn(args.samples, args.classes, generator=g) * 2
        x[torch.arange(args.samples), labels] += 4
        return x

    student = logits()
    times = {"plain loop": 0.0, "shipped": 0.0}
    for _ in range(args.teachers):
        calibration = Calibration(labels, student, logits().unsqueeze(0))
        start = time.perf_counter()
        reference = plain_loop(calibration)
        times["plain loop"] += time.perf_counter() - start
        start = time.perf_counter()
        chosen = choose_mixture_weight(calibration)["teacher_weight"]
        times["shipped"] += time.perf_counter() - start
        assert chosen == reference, (chosen, reference)
    print(f"{args.samples:,} calib samples x {args.classes:,} classes, torch threads: {torch.get_num_threads()}")
    for name, total in times.items():
        per = total / args.teachers
        print(f"  {name:10s} {per:7.3f} s per teacher; 300 teachers of one student: {300 * per / 60:5.1f} min")
    print(f"  shipped / plain loop: {times['plain loop'] / times['shipped']:.1f}x faster (same weights chosen)")


if __name__ == "__main__":
    main()
