"""`transfer(...)`: one student, one or more teachers, one method, one run directory.

This is the public entry point of knowledge transfer (the CLI's `anyteach transfer` is a thin layer
over it). It validates the whole configuration before any work (unknown option, value out of range,
unknown method, class-count mismatch), then runs the `Trainer` in a run directory holding

- `config.json`: the resolved, typed configuration (models by content identity, data, method,
  method options, training options);
- `metrics.jsonl`: one JSON object per evaluated epoch, epoch 0 = the student before transfer;
- `checkpoint.pt`: the full training state after the last finished epoch (atomic);
- `student.safetensors` + `student.json`: the exported student (for MCL: the slow weights), a
  model reference that `load_model` accepts;
- `final.json`: the metrics of the exported student, written last: it marks a finished run.

Calling `transfer` again with the same configuration and directory resumes an interrupted run, or
returns a finished one without training; a different configuration on an existing run directory is
an error unless `overwrite=True`.

Launched by torchrun (or called inside an initialised process group) the same call trains one
student with DistributedDataParallel over the group's processes (`anyteach.ddp`): every rank loads
and checks the models and the data (an error on any rank stops all of them with the same message),
rank 0 alone writes the run directory, and every rank returns the same result. The run directory
must be visible to every rank (any single machine; a shared filesystem across machines).
"""

from __future__ import annotations

import dataclasses
import json
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from ..analysis.metrics import SIGNIFICANCE, mcnemar_p_values
from ..core import process_group as distributed
from ..core.errors import AnyteachError, RunFailed
from ..core.io import (
    cache_dir,
    exclusive_lock,
    read_json,
    slug,
    tensors_readable,
    text_digest,
    write_json,
    write_text,
)
from ..core.options import NOT_COMPARED, TRAINING_OPTIONS, TrainingOptions, split_options
from ..core.trackers import RunTrackers, check_trackers, tracker_run_name
from ..data.predictions import check_compatible, predict
from ..data.references import Dataset, load_dataset
from ..methods import METHODS, MethodPreset, get_method, resolve_method_options
from ..methods.presets import (
    LABELS_ONLY_PRESET,
    NO_LABELS_PRESET,
    TEACHING_PRESET,
    TEACHING_WITH_LABELS_PRESET,
)
from ..models.references import Classifier, load_model, save_model, weights_digest
from .ddp import check_distributed_run, rank_device
from .trainer import Trainer, resolve_device, resolve_lr

CONFIG_FORMAT = "anyteach-transfer/1"
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "student.safetensors", "student.json", "final.json")
RUN_LOCK_WAIT = 10.0
"""Seconds a run waits for its directory's lock (held by a process still exiting) before giving up."""

ModelArg = str | Path | torch.nn.Module
"""A model: a reference, a `Classifier`, or any `torch.nn.Module` (see `load_model`)."""
DataArg = str | Path | Dataset | Mapping[str, Any]
"""Data: a reference, a `Dataset`, or one object per split (see `load_dataset`)."""


# ---------------------------------------------------------------------------------------------
# Results


class ExportedStudent:
    """What every transfer result shares: the final metrics and the exported student.

    Subclasses are dataclasses with `run_dir`, `final` and `student_path`.
    """

    run_dir: Path
    final: dict[str, Any] | None
    student_path: Path | None

    @property
    def transfer_delta(self) -> float | None:
        """Δ of the exported student against the original one, pp (None while unfinished)."""
        return None if self.final is None else self.final["transfer_delta"]

    def load_student(self) -> Classifier:
        """The exported student as a classifier.

        Raises:
            AnyteachError: the run exported no student (unfinished, or a method such as `ensemble`).
        """
        if self.student_path is None:
            raise AnyteachError(f"run {self.run_dir} has no exported student (unfinished, or its method exports none)")
        return load_model(self.student_path)


@dataclass
class TransferResult(ExportedStudent):
    """The outcome of a transfer run.

    Attributes:
        run_dir: the run directory.
        config: the resolved configuration (as in `config.json`).
        history: metrics rows, one per evaluated epoch, epoch 0 = before transfer.
        final: metrics of the exported student (None while the run is unfinished).
        student_path: the exported student's weights (None for `ensemble` and unfinished runs).
        finished: False when the run stopped early on request and can be resumed.
    """

    run_dir: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    final: dict[str, Any] | None
    student_path: Path | None
    finished: bool = True
    choices: list[str] = dataclasses.field(default_factory=list)
    """What was chosen for the user (the data, the method) and why, in words."""

    @property
    def control(self) -> dict[str, Any] | None:
        """The comparison with the strongest no-teacher control (`final["control"]`), or None."""
        return (self.final or {}).get("control")

    @property
    def verdict(self) -> str:
        """One line: Δ, the control's Δ, Δ beyond the control with its paired test, and whether the teacher
        added anything (or why there is no such claim)."""
        if self.final is None:
            return "unfinished: run the same transfer again to resume it"
        return verdict_line(self.final, self.config["method"])

    def __str__(self) -> str:
        f = self.final or {}
        teachers = ", ".join(t["name"] for t in self.config["teachers"]) or "no teacher"
        lines = [
            f"{self.config['method']}: {self.config['student']['name']} <- {teachers} ({self.config['data']['ref']})"
        ]
        if f:
            lines.append(f"  student accuracy {f['student_acc_before']:.2f}% -> {f['student_acc']:.2f}%")
        return "\n".join([*lines, f"  {self.verdict}"])

    def _repr_html_(self) -> str:
        import html

        f = self.final or {}
        c = self.control or {}
        rows = [("method", self.config["method"]), ("student", self.config["student"]["name"])]
        rows.append(("teachers", ", ".join(t["name"] for t in self.config["teachers"]) or "none"))
        if f:
            rows += [
                ("accuracy", f"{f['student_acc_before']:.2f}% → {f['student_acc']:.2f}%"),
                ("Δ", f"{f['transfer_delta']:+.2f} pp"),
            ]
        if c:
            rows += [
                (f"control ({c['method']}) Δ", f"{c['transfer_delta']:+.2f} pp"),
                ("Δ beyond the control", f"{c['delta_beyond_control']:+.2f} pp (p = {c['p_better']:.2g})"),
            ]
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
        )
        return f"<table>{cells}</table><p><b>{html.escape(self.verdict)}</b></p>"

    @classmethod
    def load(cls, run_dir: str | Path) -> TransferResult:
        """Read a run directory written by `transfer`.

        Raises:
            AnyteachError: the directory holds no transfer run.
        """
        run_dir = Path(run_dir)
        if not (run_dir / "config.json").exists():
            raise AnyteachError(f"{run_dir} is not a transfer run directory (no config.json)")
        config = read_json(run_dir / "config.json", "run configuration")
        metrics = run_dir / "metrics.jsonl"
        history = _read_history(metrics) if metrics.exists() else []
        final_path = run_dir / "final.json"
        final = read_json(final_path, "final metrics") if final_path.exists() else None
        if final is not None and not (isinstance(final, dict) and "student_acc" in final):
            raise RunFailed(
                f"{final_path} is damaged (not a mapping of final metrics); run again with --restart "
                "to train this run again"
            )
        student = run_dir / "student.safetensors"
        if final is not None and student.exists() and not tensors_readable(student):
            raise RunFailed(
                f"{student} is damaged (empty, truncated or not a safetensors file); run again with --restart "
                "to train this run again"
            )
        return cls(run_dir, config, history, final, student if student.exists() and final else None, final is not None)


def _read_history(path: Path) -> list[dict[str, Any]]:
    """The rows of a run's `metrics.jsonl`.

    Raises:
        RunFailed: a row that is not a JSON object (the file was damaged after it was written).
    """
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or "epoch" not in row:
            raise RunFailed(
                f"{path} is damaged (line {number} is not a metrics row); run again with --restart to "
                "train this run again"
            )
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Configuration


def resolve_run_options(method: str, options: Mapping[str, Any]) -> tuple[TrainingOptions, dict[str, Any]]:
    """A run's keyword options validated and resolved: the training options (the preset's recipe
    under the options given, with the learning rate the run uses) and the method's full option set.

    Raises:
        AnyteachError: an unknown method or option, an option the method does not use, or a value of the
            wrong type or out of range (the message names the option).
    """
    training_kw, method_kw = split_options(options)
    training = TrainingOptions(**{**get_method(method).recipe, **training_kw})  # the preset's recipe, then the run's
    method_options = resolve_method_options(method, method_kw)
    return dataclasses.replace(training, lr=resolve_lr(training, method)), method_options


def model_identity(model: Classifier) -> str:
    """The model's content identity; for a model built in code, a digest of its weights and of what in
    its metadata changes its outputs."""
    if model.info.identity:
        return model.info.identity
    return text_digest(f"{weights_digest(model.net)}|{model.info.outputs_key()}")


def model_entry(model: Classifier) -> dict[str, Any]:
    """How a run's configuration names a model: reference, name, content identity, class count."""
    return {
        "ref": model.info.source or model.name,
        "name": model.name,
        "identity": model_identity(model),
        "num_classes": model.num_classes,
    }


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that decides what a run computes (no refs, devices, eval batch sizes)."""
    c = json.loads(json.dumps(config))
    for entry in [c["student"], *c["teachers"], *([c["original"]] if c.get("original") else [])]:
        entry.pop("ref", None)
    c["data"].pop("ref", None)
    # an option that an older anyteach did not have ran at what is now its default
    c["training"] = {**{name: option.default for name, option in TRAINING_OPTIONS.items()}, **c["training"]}
    for name, option in TRAINING_OPTIONS.items():  # values written before an option changed type
        for old, new in option.aliases:
            if c["training"][name] is old:
                c["training"][name] = new
    for key in NOT_COMPARED:  # settings a run may resume with other values of
        c["training"].pop(key, None)
    return c


def data_entry(dataset: Dataset) -> dict[str, Any]:
    """How a run's configuration names its data: reference, split identities, class count."""
    entry = {
        "ref": dataset.ref,
        "transfer": dataset.split_identity("transfer"),
        "eval": dataset.split_identity("eval"),
        "num_classes": dataset.num_classes,
    }
    if dataset.has_split("calib"):
        entry["calib"] = dataset.split_identity("calib")
    return entry


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return f"{path} ({a!r} in the run, {b!r} now)"


def _why(difference: str) -> str:
    """What a configuration difference means, in words, where its path alone does not say."""
    path = difference.split(" ", 1)[0]
    if path.startswith("data.") and path.split(".")[1] in ("transfer", "eval", "calib", "train"):
        split = path.split(".")[1]
        return f": the files of the {split} split changed (images added, removed, edited or relabelled)"
    if path.endswith(".identity"):
        return ": the model file holds other weights"
    return ""


def default_run_dir(config: dict[str, Any]) -> Path:
    """Where a run goes when no `out` is given: the cache, keyed by everything that decides the run."""
    digest = text_digest(json.dumps(_comparable(config), sort_keys=True))
    teachers = "+".join(t["name"] for t in config["teachers"]) or "none"
    return (
        cache_dir()
        / "runs"
        / f"{slug(config['student']['name'], 40)}--{slug(teachers, 40)}--{slug(config['method'], 40)}-{digest}"
    )


# ---------------------------------------------------------------------------------------------
# Terminal progress


class ConsoleReporter:
    """Live progress: a step bar per run and one table row per epoch in a terminal; in a log (stderr
    piped or redirected, a batch job) no bar but a plain line every `every_steps` steps or
    `every_seconds` seconds inside an epoch, whichever comes first."""

    COLUMNS = (
        ("epoch", "epoch", "{:d}"),
        ("acc %", "student_acc", "{:.2f}"),
        ("Δ pp", "transfer_delta", "{:+.2f}"),
        ("gain", "knowledge_gain", "{:.2f}"),
        ("loss", "knowledge_loss", "{:.2f}"),
        ("rate %", "transfer_rate", "{:.1f}"),
        ("to T %", "routed_to_teacher", "{:.1f}"),
        ("p_gain", "p_gain", "{:.0e}"),
        ("p_loss", "p_loss", "{:.0e}"),
        ("train loss", "train_loss", "{:.4f}"),
        ("s", "seconds_train", "{:.1f}"),
    )
    WIDTHS = (5, 6, 6, 5, 5, 6, 6, 6, 6, 10, 6)

    def __init__(self, title: str, console=None, every_steps: int = 100, every_seconds: float = 30.0):
        from ..core.terminal import SafeConsole

        self.title = title
        self.console = console or SafeConsole(stderr=True)
        self.progress: Any = None  # a rich Progress on a terminal
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.done = self.total = self.steps_per_epoch = 0
        self.last_line = time.monotonic()

    def _line(self, row: dict[str, Any]) -> str:
        cells = []
        for (_, key, fmt), width in zip(self.COLUMNS, self.WIDTHS):
            value = row.get(key)
            cells.append((fmt.format(value) if value is not None else "-").rjust(width))
        return " ".join(cells)

    def start(self, epochs: int, steps_per_epoch: int, history: list[dict[str, Any]]) -> None:
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console.print(f"[bold]{escape(self.title)}[/bold]", highlight=False, soft_wrap=True)
        header = " ".join(h.rjust(w) for (h, _, _), w in zip(self.COLUMNS, self.WIDTHS))
        self.console.print(header, style="dim", highlight=False, soft_wrap=True)
        for row in history:
            self.epoch(row)
        done = history[-1]["epoch"] if history else 0
        self.done, self.total = done * steps_per_epoch, epochs * steps_per_epoch
        self.steps_per_epoch, self.started, self.last_line = steps_per_epoch, time.monotonic(), time.monotonic()
        if not self.console.is_terminal:
            return
        self.progress = Progress(
            TextColumn("  training"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("steps", total=max(0, (epochs - done) * steps_per_epoch))

    def step(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress.advance(self.task)
            return
        now = time.monotonic()
        if self.done % self.every_steps and now - self.last_line < self.every_seconds:
            return
        self.last_line = now
        epoch, in_epoch = divmod(self.done - 1, max(self.steps_per_epoch, 1))
        self.console.print(
            f"  step {self.done}/{self.total} (epoch {epoch + 1}, step {in_epoch + 1}/"
            f"{self.steps_per_epoch}), {now - self.started:.0f} s",
            highlight=False,
            soft_wrap=True,
        )

    def epoch(self, row: dict[str, Any]) -> None:
        target = self.progress.console if self.progress is not None else self.console
        target.print(self._line(row), highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


# ---------------------------------------------------------------------------------------------
# The entry point


def as_model_list(models: ModelArg | Sequence[ModelArg] | None) -> list[ModelArg]:
    """One model argument or several, as a list (None: no models)."""
    if models is None:
        return []
    if isinstance(models, (str, Path, torch.nn.Module)):  # a network is one model, even an iterable one
        return [models]
    return list(models)


@dataclass
class RunInputs:
    """A run's data and models, loaded and checked against each other (the class counts agree)."""

    dataset: Dataset
    student: Classifier
    teachers: list[Classifier]
    original: Classifier | None = None

    def config(
        self, format: str, method: str, method_options: dict[str, Any], training: TrainingOptions, **extra: Any
    ) -> dict[str, Any]:
        """The run's configuration: models by content identity, data, method, options (and `extra`)."""
        config = {
            "format": format,
            "student": model_entry(self.student),
            "teachers": [model_entry(t) for t in self.teachers],
            "data": data_entry(self.dataset),
            "method": method,
            "method_options": method_options,
            "training": asdict(training),
            **extra,
        }
        if self.original is not None:
            config["original"] = model_entry(self.original)
        return config


def load_run_inputs(
    student: ModelArg,
    teachers: Sequence[ModelArg],
    data: str | Path | Dataset | Mapping[str, Any],
    original: ModelArg | None = None,
) -> RunInputs:
    """Load the data and the models of a run and check each model against the data.

    Raises:
        AnyteachError: a reference that does not resolve, or a model whose class count differs from the data's.
    """
    dataset = load_dataset(data)
    inputs = RunInputs(
        dataset,
        load_model(student),
        [load_model(t) for t in teachers],
        load_model(original) if original is not None else None,
    )
    for model in [inputs.student, *inputs.teachers, *([inputs.original] if inputs.original is not None else [])]:
        check_compatible(model, dataset)
    return inputs


class RunDir:
    """A run's directory: its configuration, the file that marks it finished, and a lock.

    `check` reads what is there and decides (writing nothing): a new run, this run to resume or
    already finished, or a different run to replace (`overwrite`) or refuse. `claim` then takes
    the directory: it creates it, holds an exclusive lock for the run's lifetime (the operating
    system releases it when the process dies, so a killed run never blocks the next), removes
    temporary files an interrupted write left behind, and writes the configuration.

    Args:
        path: the directory.
        config_file: the configuration's file name (`config.json`, `multi.json`).
        finished_file: the file written last, which marks a finished run (`final.json`, `summary.json`).
        format: the configuration's `format` value; a directory holding another is not ours.
        what: what it holds, for messages (`"a run"`).
    """

    def __init__(self, path: Path, config_file: str, finished_file: str, format: str, what: str):
        self.path, self.config_file, self.finished_file = Path(path), config_file, finished_file
        self.format, self.what = format, what

    @property
    def finished(self) -> bool:
        return (self.path / self.finished_file).exists()

    def check(self, config: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
        """The configuration this run replaces (`overwrite` given and it differs), else None.

        Raises:
            AnyteachError: the path is a file, the directory holds something that is not an anyteach
                run of this kind, or a different run while `overwrite` is False (naming the first
                difference).
        """
        if self.path.exists() and not self.path.is_dir():
            raise AnyteachError(f"run directory {self.path} is a file; choose a directory")
        config_path = self.path / self.config_file
        if not config_path.exists():
            return None
        existing = read_json(config_path, "run configuration")
        if not isinstance(existing, dict) or existing.get("format") != self.format:
            raise AnyteachError(
                f"{config_path} is not the configuration of {self.what} (no format {self.format!r}); "
                "choose another directory"
            )
        if _comparable(existing) == _comparable(config):
            return None
        if not overwrite:
            difference = _first_difference(_comparable(existing), _comparable(config))
            raise AnyteachError(
                f"{self.path} holds {self.what} with a different configuration (first difference: "
                f"{difference}{_why(difference)}); choose another directory, or pass --overwrite "
                "(overwrite=True) to replace it"
            )
        return existing

    @contextmanager
    def claim(self, config: dict[str, Any], prepare: Callable[[], None] | None = None) -> Iterator[None]:
        """Create the directory, lock it, clean up after interrupted writes, call `prepare` (e.g. remove
        a replaced run's files), write the configuration. Under torchrun rank 0 does all of it and
        holds the lock; every rank gets its errors.

        Raises:
            AnyteachError: another process is running this run.
        """
        with ExitStack() as held:

            def setup() -> None:
                self.path.mkdir(parents=True, exist_ok=True)
                held.enter_context(
                    exclusive_lock(
                        self.path / ".lock",
                        f"another anyteach process is running {self.what} in {self.path}",
                        wait=RUN_LOCK_WAIT,
                    )
                )
                for stale in self.path.glob(".*.tmp"):  # what a killed atomic write left behind
                    stale.unlink(missing_ok=True)
                if prepare is not None:
                    prepare()
                write_json(self.path / self.config_file, config)

            distributed.on_main(setup)
            yield


def check_method_options(method_options: Mapping[str, Any], dataset: Dataset) -> None:
    """Method options that depend on the data: `top_k` cannot exceed the number of classes.

    Raises:
        AnyteachError: naming the option.
    """
    top_k = method_options.get("top_k")
    if top_k is not None and top_k > dataset.num_classes:
        raise AnyteachError(
            f"option top_k={top_k} is out of range: dataset {dataset.ref!r} has {dataset.num_classes} classes"
        )


@dataclass
class RunPlan:
    """A run checked before anything is written: its options resolved and validated, its models and
    data loaded and checked against each other, and the distributed checks passed (once, here).

    Attributes:
        method: the preset's name; `preset` the preset.
        training: the resolved training options; `method_options` the method's.
        options: the options as given (a multi-teacher run passes them on to its stages).
        inputs: the loaded data and models.
        device: where this rank trains.
        overwrite, progress, stop_after_epoch: how the run is to be carried out.
    """

    method: str
    preset: MethodPreset
    training: TrainingOptions
    method_options: dict[str, Any]
    options: dict[str, Any]
    inputs: RunInputs
    device: torch.device
    overwrite: bool = False
    progress: bool = True
    stop_after_epoch: int | None = None

    def config(self, format: str, **extra: Any) -> dict[str, Any]:
        """The run's configuration (see `RunInputs.config`)."""
        return self.inputs.config(format, self.method, self.method_options, self.training, **extra)


def check_teachers(preset: MethodPreset, teachers: Sequence[ModelArg]) -> None:
    """A single transfer's teachers: one if the method needs one, none if it takes none, several
    only for a method that routes between them.

    Raises:
        AnyteachError: naming the method and the remedy.
    """
    method = preset.name
    if preset.needs_teacher and not teachers:
        raise AnyteachError(f"method {method!r} needs a teacher")
    if teachers and not preset.needs_teacher:
        raise AnyteachError(
            f"method {method!r} takes no teacher (it trains on the labels or on the student's "
            f"own outputs); drop the teacher"
        )
    if len(teachers) > 1 and not preset.multi_teacher:
        raise AnyteachError(
            f"method {method!r} takes one teacher, got {len(teachers)}; methods that route "
            "between several: " + ", ".join(n for n, p in METHODS.items() if p.multi_teacher)
        )


def plan_run(
    student: ModelArg,
    teachers: Sequence[ModelArg],
    data: str | Path | Dataset | Mapping[str, Any],
    method: str,
    options: Mapping[str, Any],
    check: Callable[[MethodPreset, Sequence[ModelArg]], None] = check_teachers,
    original: ModelArg | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> RunPlan:
    """The planning step shared by `transfer` and `transfer_multi`: everything that can be refused
    is refused here, before any model is trained and before the run directory is touched.

    Args:
        check: the teacher check of the caller (`check_teachers` for a single transfer), run
            before any model is loaded.

    Raises:
        AnyteachError: an unknown method or option, a value out of range, teachers the method (or
            the caller) does not take, a run that cannot train under the current process group,
            models that do not fit the data.
    """
    # everything that needs no model: options, method, teachers, the process group
    training, method_options = resolve_run_options(method, options)
    preset = get_method(method)
    if stop_after_epoch is not None and stop_after_epoch < 1:
        raise AnyteachError(f"stop_after_epoch must be >= 1, got {stop_after_epoch}")
    check(preset, teachers)
    device = rank_device(resolve_device(training.device))
    check_distributed_run(preset, training, device)
    # models and data, checked against each other (on every rank: each must see them)
    inputs = distributed.agree(lambda: load_run_inputs(student, teachers, data, original))
    check_method_options(method_options, inputs.dataset)
    check_labels(preset, method_options, inputs.dataset)
    return RunPlan(
        method, preset, training, method_options, dict(options), inputs, device, overwrite, progress, stop_after_epoch
    )


def export_student(
    model: Classifier,
    path: Path,
    name: str,
    final: dict[str, Any],
    class_names: Sequence[str] | None = None,
    **transfer_info: Any,
) -> Path:
    """Save a transferred student as a model reference (safetensors + sidecar naming how it was made:
    `transfer_info`, Δ, and the no-teacher control and verdict where `final` has them; the model card
    of `anyteach push` is written from these). `class_names`: the data's, in the order of its labels."""
    model = model.to("cpu")
    model.info.name = name
    model.info.extra = {}  # the original's measurements (zoo recipe, plateau check) do not describe this model
    if class_names:
        model.info.class_names = list(class_names)
    made = {**transfer_info, "transfer_delta": final["transfer_delta"]}
    made.update({key: final[key] for key in ("control", "verdict") if key in final})
    return save_model(model, path, eval_acc=round(final["student_acc"], 2), transfer=made)


def default_data(student: ModelArg) -> tuple[str, str]:
    """The dataset a student is transferred on when the user names none, and why that one.

    A zoo member gets the data its zoo was trained on; a model that takes MNIST-1D signals gets
    `mnist1d`; any other model (an image model) has no default.

    Returns:
        The dataset reference and the reason, in words.

    Raises:
        AnyteachError: the student is an image model (or any model not made for MNIST-1D).
    """
    if isinstance(student, str) and student.startswith("zoo:"):
        from ..zoo import get_zoo
        from ..zoo.zoos import parse_zoo_ref

        name, seed, _ = parse_zoo_ref(student)
        return get_zoo(name, seed).data, f"zoo {name}'s own"
    size = load_model(student).info.preprocessing.input_size
    if size is not None and len(size) > 1:
        raise AnyteachError(
            f"give the data: --data <dataset reference> (e.g. --data imagefolder:/path/to/images); "
            f"the student {student} takes inputs of shape {tuple(size)}, and the default dataset, "
            "mnist1d, is for MNIST-1D models"
        )
    return "mnist1d", "the default for MNIST-1D models"


def default_method(dataset: Dataset, teachers: Sequence[ModelArg] = ()) -> tuple[str, str]:
    """The method a transfer uses when the user names none, chosen by the data they have, and why.

    Data the student did not train on (unlabelled or fresh) with a labelled calib split: the teaching preset
    (with the train labels as well where there are any); a calib split alone: the teaching preset on the
    train data; otherwise the best method for labels only (or, on unlabelled data without a calib split,
    one that needs no labels).

    Raises:
        AnyteachError: no teacher was given (a method without one must be named: `xe`, `self`).
    """
    if not teachers:
        raise AnyteachError("give a teacher (--teacher <model reference>), or name a method that takes none (xe, self)")
    calib = dataset.has_split("calib")
    if dataset.transfer_unseen and calib:
        if dataset.has_split("train"):
            return TEACHING_WITH_LABELS_PRESET, (
                "your transfer data are samples the student did not train on, with a labelled calib split and "
                "labelled train samples: the teaching preset that also fine-tunes on the train labels"
            )
        return TEACHING_PRESET, "samples the student did not train on, and a labelled calib split: the teaching preset"
    if calib:
        return TEACHING_PRESET, "a labelled calib split to guard it: the teaching preset, on the train data"
    if not dataset.transfer_labelled:
        return NO_LABELS_PRESET, (
            "unlabelled transfer data and no calib split (the teaching preset needs one to choose its guard: "
            "add calib/): data partitioning without labels"
        )
    return LABELS_ONLY_PRESET, (
        "labels only (no calib split, no unlabelled data): data partitioning; add a calib/ split of held-out "
        "labelled samples (and unlabelled/ data) for the teaching preset"
    )


def check_labels(preset: MethodPreset, method_options: Mapping[str, Any], dataset: Dataset) -> None:
    """A method reads only labels the data has.

    Raises:
        AnyteachError: the method reads the transfer split's labels but it has none, or fine-tunes on a split
            the data lacks.
    """
    used = preset.labelled_splits(method_options)
    if "transfer" in used and not dataset.transfer_labelled:
        raise AnyteachError(
            f"method {preset.name!r} reads the labels of the transfer data, but the transfer split of "
            f"{dataset.ref!r} is unlabelled; choose a method that needs none (e.g. {TEACHING_PRESET}, "
            f"{NO_LABELS_PRESET})"
        )
    split = preset.labelled_split
    if split is not None and not dataset.has_split(split):
        how = (
            " (a calibration split: mnist1d:calib=5000, or a calib/ folder of an image folder)"
            if split == "calib"
            else ""
        )
        raise AnyteachError(
            f"method {preset.name!r} fine-tunes on the labels of the {split} split, which {dataset.ref!r} does "
            f"not have{how}"
        )


def verdict_line(final: Mapping[str, Any], method: str) -> str:
    """A run's verdict in one line (see `TransferResult.verdict`)."""
    delta = f"Δ {final['transfer_delta']:+.2f} pp ({final['student_acc_before']:.2f}% → {final['student_acc']:.2f}%)"
    control = final.get("control")
    preset = METHODS.get(method) if method in METHODS else None
    if preset is not None and not preset.needs_teacher:
        return f"{delta}: {method} uses no teacher, so this run is itself a no-teacher control"
    if preset is not None and not preset.trains:
        return f"{delta}: {method} trains nothing; its Δ is what the student and teacher give together"
    if not control:
        return (
            f"{delta}; no no-teacher control was run, so this is not a transfer claim: the same training "
            "without a teacher may give as much"
        )
    beyond = (
        f"beyond the control {control['delta_beyond_control']:+.2f} pp ({control['samples_better']} eval samples "
        f"better, {control['samples_worse']} worse; p = {control['p_better']:.2g})"
    )
    if control["teacher_added"]:
        outcome = "the teacher added knowledge"
    elif control["p_worse"] < SIGNIFICANCE:
        outcome = f"the control did better (p = {control['p_worse']:.2g}): the teacher cost accuracy"
    else:
        outcome = "the teacher added nothing significant"
    return (
        f"{delta}; no-teacher control {control['method']}: Δ {control['transfer_delta']:+.2f} pp; {beyond}: {outcome}"
    )


def _compare_with_controls(
    result: TransferResult, student: ModelArg, dataset: Dataset, preset: MethodPreset, progress: bool
) -> None:
    """Run (or reuse) the method's no-teacher controls with the run's own training options and write the
    comparison with the strongest into `final.json` (`final["control"]`, `final["verdict"]`)."""
    final = result.final
    assert final is not None
    names, seen = [], set()
    for name in preset.no_teacher_controls(result.config["method_options"]):
        control = get_method(name)
        if "transfer" in control.labelled_splits(control.defaults) and not dataset.transfer_labelled:
            continue  # a control that reads labels the data does not have
        # controls that differ only in their recipe are one control here: each runs with this run's options
        parts = (control.target, control.loss, control.regulariser, control.labelled_split, control.unmixed_xe)
        if (parts, tuple(sorted(control.defaults.items()))) not in seen:
            seen.add((parts, tuple(sorted(control.defaults.items()))))
            names.append(name)
    done = final.get("control")
    if done and [c["method"] for c in done.get("candidates", [])] == names:
        return
    training = dict(result.config["training"])  # the same budget, lr, schedule, optimiser, seed, augmentation
    controls = []
    for name in names:
        if progress and distributed.is_main():
            from rich.console import Console

            Console(stderr=True).print(
                f"no-teacher control: {name}, the same student, data and training (reused when already run)",
                highlight=False,
                soft_wrap=True,
            )
        controls.append(
            transfer(student, None, dataset, name, control=False, allow_chance=True, progress=progress, **training)
        )
    best = max(controls, key=lambda r: (r.final or {})["transfer_delta"])  # the strongest; ties: the first named
    if result.student_path is None or best.student_path is None:
        return
    device = rank_device(resolve_device(training["device"]))
    batch = training["eval_batch_size"]
    mine = predict(result.load_student(), dataset, "eval", batch_size=batch, device=device).correct
    theirs = predict(best.load_student(), dataset, "eval", batch_size=batch, device=device).correct
    better, worse = int((mine & ~theirs).sum()), int((theirs & ~mine).sum())
    p_better, p_worse = mcnemar_p_values(better, worse)
    final["control"] = {
        "method": best.config["method"],
        "transfer_delta": (best.final or {})["transfer_delta"],
        "delta_beyond_control": 100.0 * (better - worse) / len(mine),
        "samples_better": better,
        "samples_worse": worse,
        "p_better": p_better,
        "p_worse": p_worse,
        "teacher_added": bool(p_better < SIGNIFICANCE),
        "candidates": [
            {"method": c.config["method"], "transfer_delta": (c.final or {})["transfer_delta"], "run": c.run_dir.name}
            for c in controls
        ],
    }
    final["verdict"] = verdict_line(final, result.config["method"])
    distributed.on_main(lambda: write_json(result.run_dir / "final.json", final))
    student_path = result.student_path  # not None: checked above
    distributed.on_main(lambda: _record_control(student_path, final))


def _record_control(student_path: Path, final: Mapping[str, Any]) -> None:
    """The control and the verdict, also in the student's sidecar (`extra.transfer`): the model card of
    `anyteach push` is written from it, wherever the student is copied to."""
    sidecar = student_path.with_suffix(".json")
    meta = read_json(sidecar, "model sidecar")
    made = (meta.get("extra") or {}).get("transfer")
    if isinstance(made, dict):
        made.update(control=final["control"], verdict=final["verdict"])
        write_json(sidecar, meta)


def transfer(
    student: ModelArg,
    teacher: ModelArg | Sequence[ModelArg] | None = None,
    data: DataArg | None = None,
    method: str | None = None,
    out: str | Path | None = None,
    *,
    control: bool = True,
    allow_chance: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
    original: ModelArg | None = None,
    restart: bool = False,
    log: Sequence[str] = (),
    **options: Any,
) -> TransferResult:
    """Transfer knowledge from `teacher` into `student` with `method`, and compare the outcome with what the
    same training gives without a teacher; resumable, see the module doc.

    Args:
        student: the student S0: a model reference, a `Classifier`, or any `torch.nn.Module` (a timm model,
            your own network; `load_model` gives one its metadata). It is not modified.
        teacher: the teacher(s), in the same forms. None for `xe` and `self`; several only for methods
            whose target rule routes between K teachers (`kl+dp`, `kl+dp-u`, `ensemble`).
        data: a dataset reference, a `Dataset`, or one object per split (`{"train": ..., "eval": ...,
            "calib": ..., "unlabelled": ...}`: torch Datasets, DataLoaders, torchvision ImageFolders);
            training uses its `transfer` split, measuring its `eval` split. Default: the data a zoo
            member was trained on, or `mnist1d` for MNIST-1D models (`default_data`).
        method: a preset name (`anyteach methods`; `methods.METHODS`). Default: chosen by the data
            you have (`default_method`), and said in `result.choices`.
        out: run directory (default: under the cache, keyed by the configuration).
        control: also run the method's strongest fair no-teacher controls (`MethodPreset.no_teacher_controls`:
            the same student, data, labelled samples and training options; reused when already run) and
            compare: `result.final["control"]`, `result.verdict`. Without it Δ is not a transfer claim.
        allow_chance: a student or teacher at chance on the eval split is expected (a random teacher as a
            control) instead of an error naming its likely cause.
        overwrite: replace a run with a different configuration in `out` instead of failing.
        progress: show live progress in the terminal.
        stop_after_epoch: stop resumably after this epoch (time-sliced jobs; resume tests).
        on_epoch: called with the metrics history after each evaluated epoch.
        original: an earlier student (the S0 of a sequential multi-teacher run) that every metrics
            row is also measured against, as `vs_original`.
        restart: discard what the run directory holds of this run (checkpoint, metrics, result) and
            train it again from scratch (e.g. after a corrupt checkpoint).
        log: experiment trackers (`trackers.TRACKERS`: tensorboard, wandb, mlflow): one tracker run
            per call that trains, named after the pair and the method, with the configuration and
            every evaluated epoch's metrics.
        **options: training options (`options.TRAINING_OPTIONS`: epochs, lr, batch_size, optimizer,
            weight_decay, momentum, seed, augment, ...) and method options (`options.METHOD_OPTIONS`:
            temperature, top_k, alpha, ...); `anyteach transfer --help` lists them all.

    Returns:
        A `TransferResult` (`history`, `final`, `student_path`, `run_dir`, `verdict`, `choices`).

    Raises:
        AnyteachError: before any training and before the run directory is written, for an unknown
            method or option, a value out of range, a missing or superfluous teacher, models that do
            not fit the data (class count, input shape, a model at chance), a method that reads labels
            the data does not have, a batch larger than the transfer split, an absent device, or a
            different configuration in an existing run directory.
        RunFailed: training diverged (`TrainingDiverged`: the last good checkpoint is kept, no
            student is exported), the checkpoint is corrupt (`CorruptCheckpoint`: pass `restart`),
            or the disk filled up (earlier files are kept).
    """
    choices = []
    if data is None:
        data, why = distributed.agree(lambda: default_data(student))
        choices.append(f"data: {data} ({why})")
    dataset = distributed.agree(lambda: load_dataset(data))  # an error on one rank stops every rank
    if method is None:
        method, why = default_method(dataset, as_model_list(teacher))
        choices.append(f"method: {method} ({why})")
    result = _transfer_run(
        student,
        teacher,
        dataset,
        method,
        out,
        notes=choices,
        allow_chance=allow_chance,
        overwrite=overwrite,
        progress=progress,
        stop_after_epoch=stop_after_epoch,
        on_epoch=on_epoch,
        original=original,
        restart=restart,
        log=log,
        **options,
    )
    result.choices = choices
    preset = get_method(method)
    if control and result.finished and preset.trains and preset.needs_teacher and original is None:
        _compare_with_controls(result, student, dataset, preset, progress)
    return result


def _transfer_run(
    student: ModelArg,
    teacher: ModelArg | Sequence[ModelArg] | None,
    data: DataArg,
    method: str,
    out: str | Path | None,
    *,
    notes: Sequence[str] = (),
    allow_chance: bool,
    overwrite: bool,
    progress: bool,
    stop_after_epoch: int | None,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None,
    original: ModelArg | None,
    restart: bool,
    log: Sequence[str],
    **options: Any,
) -> TransferResult:
    """One run of `transfer`, without its control; `notes` (what was chosen for the user) are said with its
    progress once the run is checked."""
    # 1-2. options, method, teachers, process group, models and data: checked before anything is written
    trackers = check_trackers(log)
    plan = plan_run(
        student, as_model_list(teacher), data, method, options, original=original, stop_after_epoch=stop_after_epoch
    )
    preset, resolved, method_options, inputs = plan.preset, plan.training, plan.method_options, plan.inputs
    dataset, student_model, teachers = inputs.dataset, inputs.student, inputs.teachers
    config = plan.config(CONFIG_FORMAT)

    # 3. the run directory: new, resumed, finished, or in conflict (nothing is written yet; under
    #    torchrun rank 0 decides and every rank gets its answer)
    run = RunDir(
        Path(out).expanduser() if out is not None else default_run_dir(config),
        "config.json",
        "final.json",
        CONFIG_FORMAT,
        "a run",
    )
    run_dir = run.path
    replaced = distributed.on_main(lambda: run.check(config, overwrite))
    student_file = run_dir / "student.safetensors"
    if replaced is None and not restart and distributed.on_main(lambda: run.finished):
        if not (preset.trains and not tensors_readable(student_file)):
            result = TransferResult.load(run_dir)
            if not resolved.keep_checkpoints and distributed.is_main():
                (run_dir / "checkpoint.pt").unlink(missing_ok=True)
            return result
        damage = "has a damaged student.safetensors" if student_file.exists() else "lost its student.safetensors"
        if not (run_dir / "checkpoint.pt").exists():
            raise RunFailed(
                f"the finished run in {run_dir} {damage} and its checkpoint was "
                "dropped (keep_checkpoints keeps it); run again with --restart to train it again"
            )
        # the student file is gone or damaged but the checkpoint is there: export it again below

    # 4. everything that can fail on this input fails here, before the directory is touched
    teacher_names = ", ".join(t.name for t in teachers) or "no teacher"
    reporter = (
        ConsoleReporter(f"{method}: {student_model.name} <- {teacher_names} on {dataset.ref}")
        if progress and distributed.is_main()
        else None
    )
    trainer = Trainer(
        student_model, teachers, dataset, method, method_options, resolved, reporter, inputs.original, allow_chance
    )
    if reporter is not None:
        for note in notes:
            reporter.console.print(note, highlight=False, soft_wrap=True)

    # 5. train (or resume) in the claimed directory, writing metrics after every evaluated epoch
    def write_metrics(history: list[dict[str, Any]]) -> None:
        if distributed.is_main():
            write_text(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
        if on_epoch is not None:
            on_epoch(history)

    def clear() -> None:
        if replaced is not None or restart:
            for name in RUN_FILES[1:]:
                (run_dir / name).unlink(missing_ok=True)

    tracked = None
    if trackers and distributed.is_main():
        tracked = RunTrackers(
            trackers, tracker_run_name(student_model.name, [t.name for t in teachers], method), config, run_dir
        )
        write_metrics = _also_tracked(write_metrics, tracked)  # type: ignore[assignment]  # the same signature
        trainer.on_step = tracked.log_step
    with run.claim(config, prepare=clear), _closing(tracked):
        outcome = trainer.run(run_dir / "checkpoint.pt", write_metrics, stop_after_epoch)
        if not outcome.finished:
            return TransferResult(run_dir, config, outcome.history, None, None, finished=False)

        # 6. export the student, then final.json (which marks the run finished), then drop the checkpoint
        final = dict(outcome.final or {})  # a finished run has its final metrics

        def finish() -> Path | None:
            student_path = None
            if outcome.model is not None:
                student_path = export_student(
                    outcome.model,  # type: ignore[arg-type]  # the student (a Classifier) or its slow weights
                    student_file,
                    f"{student_model.name}+{method}",
                    final,
                    getattr(dataset, "class_names", None),
                    method=method,
                    student=config["student"]["identity"],
                    teachers=[t["identity"] for t in config["teachers"]],
                    student_name=student_model.name,
                    teacher_names=[t.name for t in teachers],
                    data=dataset.ref,
                    data_name=dataset.name,
                )
            write_json(run_dir / "final.json", final)
            if not resolved.keep_checkpoints:
                (run_dir / "checkpoint.pt").unlink(missing_ok=True)
            return student_path

        student_path = distributed.on_main(finish)
    return TransferResult(run_dir, config, outcome.history, final, student_path, finished=True)


def _also_tracked(
    write_metrics: Callable[[list[dict[str, Any]]], None], tracked: RunTrackers
) -> Callable[[list[dict[str, Any]]], None]:
    def both(history: list[dict[str, Any]]) -> None:
        write_metrics(history)
        tracked.log(history)

    return both


@contextmanager
def _closing(tracked: RunTrackers | None) -> Iterator[None]:
    try:
        yield
    finally:
        if tracked is not None:
            tracked.close()


__all__ = [
    "ConsoleReporter",
    "ExportedStudent",
    "ModelArg",
    "RunInputs",
    "RunPlan",
    "TransferResult",
    "as_model_list",
    "check_teachers",
    "plan_run",
    "data_entry",
    "default_run_dir",
    "export_student",
    "load_run_inputs",
    "model_entry",
    "model_identity",
    "RunDir",
    "check_method_options",
    "resolve_run_options",
    "split_options",
    "transfer",
]
