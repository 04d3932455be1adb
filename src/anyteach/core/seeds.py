"""Seed derivation: every random stream of a run is seeded from the user's seed here, and only here.

A run has one user-facing seed (`--seed`, a study's `seeds:`). The streams it drives (the epoch's
shuffle, the augmentation, a DDP rank's state, an image's random transform, the fresh calibration
samples of MNIST-1D, a step's input mixing) are seeded by these functions from it, with large odd
strides so that no two (seed, epoch, rank, sample) combinations collide in practice. The constants are part of every
result's reproducibility: changing one changes every run. `tests/test_seeds.py` fails when one of
them is written anywhere else in `src/`.
"""

from __future__ import annotations

AUGMENT_OFFSET = 7919
"""The augmentation generator's seed is the run's seed plus this."""
EPOCH_STRIDE = 100_003
"""An epoch's shuffle (and augmentation noise) is seeded with `seed * EPOCH_STRIDE + epoch`."""
RUN_STRIDE = 1_000_003
"""Per-epoch streams that are further mixed (DDP ranks, image transforms) start from `seed * RUN_STRIDE + epoch`."""
RANK_STRIDE = 65_537
"""Under DDP, a rank's state in an epoch is `(seed * RUN_STRIDE + epoch) * RANK_STRIDE + rank`."""
SAMPLE_STRIDE = 10_000_019
"""An image's random transform is seeded with `(seed * RUN_STRIDE + epoch) * SAMPLE_STRIDE + index`."""
CALIB_SEED_OFFSET = 1_000_003
"""MNIST-1D's fresh calibration samples come from the generator seeded with `seed + CALIB_SEED_OFFSET`."""
FRESH_SEED_OFFSET = 2_000_003
"""Fresh MNIST-1D samples come from the generator seeded with `seed + FRESH_SEED_OFFSET` (never a zoo's seed)."""
MIX_OFFSET = 15_485_863
"""Input mixing draws its partners and shares at step s from `mix_seed`: `(seed + MIX_OFFSET) * RUN_STRIDE + s`
(then the DDP rank, as `rank_seed`), a stream apart from the epoch-based ones."""


def augment_seed(seed: int) -> int:
    """The seed of a run's augmentation generator."""
    return seed + AUGMENT_OFFSET


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffled order."""
    return seed * EPOCH_STRIDE + epoch


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one DDP rank's random state in one epoch."""
    return (seed * RUN_STRIDE + epoch) * RANK_STRIDE + rank


def mix_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of one optimiser step's input mixing (its partners, shares, segments and boxes) on one DDP rank:
    a function of the step alone, so a resumed run mixes exactly as an uninterrupted one."""
    return ((seed + MIX_OFFSET) * RUN_STRIDE + step) * RANK_STRIDE + rank


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random transform in one epoch (image folders)."""
    return (seed * RUN_STRIDE + epoch) * SAMPLE_STRIDE + index


__all__ = [
    "AUGMENT_OFFSET",
    "CALIB_SEED_OFFSET",
    "EPOCH_STRIDE",
    "FRESH_SEED_OFFSET",
    "MIX_OFFSET",
    "RANK_STRIDE",
    "RUN_STRIDE",
    "SAMPLE_STRIDE",
    "augment_seed",
    "epoch_seed",
    "mix_seed",
    "rank_seed",
    "sample_seed",
]
