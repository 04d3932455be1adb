"""Where a study's runs execute: in-process, in local worker processes, or as Ray tasks.

Every executor takes the same `RunTask`s and yields the same plain-dict outcomes as runs finish, so
one study driver drives them all; only the driver writes the study store. A worker runs one
transfer through the engine (`execute_run`), measures the pair's complementary knowledge from the
cached eval predictions, and returns the metrics; it never raises: a failure comes back as an
`error` string (with `user_error` set for an `AnyteachError`, which stops the study). Local
processes use the spawn context with one torch thread each and exit when the driver dies, so a
killed study leaves no orphan writing into its run directories. Ray runs one task per run with the
study's resource request (`num_cpus`, `num_gpus`), on a local Ray instance or an existing cluster.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..analysis.metrics import positive_flips
from ..core.errors import AnyteachError, CorruptCheckpoint, RunFailed, TrainingDiverged, os_error_message
from ..core.io import json_ready
from ..core.registry import Registry, import_plugins
from ..data.predictions import predict
from ..training.transfer import transfer


@dataclass(frozen=True)
class RunTask:
    """One run to execute: the `RunSpec`, its run directory, how many torch threads it may use (0:
    leave torch's setting alone, as the in-process executor does) and the plugins to import first
    (the study's `imports`: user-registered methods)."""

    run: Any  # RunSpec (a frozen, picklable dataclass of the study module, which imports this one)
    run_dir: str
    threads: int = 0
    imports: tuple[str, ...] = ()
    restart: bool = False  # discard the run directory's state first (a retried corrupt checkpoint)
    log: tuple[str, ...] = ()  # experiment trackers (`trackers.TRACKERS`)


def execute_run(task: RunTask) -> dict[str, Any]:
    """Run one transfer (resuming its run directory if it was interrupted) and return its outcome.

    Returns:
        `{"task", "final", "history", "run_dir", "seconds", "complementary_knowledge"}`, or
        `{"task", "error", "kind", "user_error"}` if the run failed: `kind` is `diverged` or
        `corrupt-checkpoint` for a run that cannot succeed as it is (not retried unless asked),
        `error` otherwise; `user_error` marks a problem with the study's input or the machine (an
        unusable model or dataset, a full disk) that stops the study.
    """
    import torch

    if task.threads > 0:
        torch.set_num_threads(int(task.threads))
    start = time.perf_counter()
    run = task.run
    try:
        import_plugins(task.imports)
        result = transfer(
            run.student,
            run.teacher,
            run.data,
            run.method,
            task.run_dir,
            control=False,  # a study runs its controls as runs of their own, paired in the aggregates
            seed=run.seed,
            progress=False,
            restart=task.restart,
            log=task.log,
            **run.option_dict,
        )
        outcome: dict[str, Any] = {
            "task": task,
            "final": json_ready(result.final),
            "history": json_ready(result.history),
            "run_dir": str(result.run_dir),
            "complementary_knowledge": complementary_knowledge(run.student, run.teacher, run.data)
            if run.teacher
            else None,
        }
    except TrainingDiverged as e:
        return {"task": task, "error": str(e), "kind": "diverged", "user_error": False}
    except CorruptCheckpoint as e:
        return {"task": task, "error": str(e), "kind": "corrupt-checkpoint", "user_error": False}
    except AnyteachError as e:
        return {"task": task, "error": str(e), "kind": "error", "user_error": True}
    except OSError as e:  # a full disk stops the study; anything else is recorded and retried next time
        message, code = os_error_message(e)
        return {
            "task": task,
            "error": message,
            "kind": "error",
            "user_error": code == RunFailed.exit_code,
            "exit_code": code,
        }
    except Exception as e:  # noqa: BLE001 - reported to the driver, which records it and goes on
        return {
            "task": task,
            "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}",
            "kind": "error",
            "user_error": False,
        }
    outcome["seconds"] = time.perf_counter() - start
    return outcome


def complementary_knowledge(student: str, teacher: str, data: str) -> float:
    """Positive flips S0 -> T on the eval split, % of samples (from the predictions cache)."""
    s0, t = predict(student, data, "eval"), predict(teacher, data, "eval")
    return positive_flips(s0.predicted, t.predicted, s0.labels)


RunFunction = Callable[[RunTask], dict[str, Any]]


class Executor:
    """Runs tasks and yields their outcomes as they finish. Use as a context manager."""

    def run(self, tasks: Iterable[RunTask], fn: RunFunction = execute_run) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Runs the tasks one after another in this process (the default: simplest to debug)."""

    def run(self, tasks: Iterable[RunTask], fn: RunFunction = execute_run) -> Iterator[dict[str, Any]]:
        import torch

        threads = torch.get_num_threads()
        try:
            for task in tasks:
                yield fn(task)
        finally:
            torch.set_num_threads(threads)


def _worker_init(parent_pid: int) -> None:
    """Worker start-up: one torch thread; exit as soon as the driver is gone."""
    import torch

    torch.set_num_threads(1)

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="anyteach-parent-watch").start()


class LocalProcessExecutor(Executor):
    """Runs the tasks in `workers` spawned local processes, one torch thread each.

    A worker process that dies (killed, out of memory) breaks the whole process pool; the executor
    then starts a new pool and submits the unfinished tasks again (each run resumes from its
    checkpoint). A task whose worker died `max_retries` + 1 times comes back as a failed run.
    """

    def __init__(self, workers: int, max_retries: int = 2):
        self.workers, self.max_retries = workers, max_retries
        self.pool = self._new_pool()

    def _new_pool(self):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(
            self.workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(os.getpid(),)
        )

    def run(self, tasks: Iterable[RunTask], fn: RunFunction = execute_run) -> Iterator[dict[str, Any]]:
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        pending, deaths = list(tasks), dict[int, int]()
        while pending:
            futures = {self.pool.submit(fn, task): task for task in pending}
            lost = []
            try:
                for future in as_completed(futures):
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        lost.append(futures[future])
                        continue
                    yield outcome
            finally:
                for f in futures:
                    f.cancel()
            # tasks run in submission order: the first `workers` lost ones were in flight when a worker died
            order = {id(task): k for k, task in enumerate(pending)}
            lost.sort(key=lambda task: order[id(task)])
            pending = []
            for k, task in enumerate(lost):
                if k < self.workers:
                    deaths[id(task)] = deaths.get(id(task), 0) + 1
                if deaths.get(id(task), 0) > self.max_retries:
                    yield {
                        "task": task,
                        "error": f"its worker process died {deaths[id(task)]} times",
                        "kind": "error",
                        "user_error": False,
                    }
                else:
                    pending.append(task)
            if lost:  # the pool is broken: a fresh one runs what is left
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
    """Runs one Ray task per run, each with the study's resource request.

    Args:
        address: an existing Ray cluster (`ray://host:10001` or `auto`); default: start a local Ray
            instance with `num_cpus` CPUs.
        resources: per-task request: `num_cpus` (default 1; also the task's torch threads),
            `num_gpus` (default 0).
        num_cpus: CPUs of a local instance (ignored with `address`).

    Raises:
        AnyteachError: Ray is not installed or cannot start / connect.
    """

    def __init__(
        self, address: str | None = None, resources: Mapping[str, float] | None = None, num_cpus: int | None = None
    ):
        try:
            import ray
        except ImportError as e:
            raise AnyteachError("the ray executor needs Ray: pip install 'anyteach[cluster]'") from e
        self.ray = ray
        self.resources = {"num_cpus": 1, "num_gpus": 0, **dict(resources or {})}
        self.started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": True,
                "logging_level": "warning",
            }
            if address is None:
                env = {k: os.environ[k] for k in ("ANYTEACH_CACHE", "HF_HUB_OFFLINE", "HF_HOME") if k in os.environ}
                kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1, runtime_env={"env_vars": env})
            else:
                kwargs["address"] = address
            try:
                ray.init(**kwargs)
            except Exception as e:  # noqa: BLE001 - connection and start-up errors are the user's to fix
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise AnyteachError(f"cannot start or reach {where}: {type(e).__name__}: {e}") from e
            self.started = True

    def run(self, tasks: Iterable[RunTask], fn: RunFunction = execute_run) -> Iterator[dict[str, Any]]:
        ray = self.ray
        # a lost worker or node (preemption, OOM) is retried: the run resumes from its checkpoint
        remote = ray.remote(fn).options(
            num_cpus=self.resources["num_cpus"], num_gpus=self.resources["num_gpus"], max_retries=2
        )
        tasks = list(tasks)
        pending = {remote.remote(task): task for task in tasks}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    task = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as e:
                        yield {"task": task, "error": f"ray task failed: {e}", "kind": "error", "user_error": False}
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


EXECUTORS: Registry[Callable[..., Executor]] = Registry("executor")
"""Executor kinds by name: a factory `(workers, address, resources) -> Executor`."""


@EXECUTORS.decorator("local")
def _local(workers: int, address: str | None, resources: Mapping[str, float] | None) -> Executor:
    return InProcessExecutor() if workers <= 1 else LocalProcessExecutor(workers)


@EXECUTORS.decorator("ray")
def _ray(workers: int, address: str | None, resources: Mapping[str, float] | None) -> Executor:
    return RayExecutor(address, resources, num_cpus=workers if workers > 1 else None)


def make_executor(
    kind: str, workers: int = 1, address: str | None = None, resources: Mapping[str, float] | None = None
) -> Executor:
    """The executor of a study: `local` with 1 worker -> in-process, N -> local processes; `ray`.

    Raises:
        AnyteachError: an unknown kind, or Ray missing / unreachable.
    """
    if kind not in EXECUTORS:
        raise AnyteachError(f"unknown executor {kind!r}; use {' or '.join(EXECUTORS)}")
    return EXECUTORS[kind](workers, address, resources)


__all__ = [
    "EXECUTORS",
    "Executor",
    "InProcessExecutor",
    "LocalProcessExecutor",
    "RayExecutor",
    "RunTask",
    "complementary_knowledge",
    "execute_run",
    "make_executor",
]
