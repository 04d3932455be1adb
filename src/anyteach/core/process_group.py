"""The process group a run may be part of (torchrun / DistributedDataParallel), and its collectives.

Distributed training is a property of the process group, not a second API: when
`torch.distributed` is initialised with more than one process, `transfer` trains one student with
DistributedDataParallel, split over the ranks, and everything else reads the group from here.
`init_from_env` starts the group of a `torchrun` launch (the CLI calls it); a Python user
initialises it themselves. The helpers below are no-ops in a single process, so code that uses
them reads the same either way: `gather_rows` assembles per-rank shards of a split's outputs in
index order, `on_main` runs a step on rank 0 only (writing files) and hands its result or its
`AnyteachError` to every rank, `agree` turns an error on any one rank into the same error on all
of them (a rank that cannot see the data must not leave the others waiting).
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from .errors import AnyteachError

T = TypeVar("T")


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Processes in the group (1 outside a process group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True on the process that writes files: rank 0, or the only process."""
    return rank() == 0


def local_rank() -> int:
    """This process's rank on its machine (torchrun's `LOCAL_RANK`; 0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched_by_torchrun() -> bool:
    """True when the environment describes a multi-process launch (torchrun sets `WORLD_SIZE`)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> bool:
    """Join the process group that `torchrun` describes in the environment, if any.

    The backend is NCCL when this process trains on CUDA, else gloo (CPU). Call it before any
    other work; it is a no-op outside torchrun or when a group exists already.

    Args:
        device: the run's `device` option (`auto`, `cpu`, `cuda`, `cuda:<n>`).

    Returns:
        True when this process is now part of a group of several processes.

    Raises:
        AnyteachError: CUDA asked for and absent.
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        return active()
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AnyteachError(f"device {device!r} requested but CUDA is not available")
    if wants_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if wants_cuda else "gloo")
    return active()


def _comm_device() -> torch.device:
    """Where tensors must be for the group's backend (NCCL: this rank's GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """`obj` of rank `src` on every rank (pickled between our own processes)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over the ranks (a new tensor on `tensor`'s device)."""
    if not active():
        return tensor
    work = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def gather_rows(index: torch.Tensor, values: torch.Tensor, total: int) -> torch.Tensor:
    """Every rank's rows of a split assembled in index order, on every rank.

    Args:
        index: `(n_r,)` positions in the split of this rank's rows (ranks hold disjoint positions).
        values: `(n_r, ...)` this rank's rows.
        total: the split's size; every position must be held by exactly one rank.

    Returns:
        `(total, ...)` on `values`' device.
    """
    if not active():
        out = values.new_empty((total, *values.shape[1:]))
        out[index.to(values.device)] = values
        return out
    device = _comm_device()
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(counts, torch.tensor([len(index)], device=device))
    longest = int(max(c.item() for c in counts))
    # all_gather needs equal shapes: pad every shard to the longest one
    padded_index = torch.full((longest,), -1, dtype=torch.long, device=device)
    padded_index[: len(index)] = index.to(device)
    padded = values.new_zeros((longest, *values.shape[1:]), device=device)
    padded[: len(values)] = values.to(device)
    indices = [torch.empty_like(padded_index) for _ in range(world_size())]
    rows = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(indices, padded_index)
    dist.all_gather(rows, padded)
    out = values.new_empty((total, *values.shape[1:]), device=device)
    for count, idx, row in zip(counts, indices, rows):
        n = int(count.item())
        out[idx[:n]] = row[:n]
    return out.to(values.device)


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and return its result on every rank; an `AnyteachError` (of any kind:
    a failed run keeps its exit status) or an operating-system error it raises is raised on every rank
    (so no rank waits for a step that failed elsewhere)."""
    if not active():
        return fn()
    result: Any = None
    error = None
    if is_main():
        try:
            result = fn()
        except (AnyteachError, OSError) as e:
            error = e
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result


def agree(fn: Callable[[], T]) -> T:
    """Run `fn` on every rank; if it raises `AnyteachError` on any rank, raise the first such error
    (naming the rank) on every rank.

    Raises:
        AnyteachError: `fn` failed on some rank.
    """
    if not active():
        return fn()
    result: Any = None
    error = None
    try:
        result = fn()
    except AnyteachError as e:
        error = str(e)
    errors: list[Any] = [None] * world_size()
    dist.all_gather_object(errors, error)
    for r, message in enumerate(errors):
        if message is not None:
            raise AnyteachError(f"rank {r} of {world_size()}: {message}" if world_size() > 1 else message)
    return result


__all__ = [
    "active",
    "agree",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "gather_rows",
    "init_from_env",
    "is_main",
    "launched_by_torchrun",
    "local_rank",
    "on_main",
    "rank",
    "world_size",
]
