"""One transfer on several processes: what the trainer does differently under torchrun (DDP).

Inside a process group (`distributed.active()`) the `Trainer` trains one student with
DistributedDataParallel. The global batch is the run's `batch_size`: every rank takes its
contiguous share of each batch of the run's seeded order (`data.BatchOrder`), so the ranks
together take exactly the steps of a single process, and the gradients, averaged by DDP, are
those of the global batch for every loss that is a mean over the batch's samples. What differs,
and why:

- target rules and losses run on each rank's share: a loss that normalises over the batch in
  another way (MCL's per-sample weights, CD's in-batch similarity structure) is normalised per
  share. CRD keeps a memory bank per sample that the ranks would update apart; it is refused.
- BatchNorm layers in train mode normalise with the statistics of each rank's share, and DDP copies
  rank 0's running statistics to the other ranks at every step; `sync_batchnorm` (CUDA only: torch's
  SyncBatchNorm has no CPU kernel) computes them over the global batch instead.
- random numbers (dropout, augmentation) are drawn per rank from (seed, epoch, rank), re-seeded at
  every epoch: a run resumes exactly from its checkpoint with the same number of ranks, and with a
  different number it continues the same batches and steps with other random draws (identical
  for runs without dropout or augmentation, up to floating-point rounding).
- the frozen student's and the teachers' outputs are computed once per sample: cached outputs
  are computed in shares and gathered (`predictions`), live ones run on each rank's share.
- training numbers (losses, routing) are averaged and summed over the ranks; evaluation is
  gathered, so every rank holds the same metrics rows, and rank 0 alone writes files.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core import process_group as distributed
from ..core.errors import AnyteachError
from ..core.options import TrainingOptions
from ..core.runtime import Runtime
from ..core.seeds import augment_seed, rank_seed
from ..methods import MethodPreset
from ..models.references import Classifier

NOT_DISTRIBUTED_LOSSES = {"crd": "it keeps a memory bank of every sample's features that the ranks would update apart"}
"""Losses that cannot be split over ranks, with the reason."""


def check_distributed_run(preset: MethodPreset, options: TrainingOptions, device: torch.device) -> None:
    """Refuse a run that cannot train under the current process group (nothing to do outside one).

    Raises:
        AnyteachError: a batch size that the world size does not divide, a method that cannot be
            split over ranks, SyncBatchNorm without CUDA, or CUDA ranks on fewer GPUs than ranks.
    """
    if not distributed.active():
        return
    world = distributed.world_size()
    if options.batch_size % world:
        raise AnyteachError(
            f"batch_size={options.batch_size} is the global batch of {world} processes (torchrun): "
            f"it must be divisible by {world}"
        )
    if preset.loss in NOT_DISTRIBUTED_LOSSES:
        raise AnyteachError(
            f"method {preset.name!r} cannot run on several processes: "
            f"{NOT_DISTRIBUTED_LOSSES[preset.loss]}; run it in one process"
        )
    if options.sync_batchnorm and device.type != "cuda":
        raise AnyteachError(
            "sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU kernel); without it each "
            "rank normalises with the statistics of its share of the batch"
        )
    if device.type == "cuda" and torch.cuda.device_count() <= (device.index or 0):
        raise AnyteachError(
            f"rank {distributed.rank()} would train on {device} but this machine has "
            f"{torch.cuda.device_count()} GPU(s); start at most that many processes per machine"
        )


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: its own GPU (`LOCAL_RANK`) when the run trains on CUDA."""
    if distributed.active() and device.type == "cuda" and device.index in (None, 0):
        return torch.device("cuda", distributed.local_rank())
    return device


def seed_epoch(seed: int, epoch: int, augment_rng: torch.Generator) -> None:
    """Under DDP: the random state of this rank for `epoch`, drawn from (seed, epoch, rank)."""
    mixed = rank_seed(seed, epoch, distributed.rank())
    torch.manual_seed(mixed)
    augment_rng.manual_seed(augment_seed(mixed))


class TrainingStudent(nn.Module):
    """The student as a training step calls it: wrapped in DistributedDataParallel inside a process
    group and in `torch.compile` when asked; `features` captures the penultimate features through the
    same wrappers (so DDP sees every forward pass and synchronises the gradients).

    The wrapped `Classifier` stays the one whose weights the checkpoint saves and the run exports.
    """

    def __init__(self, student: Classifier, runtime: Runtime):
        super().__init__()
        self.student = student
        module: nn.Module = student
        if distributed.active():
            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(student, device_ids=ids)
        self.module = runtime.compiled(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.student._capture_on = True
        try:
            logits = self.module(x)
            features = self.student._captured
            assert features is not None, "the student's feature hook did not run"
        finally:
            self.student._capture_on = False
            self.student._captured = None
        return logits, features.flatten(1)


def sync_batchnorm(student: Classifier, options: TrainingOptions) -> Classifier:
    """The student with SyncBatchNorm layers when the run asks for them under DDP (in place)."""
    if distributed.active() and options.sync_batchnorm:
        nn.SyncBatchNorm.convert_sync_batchnorm(student)
    return student


def reduce_training_numbers(
    sums: dict[str, torch.Tensor], steps: int, counts: torch.Tensor
) -> tuple[dict[str, float], torch.Tensor]:
    """An epoch's loss sums (of per-step means of each rank's share) averaged over all ranks' steps,
    and its routing counts summed over the ranks: identical on every rank.

    Returns:
        `(mean of each loss term per step, routing counts)`.
    """
    names = sorted(sums)
    means = {}
    if names:
        total = distributed.all_reduce_sum(torch.stack([sums[n].detach().double().cpu() for n in names]))
        means = {n: float(v) / max(steps * distributed.world_size(), 1) for n, v in zip(names, total.tolist())}
    return means, distributed.all_reduce_sum(counts)


__all__ = [
    "NOT_DISTRIBUTED_LOSSES",
    "TrainingStudent",
    "check_distributed_run",
    "rank_device",
    "reduce_training_numbers",
    "seed_epoch",
    "sync_batchnorm",
]
