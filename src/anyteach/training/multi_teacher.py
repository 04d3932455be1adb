"""Several teachers for one student: parallel, sequential, soup (docs/concepts/transfer-without-forgetting.md).

- **parallel**: one `transfer` run with K teachers; its target rule (`kl+dp`, `kl+dp-u`) makes the
  most confident of {S_frozen, T1..TK} each sample's target, and every metrics row holds the share
  of samples routed to each candidate (`routing`: frozen, teacher1..teacherK).
- **sequential**: one full single-teacher `transfer` per teacher (any method), each starting from
  the previous stage's student, so S_frozen is reset to the current student and the optimiser
  restarted before every teacher. The curriculum orders the teachers: as given, or by ascending /
  descending accuracy measured on the eval split (from the predictions cache). Each stage is an
  ordinary run directory (`stage1`, `stage2`, ...), so an interrupted run resumes inside the stage
  it stopped in; its rows are measured against the stage's start student and, as `vs_original`,
  against the original student.
- **soup**: one single-teacher `transfer` per teacher, in the run cache keyed by configuration (the
  directory a plain `transfer` without `out` uses, so finished runs are reused both ways); the
  students' weights are averaged uniformly and, when more than one is averaged and the
  architecture has BatchNorm, its running statistics are re-estimated on the transfer split
  (averaged running statistics do not describe the averaged network).

A multi-teacher run directory holds `multi.json` (the resolved configuration, with the measured
teacher accuracies and the stage order), the sub-runs of the parallel and sequential modes, the
soup (`soup.safetensors` + `soup.json`, a model reference) and `summary.json` (per-stage and final
metrics; written last, it marks a finished run). Teachers run one at a time except in the parallel
mode, whose every step needs all of them (their transfer-split outputs are cached, so even then
they leave the accelerator before training).
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..core import process_group as distributed
from ..core.errors import AnyteachError
from ..core.io import read_json, write_json
from ..data.predictions import Predictions, cached_logits
from ..data.references import Dataset
from ..methods import MethodPreset
from ..models.references import Classifier
from .trainer import ORIGINAL_KEYS, EvalReference, evaluate
from .transfer import (
    ExportedStudent,
    ModelArg,
    RunDir,
    RunPlan,
    TransferResult,
    as_model_list,
    default_run_dir,
    export_student,
    plan_run,
    transfer,
)

MULTI_FORMAT = "anyteach-multi/1"
MODES = ("parallel", "sequential", "soup")
CURRICULA = ("given", "asc", "desc")


# ---------------------------------------------------------------------------------------------
# Weight soups


def average_weights(models: Sequence[Classifier]) -> Classifier:
    """A uniform weight soup: every floating-point tensor of the models' state dicts averaged.

    The mean is taken in float64, so the soup of copies of one model is that model bit for bit.
    Integer buffers (BatchNorm's batch counter) come from the first model. The soup has no content
    identity (its predictions are never confused with an ingredient's in the predictions cache).

    Raises:
        AnyteachError: no models, or models whose state dicts differ in names or shapes.
    """
    if not models:
        raise AnyteachError("a weight soup needs at least one model")
    states = [m.state_dict() for m in models]
    first = states[0]
    for model, state in zip(models[1:], states[1:]):
        if state.keys() != first.keys() or any(state[k].shape != v.shape for k, v in first.items()):
            raise AnyteachError(
                f"cannot average the weights of {models[0].name!r} and {model.name!r}: their architectures differ"
            )
    averaged = {
        key: torch.stack([s[key].double() for s in states]).mean(0).to(value.dtype)
        if value.is_floating_point()
        else value.clone()
        for key, value in first.items()
    }
    soup = copy.deepcopy(models[0])
    soup.load_state_dict(averaged)
    soup.info = dataclasses.replace(models[0].info, source="", identity="", extra={})
    return soup.eval()


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of `model` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def reestimate_batchnorm(
    model: Classifier,
    data: Dataset,
    split: str = "transfer",
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> bool:
    """Recompute the BatchNorm running statistics of `model` over a split, in place.

    Every BatchNorm layer restarts its statistics and accumulates an equally weighted average over
    the split's batches (momentum None) in train mode; every other layer stays in eval mode (no
    dropout), and no weight changes.

    Returns:
        Whether the model has BatchNorm layers (False: nothing was done).
    """
    norms = batchnorm_layers(model)
    if not norms:
        return False
    device = torch.device(device) if device is not None else torch.device("cpu")
    model.eval().to(device)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for x, _, _ in data.loader(split, batch_size=batch_size, preprocessing=model.info.preprocessing):
            model(x.to(device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return True


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class MultiTransferResult(ExportedStudent):
    """The outcome of a multi-teacher run.

    Attributes:
        run_dir: the multi-teacher run directory.
        config: the resolved configuration (as in `multi.json`).
        stages: the single runs, in order: sequential, one per stage; parallel, its one run; soup,
            one per ingredient (teacher).
        stage_metrics: per stage its teacher, accuracy, run directory and Δ / gain / loss / flip counts
            / p-values against the stage's start student (`vs_start`) and the original student
            (`vs_original`); for parallel and soup the two are the same.
        final: metrics of the final student (sequential: the last stage's; soup: the soup) against
            the original student and all teachers, like a single run's final row.
        student_path: the final student's weights, a model reference.
        finished: False when the run stopped early on request and can be resumed.
    """

    run_dir: Path
    config: dict[str, Any]
    stages: list[TransferResult]
    stage_metrics: list[dict[str, Any]]
    final: dict[str, Any] | None
    student_path: Path | None
    finished: bool = True

    @property
    def mode(self) -> str:
        return self.config["mode"]

    @property
    def label(self) -> str:
        """`parallel`, `sequential asc`, `soup`, ... (figure legends, tables)."""
        if self.mode == "sequential":
            return f"sequential {self.config['curriculum']}"
        return self.mode

    @classmethod
    def load(cls, run_dir: str | Path) -> MultiTransferResult:
        """Read a multi-teacher run directory written by `transfer_multi`.

        Raises:
            AnyteachError: the directory holds no multi-teacher run.
        """
        run_dir = Path(run_dir)
        if not (run_dir / "multi.json").exists():
            raise AnyteachError(f"{run_dir} is not a multi-teacher run directory (no multi.json)")
        config = read_json(run_dir / "multi.json", "multi-teacher configuration")
        summary_path = run_dir / "summary.json"
        if not summary_path.exists():
            stages = [TransferResult.load(d) for d in _sub_runs(run_dir, config) if (d / "config.json").exists()]
            return cls(run_dir, config, stages, [], None, None, finished=False)
        summary = read_json(summary_path, "multi-teacher summary")
        # sub-runs are found relative to the directory (which may have moved); soup ingredients in the cache
        stages = [
            TransferResult.load(d)
            for d in _sub_runs(run_dir, config) or [Path(row["run_dir"]) for row in summary["stages"]]
        ]
        student = run_dir / "soup.safetensors" if config["mode"] == "soup" else stages[-1].student_path
        return cls(run_dir, config, stages, summary["stages"], summary["final"], student)


def _sub_runs(run_dir: Path, config: dict[str, Any]) -> list[Path]:
    """The run directories a multi-teacher run keeps inside its own directory."""
    if config["mode"] == "parallel":
        return [run_dir / "parallel"]
    if config["mode"] == "sequential":
        return [run_dir / f"stage{k}" for k in range(1, len(config["teachers"]) + 1)]
    return []


def metrics_over_epochs(result: MultiTransferResult | TransferResult) -> list[dict[str, Any]]:
    """Δ, knowledge gain and loss against the original student after every evaluated epoch.

    A sequential run's stages are laid end to end (epochs counted from the first stage's start; the
    epoch-0 row of a later stage, which repeats the previous stage's end, is left out). A soup has
    no epochs (empty list).

    Returns:
        Rows `{"epoch", "stage", "transfer_delta", "knowledge_gain", "knowledge_loss"}`, in order.
    """
    runs = result.stages if isinstance(result, MultiTransferResult) else [result]
    if isinstance(result, MultiTransferResult) and result.mode == "soup":
        return []
    rows, offset = [], 0
    for stage, run in enumerate(runs, start=1):
        for row in run.history:
            if stage > 1 and row["epoch"] == 0:
                continue
            against = row.get("vs_original", row)
            rows.append(
                {
                    "epoch": offset + row["epoch"],
                    "stage": stage,
                    **{k: against[k] for k in ("transfer_delta", "knowledge_gain", "knowledge_loss")},
                }
            )
        if run.history:
            offset += run.history[-1]["epoch"]
    return rows


# ---------------------------------------------------------------------------------------------
# The entry point


def _curriculum(accuracies: list[float], curriculum: str) -> list[int]:
    """Teacher indices in stage order (a stable sort: equal accuracies keep the given order)."""
    order = list(range(len(accuracies)))
    if curriculum == "given":
        return order
    return sorted(order, key=lambda i: accuracies[i] if curriculum == "asc" else -accuracies[i])


def _stage_row(stage: int, teacher: str, teacher_acc: float, run: TransferResult) -> dict[str, Any]:
    final = run.final
    assert final is not None, "a stage row is written for finished stages only"
    vs_start = {key: final[key] for key in ORIGINAL_KEYS}
    return {
        "stage": stage,
        "teacher": teacher,
        "teacher_acc": teacher_acc,
        "run_dir": str(run.run_dir),
        "student_acc": final["student_acc"],
        "vs_start": vs_start,
        "vs_original": final.get("vs_original", vs_start),
    }


def transfer_multi(
    student: ModelArg,
    teachers: Sequence[ModelArg],
    data: str | Dataset = "mnist1d",
    method: str = "kl+dp",
    mode: str = "sequential",
    out: str | Path | None = None,
    *,
    curriculum: str = "given",
    overwrite: bool = False,
    restart: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    **options: Any,
) -> MultiTransferResult:
    """Transfer from several teachers into one student: in parallel, in sequence, or as a weight soup.

    Resumable like `transfer`: the same call on the same directory resumes an interrupted run or
    returns a finished one without training (see the module doc for the modes and the files).

    Args:
        student: model reference (or `Classifier`) of the student S0; not modified.
        teachers: model references of the teachers, in the given order.
        data: dataset reference; training uses its `transfer` split, measuring its `eval` split.
        method: a preset name; parallel needs one that routes between teachers (`kl+dp`,
            `kl+dp-u`), sequential and soup any method that trains from a teacher.
        mode: `parallel`, `sequential` or `soup`.
        out: run directory (default: under the cache, keyed by the configuration).
        curriculum: order of the sequential stages: `given`, `asc` or `desc` teacher accuracy.
        overwrite: replace a run with a different configuration in `out` instead of failing.
        restart: discard the stages of this run in `out` and run them again from scratch.
        progress: show live progress in the terminal.
        stop_after_epoch: stop resumably once this many epochs have been trained, counted over the
            stages (or soup ingredients) in order: with 2 epochs per stage, 3 stops in stage 2.
        **options: training and method options, as for `transfer`; every stage uses all of them.

    Returns:
        A `MultiTransferResult`.

    Raises:
        AnyteachError: before any training, for an unknown mode, curriculum, method or option, a
            method the mode cannot use, no teacher, models that do not fit the data, or a different
            configuration in an existing run directory.
    """
    # 1. everything that needs no model
    if mode not in MODES:
        raise AnyteachError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    if curriculum not in CURRICULA:
        raise AnyteachError(f"unknown curriculum {curriculum!r}; curricula: {', '.join(CURRICULA)}")
    if curriculum != "given" and mode != "sequential":
        raise AnyteachError(f"a curriculum orders the stages of the sequential mode; mode {mode!r} has none")

    def check(preset: MethodPreset, teacher_refs: Sequence[ModelArg]) -> None:
        if not teacher_refs:
            raise AnyteachError("a multi-teacher transfer needs at least one teacher")
        if not (preset.trains and preset.needs_teacher):
            raise AnyteachError(
                f"mode {mode!r} needs a method that trains the student from a teacher; {method!r} does not"
            )
        if mode == "parallel" and len(teacher_refs) > 1 and not preset.multi_teacher:
            raise AnyteachError(
                f"the parallel mode needs a method that routes between teachers (kl+dp, kl+dp-u), not {method!r}"
            )

    # 2. the shared planning step; the teachers' accuracies order the curriculum
    plan = plan_run(
        student,
        as_model_list(teachers),
        data,
        method,
        options,
        check,
        overwrite=overwrite,
        progress=progress,
        stop_after_epoch=stop_after_epoch,
    )
    resolved, inputs, device = plan.training, plan.inputs, plan.device
    dataset, teacher_models = inputs.dataset, inputs.teachers
    accuracies = []
    for teacher in teacher_models:  # as the cache stores them: a resumed run must measure the same
        logits = cached_logits(teacher, dataset, "eval", resolved.eval_batch_size, device)
        accuracies.append(Predictions(logits, dataset.labels("eval")).accuracy)
        teacher.to("cpu")
    order = _curriculum(accuracies, curriculum)
    config = plan.config(
        MULTI_FORMAT,
        mode=mode,
        curriculum=curriculum,
        teacher_accs=accuracies,
        order=[teacher_models[i].name for i in order],
    )

    # 3. the run directory: new, resumed, finished, or in conflict
    if out is not None:
        run_dir = Path(out).expanduser()
    else:
        default = default_run_dir(config)
        run_dir = default.with_name(f"{mode}{'-' + curriculum if mode == 'sequential' else ''}-{default.name}")

    run = RunDir(run_dir, "multi.json", "summary.json", MULTI_FORMAT, "a multi-teacher run")
    replaced = distributed.on_main(lambda: run.check(config, overwrite))
    if replaced is None and not restart and distributed.on_main(lambda: run.finished):
        return MultiTransferResult.load(run_dir)

    def clear() -> None:
        if replaced is not None or restart:
            for sub in _sub_runs(run_dir, replaced or config):
                shutil.rmtree(sub, ignore_errors=True)
            for name in ("summary.json", "soup.safetensors", "soup.json"):
                (run_dir / name).unlink(missing_ok=True)

    with run.claim(config, prepare=clear):
        return _run_multi(plan, run_dir, config, accuracies, order)


def _run_multi(
    plan: RunPlan, run_dir: Path, config: dict[str, Any], accuracies: list[float], order: list[int]
) -> MultiTransferResult:
    """The stages of a claimed multi-teacher run directory, then the final student and the summary."""
    dataset, student0, teacher_models = plan.inputs.dataset, plan.inputs.student, plan.inputs.teachers
    method, resolved, options, device, mode = plan.method, plan.training, plan.options, plan.device, config["mode"]
    overwrite, progress, stop_after_epoch = plan.overwrite, plan.progress, plan.stop_after_epoch

    # 4. the single runs: one for parallel, one per teacher in stage order otherwise
    def run_stage(
        k: int, teacher: Classifier | list[Classifier], start: Classifier, out_dir: Path | None, **extra: Any
    ) -> TransferResult | None:
        """Stage k (0-based) within the epoch budget of `stop_after_epoch`; None: not started."""
        budget = None if stop_after_epoch is None else stop_after_epoch - k * resolved.epochs
        if budget is not None and budget <= 0:
            return None
        return transfer(
            start,
            teacher,
            dataset,
            method,
            out_dir,
            control=False,  # a stage is compared with the original student, not with a control of its own
            progress=progress,
            stop_after_epoch=budget if budget is not None and budget < resolved.epochs else None,
            **extra,
            **options,
        )

    stages: list[TransferResult] = []
    if mode == "parallel":
        first = run_stage(0, teacher_models, student0, run_dir / "parallel", overwrite=overwrite)
        assert first is not None  # stage 0 always starts: the epoch budget is at least one epoch
        stages.append(first)
        names, accs = ["+".join(t.name for t in teacher_models)], [max(accuracies)]
    else:
        names, accs = [teacher_models[i].name for i in order], [accuracies[i] for i in order]
        current = student0
        for k, i in enumerate(order):
            if mode == "sequential":
                run = run_stage(
                    k, teacher_models[i], current, run_dir / f"stage{k + 1}", overwrite=overwrite, original=student0
                )
            else:  # soup: every ingredient from S0, in the run cache keyed by its configuration
                run = run_stage(k, teacher_models[i], student0, None)
            teacher_models[i].to("cpu")  # the next stage needs only its own teacher on the accelerator
            if run is None:
                break
            stages.append(run)
            if not run.finished:
                break
            if mode == "sequential":
                current = run.load_student()
    if len(stages) < len(names) or not stages[-1].finished:
        return MultiTransferResult(run_dir, config, stages, [], None, None, finished=False)

    # 5. the final student (the soup is made and saved here), measured against S0 and all teachers
    if mode == "soup":
        final_model = average_weights([run.load_student() for run in stages])
        if len(stages) > 1:
            reestimate_batchnorm(final_model, dataset, "transfer", resolved.batch_size, device)
    else:
        final_model = stages[-1].load_student()
    reference = EvalReference.build(student0, teacher_models, dataset, resolved.eval_batch_size, device)
    final = reference.row(evaluate(final_model, dataset, resolved.eval_batch_size, device))
    for teacher in teacher_models:
        teacher.to("cpu")
    stage_metrics = [_stage_row(k, name, acc, run) for k, (name, acc, run) in enumerate(zip(names, accs, stages), 1)]

    def finish() -> Path | None:  # rank 0 writes (under torchrun)
        student_path: Path | None
        if mode == "soup":
            student_path = export_student(
                final_model,
                run_dir / "soup.safetensors",
                f"{student0.name}+{method}-soup",
                final,
                getattr(dataset, "class_names", None),
                method=method,
                mode="soup",
                student=config["student"]["identity"],
                teachers=[t["identity"] for t in config["teachers"]],
                student_name=student0.name,
                teacher_names=[t.name for t in teacher_models],
                data=dataset.ref,
                data_name=dataset.name,
            )
        else:
            student_path = stages[-1].student_path
        write_json(
            run_dir / "summary.json",
            {
                "mode": mode,
                "curriculum": config["curriculum"],
                "order": config["order"],
                "student": str(student_path),
                "final": final,
                "stages": stage_metrics,
            },
        )
        return student_path

    student_path = distributed.on_main(finish)
    return MultiTransferResult(run_dir, config, stages, stage_metrics, final, student_path)


__all__ = [
    "CURRICULA",
    "MODES",
    "MultiTransferResult",
    "average_weights",
    "batchnorm_layers",
    "metrics_over_epochs",
    "reestimate_batchnorm",
    "transfer_multi",
]
