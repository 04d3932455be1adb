"""Experiment trackers for transfer runs: TensorBoard, Weights & Biases, MLflow (any combination,
each an optional package: `pip install 'anyteach[tensorboard]'`, `[wandb]`, `[mlflow]`).

A transfer run with `log=("tensorboard", ...)` opens one tracker run per transfer run, named after
the pair and the method (`mlp <- gru: kl+dp`), records the run's configuration, and logs

- every evaluated epoch's numeric metrics at step = epoch (epoch 0 is the student before transfer);
- while training, the loss (and each of its terms) and the learning rate under `step/` (`step/loss`,
  `step/loss_kl`, `step/lr`) at step = optimiser step, throttled: one point every `STEP_EVERY`
  optimiser steps, or sooner once `STEP_SECONDS` have passed since the last point (slow steps), each
  loss the mean over the steps since the last point (one device-to-host copy per point, none per step).
  W&B plots the `step/` values against `optimizer_step` and the others against `epoch`.

Where each writes follows the tool's own settings: TensorBoard event files go into the run directory's
`tensorboard/`; W&B honours `WANDB_MODE` (`offline` writes under the run directory's `wandb/`),
`WANDB_PROJECT` (default `anyteach`) and its login; MLflow honours `MLFLOW_TRACKING_URI` and
`MLFLOW_EXPERIMENT_NAME` (default `anyteach`). Nothing here is needed to run anyteach: trackers are
never imported unless named.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import torch

from .errors import AnyteachError
from .registry import Registry


@dataclass(frozen=True)
class TrackerKind:
    """A tracker `--log` can name: the package it needs, the anyteach extra that installs it, and the
    class that opens one tracker run (`(run_name, config, run_dir)`, with `log(epoch, metrics)`,
    `log_step(optimiser_step, metrics)` and `close()`)."""

    module: str
    extra: str
    opener: Callable[[str, Mapping[str, Any], Path], Any]


TRACKERS: Registry[TrackerKind] = Registry("tracker")
"""Tracker name -> `TrackerKind` (filled below, after the classes)."""


def check_trackers(names: Sequence[str]) -> tuple[str, ...]:
    """The tracker names, checked: known and installed.

    Raises:
        AnyteachError: an unknown tracker, or one whose package is not installed (naming the extra).
    """
    checked = []
    for name in names:
        name = name.strip().lower()
        if name not in TRACKERS:
            raise AnyteachError(f"unknown tracker {name!r} for --log; trackers: {', '.join(TRACKERS)}")
        module, extra = TRACKERS[name].module, TRACKERS[name].extra
        if importlib.util.find_spec(module) is None:
            raise AnyteachError(f"--log {name} needs the {module} package: pip install 'anyteach[{extra}]'")
        if name not in checked:
            checked.append(name)
    return tuple(checked)


def scalar_metrics(row: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a metrics row, nested keys joined by `/` (`vs_original/transfer_delta`);
    texts, lists and missing values are left out."""
    out: dict[str, float] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(scalar_metrics(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A run's configuration as flat `key: text` pairs (what MLflow parameters hold)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{name}."))
        else:
            out[name] = json.dumps(value, default=str) if not isinstance(value, str) else value
    return out


STEP_EVERY = 20
"""Optimiser steps between two per-step points of the loss and learning rate."""
STEP_SECONDS = 30.0
"""Seconds after which the next optimiser step is logged even if `STEP_EVERY` steps have not passed."""


class _TensorBoard:
    def __init__(self, run_name: str, config: Mapping[str, Any], run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("run", run_name)
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```")

    def log(self, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


def _wandb_mode() -> Literal["online", "offline", "disabled", "shared"] | None:
    """`WANDB_MODE` as W&B's `init` takes it (None: W&B's own default and reading)."""
    mode = os.environ.get("WANDB_MODE")
    return mode if mode in ("online", "offline", "disabled", "shared") else None  # type: ignore[return-value]


class _WandB:
    def __init__(self, run_name: str, config: Mapping[str, Any], run_dir: Path):
        import wandb

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "anyteach"),
            # read at every run: W&B keeps the settings of its first run in a process, so a WANDB_MODE set
            # later (in a notebook, after a run that could not log in) would otherwise be ignored
            mode=_wandb_mode(),
            name=run_name,
            config=dict(config),
            dir=str(run_dir),
            reinit="create_new",
        )
        # two x axes: W&B's own step only grows, so epochs and optimiser steps are metrics plotted against
        self.run.define_metric("epoch")
        self.run.define_metric("optimizer_step")
        self.run.define_metric("step/*", step_metric="optimizer_step")
        self.against_epoch: set[str] = set()

    def log(self, epoch: int, metrics: dict[str, float]) -> None:
        for key in metrics.keys() - self.against_epoch:
            self.run.define_metric(key, step_metric="epoch")
            self.against_epoch.add(key)
        self.run.log({"epoch": epoch, **metrics})

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log({"optimizer_step": step, **metrics})

    def close(self) -> None:
        self.run.finish()


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Environment variables set to `values` inside the block (those the user set are left as they are)."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class _MLflow:
    def __init__(self, run_name: str, config: Mapping[str, Any], run_dir: Path):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "anyteach")
        with _environment(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="20"):
            # the first request answers at once whether the store is there (MLflow's own retries of an
            # unreachable server take minutes); later requests retry as MLflow is configured
            experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id if experiment is not None else self.client.create_experiment(experiment_name)
        )
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        params = [Param(k, v[:6000]) for k, v in flat_config(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log(self, epoch: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, epoch) for k, v in metrics.items()])

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self.log(step, metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


for _name, _opener in (("tensorboard", _TensorBoard), ("wandb", _WandB), ("mlflow", _MLflow)):
    TRACKERS.add(_name, TrackerKind(_name, _name, _opener))


TRACKER_HINTS = {
    "wandb": "log in with `wandb login` (or set WANDB_API_KEY), or set WANDB_MODE=offline to log under the run "
    "directory",
    "mlflow": "set MLFLOW_TRACKING_URI to a tracking server (http://host:5000) or, to log offline, to file:DIR with "
    "MLFLOW_ALLOW_FILE_STORE=true",
    "tensorboard": "check that the run directory is writable",
}
"""What to do when a tracker cannot start, per tracker."""


def _open(name: str, run_name: str, config: Mapping[str, Any], run_dir: Path) -> Any:
    """Open one tracker run; a tracker that cannot start (no login, an unusable store, no network) is one line.

    Raises:
        AnyteachError: the tracker's own error in one line, with what to do.
    """
    try:
        return TRACKERS[name].opener(run_name, config, run_dir)
    except Exception as e:  # noqa: BLE001 - every tracker library raises its own kinds; each is the same problem
        reason = " ".join(str(e).split())
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise AnyteachError(
            f"--log {name} cannot start ({type(e).__name__}: {reason}); {TRACKER_HINTS.get(name, '')}"
        ) from e


class RunTrackers:
    """The trackers of one transfer run: `log(history)` after each evaluated epoch logs the rows not
    logged yet; `log_step(step, losses, lr)` after each optimiser step (the trainer's `on_step`) logs
    the loss and learning rate, throttled (`STEP_EVERY`, `STEP_SECONDS`); `close()` at the end (also
    after a failure: what was logged stays)."""

    def __init__(
        self,
        names: Sequence[str],
        run_name: str,
        config: Mapping[str, Any],
        run_dir: str | Path,
        every_steps: int = STEP_EVERY,
        every_seconds: float = STEP_SECONDS,
    ):
        self.opened: list[Any] = []
        try:
            for name in check_trackers(names):
                self.opened.append(_open(name, run_name, config, Path(run_dir)))
        except AnyteachError:
            self.close()
            raise
        self.logged_epoch = -1
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.last_point = time.monotonic()

    def log_step(self, step: int, losses: Mapping[str, torch.Tensor], lr: float) -> None:
        """One optimiser step's loss terms (tensors, on the device) and the learning rate it used.
        Summed on the device; a point (`step/loss` and each term, `step/loss_kl`, means since the last point,
        `step/lr`) goes to the trackers every `every_steps` steps or after `every_seconds`."""
        for name, value in losses.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.steps += 1
        now = time.monotonic()
        if step % self.every_steps and now - self.last_point < self.every_seconds:
            return
        means = {name: float(total) / self.steps for name, total in self.sums.items()}
        metrics = {"step/loss": sum(means.values()), **{f"step/{k}": v for k, v in means.items()}, "step/lr": lr}
        metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
        for tracker in self.opened:
            tracker.log_step(step, metrics)
        self.sums, self.steps, self.last_point = {}, 0, now

    def log(self, history: Sequence[Mapping[str, Any]]) -> None:
        for row in history:
            epoch = int(row.get("epoch", -1))
            if epoch <= self.logged_epoch:
                continue
            metrics = scalar_metrics({k: v for k, v in row.items() if k != "epoch"})
            for tracker in self.opened:
                tracker.log(epoch, metrics)
            self.logged_epoch = epoch

    def close(self) -> None:
        for tracker in self.opened:
            tracker.close()


def tracker_run_name(student: str, teachers: Sequence[str], method: str) -> str:
    """`mlp <- gru: kl+dp` (no teacher: `mlp: xe`)."""
    return f"{student} <- {', '.join(teachers)}: {method}" if teachers else f"{student}: {method}"


__all__ = [
    "RunTrackers",
    "STEP_EVERY",
    "STEP_SECONDS",
    "TRACKERS",
    "TRACKER_HINTS",
    "check_trackers",
    "flat_config",
    "scalar_metrics",
    "tracker_run_name",
]
