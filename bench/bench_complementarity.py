"""Benchmark: all-pairs complementary knowledge at timm-zoo scale, against a per-pair loop.

Synthetic predictions of 300 models on 50,000 samples of 1,000 classes (the ImageNet val shape),
stored as int16 labels (30 MB, not logits). Times `zoo_from_predictions` (flip matrices, per-class
counts of all 89,700 ordered pairs, entropy and top-p sets) and a straightforward loop that calls
the per-pair metric functions for 200 pairs, and prints the time, pairs/second and their ratio.

Run: `python bench/bench_complementarity.py [--models 300 --samples 50000 --classes 1000 --loop-pairs 200]`
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from anyteach.analysis.complementarity import zoo_from_predictions
from anyteach.analysis.metrics import (
    flip_entropy,
    negative_flips,
    per_class_positive_flips,
    positive_flips,
    top_p_classes,
)


def synthetic_predictions(models: int, samples: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels plus predictions of `models` models with accuracies spread over 50-90%.

    Errors are biased towards per-model "weak" classes so the per-class flip distributions are not
    uniform, as with real models.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, samples).astype(np.int16)
    predictions = np.empty((models, samples), dtype=np.int16)
    for m in range(models):
        accuracy = rng.uniform(0.5, 0.9)
        class_skill = np.clip(accuracy + rng.normal(0, 0.15, classes), 0.02, 0.99)
        right = rng.random(samples) < class_skill[labels]
        wrong_guess = rng.integers(0, classes, samples).astype(np.int16)
        wrong_guess = np.where(wrong_guess == labels, (wrong_guess + 1) % classes, wrong_guess)
        predictions[m] = np.where(right, labels, wrong_guess)
    return predictions, labels


def per_pair_loop(predictions: np.ndarray, labels: np.ndarray, pairs: list[tuple[int, int]], classes: int) -> None:
    """The straightforward way: each pair's metrics from the per-pair functions."""
    for s, t in pairs:
        positive_flips(predictions[s], predictions[t], labels)
        negative_flips(predictions[s], predictions[t], labels)
        per_class = per_class_positive_flips(predictions[s], predictions[t], labels, classes)
        flip_entropy(per_class)
        for p in (2, 5, 20, 50):
            top_p_classes(per_class, p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=300)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--loop-pairs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    start = time.perf_counter()
    predictions, labels = synthetic_predictions(args.models, args.samples, args.classes)
    print(
        f"synthetic predictions: {args.models} models x {args.samples:,} samples x {args.classes:,} classes "
        f"({predictions.nbytes / 2**20:.0f} MiB int16), made in {time.perf_counter() - start:.1f} s"
    )

    ordered_pairs = args.models * (args.models - 1)
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        zoo = zoo_from_predictions(predictions, labels, num_classes=args.classes)
        best = min(best, time.perf_counter() - start)
    print(
        f"all pairs (flips, per-class counts, entropy, top-p): {best:.2f} s for {ordered_pairs:,} ordered pairs "
        f"= {ordered_pairs / best:,.0f} pairs/s (best of {args.repeats})"
    )
    student, teacher, value = zoo.minimum()
    off = zoo.off_diagonal()
    print(
        f"  complementary knowledge: min {value:.2f}% ({student} <- {teacher}), "
        f"median {np.median(zoo.positive_flips[off]):.2f}%; entropy median {np.median(zoo.entropy[off]):.3f} "
        f"vs uniform {zoo.uniform_entropy:.3f}"
    )
    start = time.perf_counter()
    zoo_from_predictions(predictions, labels, num_classes=args.classes, per_class=False)
    flips_only = time.perf_counter() - start
    print(f"all pairs, flip matrices only: {flips_only:.2f} s = {ordered_pairs / flips_only:,.0f} pairs/s")

    rng = np.random.default_rng(1)
    pairs = []
    while len(pairs) < args.loop_pairs:
        s, t = (int(v) for v in rng.integers(0, args.models, 2))
        if s != t:
            pairs.append((s, t))
    start = time.perf_counter()
    per_pair_loop(predictions, labels, pairs, args.classes)
    loop = time.perf_counter() - start
    loop_rate = len(pairs) / loop
    print(
        f"per-pair loop: {loop:.2f} s for {len(pairs)} pairs = {loop_rate:,.0f} pairs/s "
        f"(all {ordered_pairs:,} pairs would take ~{ordered_pairs / loop_rate:.0f} s)"
    )
    print(f"speed-up of the all-pairs path: {(ordered_pairs / best) / loop_rate:.1f}x pairs/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak memory (max RSS): {peak:.2f} GiB")


if __name__ == "__main__":
    main()
