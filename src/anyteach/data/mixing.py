"""Input mixing: mixup and cutmix between the samples of one batch, drawn from a seed.

`mix_batch` pairs every sample of a batch with another one of the same batch (a random cycle, so no
sample is paired with itself) and mixes each pair: **mixup** takes the weighted average
λ·x_i + (1 − λ)·x_partner; **cutmix** pastes a contiguous part of the partner into the sample (a
segment of a signal, a box of an image), λ then being the share of the sample that is left; **both**
chooses one of the two per sample. λ is drawn per sample from Beta(α, α). Every random number comes
from one integer seed (the trainer's is `seeds.mix_seed` of the run's seed and the step), drawn on the
host in O(batch) and turned into masks on the batch's device without a loop over samples, so a
resumed run mixes exactly as an uninterrupted one. The returned `Mix` says how each mixed sample was
made, for the terms that weigh the two samples' labels by their shares (`methods`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.options import MIX_MODES


@dataclass
class Mix:
    """How a batch was mixed: mixed sample i is `share[i]` of sample i and `1 − share[i]` of sample
    `partner[i]` (mixup: the weights of the average; cutmix: the part of each that is left).

    Attributes:
        partner: `(B,)` long, the index of each sample's partner in the batch (never the sample itself
            in a batch of two or more).
        share: `(B,)` float32 in [0, 1], sample i's share of mixed sample i.
        unmixed: `(B, ...)` the batch before mixing.
        cut: `(B,)` bool, the samples mixed by cutmix (the others by mixup).
    """

    partner: torch.Tensor
    share: torch.Tensor
    unmixed: torch.Tensor
    cut: torch.Tensor

    def partner_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """`(B,)` the labels of each sample's partner."""
        return labels[self.partner]

    def dominant_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """`(B,)` per mixed sample the label of the larger part (ties: the sample's own): the one label
        of a rule that compares classes (is a model right on this input?)."""
        return torch.where(self.share >= 0.5, labels, labels[self.partner])


def _cycle(b: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of range(b) without fixed points (one cycle through a shuffled order)."""
    order = rng.permutation(b)
    partner = np.empty(b, dtype=np.int64)
    partner[order] = np.roll(order, -1)
    return partner


def _segment_keep(share: np.ndarray, length: int, rng: np.random.Generator, device: torch.device):
    """`(B, length)` bool, True where a sample keeps its own values: a random contiguous segment of
    round((1 − share)·length) is cut out; returns it with the exact share that is left."""
    cut = np.rint((1 - share) * length).astype(np.int64)
    start = (rng.random(len(share)) * (length - cut + 1)).astype(np.int64)
    position = torch.arange(length, device=device)
    start_t, end_t = torch.from_numpy(start).to(device), torch.from_numpy(start + cut).to(device)
    inside = (position >= start_t[:, None]) & (position < end_t[:, None])
    return ~inside, 1 - cut / length


def _box_keep(share: np.ndarray, height: int, width: int, rng: np.random.Generator, device: torch.device):
    """`(B, height, width)` bool, True where a sample keeps its own pixels: a random box of side ratio
    sqrt(1 − share) is cut out; returns it with the exact share that is left."""
    ratio = np.sqrt(1 - share)
    box_h, box_w = np.rint(ratio * height).astype(np.int64), np.rint(ratio * width).astype(np.int64)
    top = (rng.random(len(share)) * (height - box_h + 1)).astype(np.int64)
    left = (rng.random(len(share)) * (width - box_w + 1)).astype(np.int64)

    def span(start: np.ndarray, size: np.ndarray, n: int) -> torch.Tensor:
        position = torch.arange(n, device=device)
        a, b = torch.from_numpy(start).to(device), torch.from_numpy(start + size).to(device)
        return (position >= a[:, None]) & (position < b[:, None])

    inside = span(top, box_h, height)[:, :, None] & span(left, box_w, width)[:, None, :]
    return ~inside, 1 - (box_h * box_w) / (height * width)


def mix_batch(x: torch.Tensor, seed: int, mode: str, alpha: float = 1.0) -> tuple[torch.Tensor, Mix]:
    """Mix the samples of a batch in pairs.

    Cutmix cuts a segment along the last axis of signals (`(B, L)`, `(B, C, L)`, any batch that is not
    4-d) and a box over the last two axes of images (`(B, C, H, W)`), the same for every channel.

    Args:
        x: `(B, ...)` floating-point inputs (on any device).
        seed: the seed of every random choice (partners, shares, which samples are cut, where).
        mode: `mixup`, `cutmix` or `both` (`options.MIX_MODES`, except `none`).
        alpha: each share λ is drawn from Beta(alpha, alpha).

    Returns:
        The mixed batch (same shape and dtype) and its `Mix`.
    """
    if mode not in MIX_MODES or mode == "none":
        raise ValueError(f"mix mode {mode!r} is not one of {', '.join(MIX_MODES[1:])}")
    b, device = x.shape[0], x.device
    rng = np.random.default_rng(seed)
    partner_np = _cycle(b, rng)
    share = rng.beta(alpha, alpha, size=b)
    cut = np.full(b, mode == "cutmix") if mode != "both" else rng.random(b) < 0.5
    partner = torch.from_numpy(partner_np).to(device)
    other = x[partner]
    spread = (b,) + (1,) * (x.dim() - 1)
    mixed = x
    if not cut.all():  # mixup: the weighted average
        weight = torch.from_numpy(share.astype(np.float32)).to(device, x.dtype).view(spread)
        mixed = torch.lerp(other, x, weight)
    if cut.any():  # cutmix: the partner's values pasted into a segment or a box (exactly, no arithmetic)
        if x.dim() == 4:
            keep, left = _box_keep(share, x.shape[2], x.shape[3], rng, device)
            keep = keep[:, None]
        else:
            keep, left = _segment_keep(share, x.shape[-1], rng, device)
            keep = keep.view((b,) + (1,) * (x.dim() - 2) + (x.shape[-1],))
        pasted = torch.where(keep, x, other)
        cut_t = torch.from_numpy(cut).to(device)
        mixed = pasted if cut.all() else torch.where(cut_t.view(spread), pasted, mixed)
        share = np.where(cut, left, share)
    return mixed, Mix(
        partner, torch.from_numpy(share.astype(np.float32)).to(device), x, torch.from_numpy(cut).to(device)
    )


__all__ = ["Mix", "mix_batch"]
