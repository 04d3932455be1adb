"""The one training loop of every transfer method, with per-epoch metrics and checkpoint/resume.

The student trains; the teachers and the frozen initial student (S_frozen) run in eval mode without
gradients. When the transfer data is neither augmented nor mixed, their outputs over the transfer
split are computed once (through the on-disk predictions cache) and indexed by each batch's `index`,
so a step costs little more than the student's own forward and backward. With input mixing (the `mix`
option) every batch is mixed in pairs after loading (`data.mixing`, seeded by the run's seed and the
step) and all models see the same mixed batch, live (`MethodNeeds.live`). After every evaluated epoch the
student (for MCL: the slow weights) is measured on the eval split against S0 and the teacher(s);
epoch 0 is the student before transfer. Given an `original` student (the S0 of a sequential
multi-teacher run, whose stage starts from an already transferred student), each row also holds
Δ, gain and loss against it (`vs_original`). At the end of every epoch the full state (student,
optimiser, method state such as CRD's memory bank, slow weights, RNG states, epoch, step, metrics
history) is written atomically, so an interrupted run resumes to bitwise the same weights on CPU.
Inside a process group (torchrun) the same loop trains one student with DistributedDataParallel;
what that changes is `anyteach.ddp`'s to describe. How models run (autocast, channels-last,
compile, loader workers) is the run's `runtime.Runtime`.
"""

from __future__ import annotations

import copy
import gc
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from ..analysis.metrics import DEFAULT_TOP_P, per_class_positive_flips, top_p_classes, transfer_metrics
from ..core import process_group as distributed
from ..core.errors import AnyteachError, AnyteachWarning, CorruptCheckpoint, TrainingDiverged
from ..core.io import json_ready, torch_save
from ..core.optim import lr_factor, make_optimizer
from ..core.options import TrainingOptions
from ..core.runtime import Runtime, default_device
from ..core.seeds import RUN_STRIDE, augment_seed, mix_seed
from ..data.mixing import mix_batch
from ..data.predictions import Predictions, cached_logits, check_not_at_chance, model_logits, split_outputs
from ..data.references import Dataset, stratified_subset
from ..methods import (
    FROZEN,
    MIXED,
    SKIPPED,
    Calibration,
    MethodContext,
    MethodNeeds,
    MethodPreset,
    TransferMethod,
    WeightRegulariser,
    build_method,
    build_regulariser,
    ensemble_predictions,
    get_method,
)
from ..models.references import Classifier
from .ddp import TrainingStudent, rank_device, reduce_training_numbers, seed_epoch, sync_batchnorm

CHECKPOINT_FORMAT = "anyteach-checkpoint/1"
DIVERGENCE_CHECK_STEPS = 25
"""A run checks for a NaN or infinite loss every this many steps (and at the end of every epoch)."""
ORIGINAL_KEYS = (
    "student_acc_before",
    "transfer_delta",
    "knowledge_gain",
    "knowledge_loss",
    "gain_count",
    "loss_count",
    "p_gain",
    "p_loss",
)
"""The metrics a row holds against the original student (`vs_original`)."""


# ---------------------------------------------------------------------------------------------
# Learning rate, device


def resolve_lr(options: TrainingOptions, method: str) -> float:
    """The learning rate a run uses: explicit, else the paper's rule, base lr x batch_size / 256, with
    base 1e-4 (MCL's preset: 1e-2)."""
    if options.lr is not None:
        return options.lr
    return get_method(method).base_lr * options.batch_size / 256


def resolve_device(device: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; anything else as given (checked to exist)."""
    if device == "auto":
        return default_device()
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise AnyteachError(f"option device={device!r}: CUDA is not available on this machine (use cpu or auto)")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise AnyteachError(
            f"option device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise AnyteachError(f"option device={device!r}: Apple's MPS is not available on this machine (use cpu or auto)")
    return resolved


# ---------------------------------------------------------------------------------------------
# Progress reporting


class Reporter(Protocol):
    """Receives progress: `start` once (with the history so far), `step` after each optimiser step,
    `epoch` with each new metrics row, `close` at the end."""

    def start(self, epochs: int, steps_per_epoch: int, history: list[dict[str, Any]]) -> None: ...

    def step(self) -> None: ...

    def epoch(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class SilentReporter:
    """A `Reporter` that shows nothing."""

    def start(self, epochs: int, steps_per_epoch: int, history: list[dict[str, Any]]) -> None:
        pass

    def step(self) -> None:
        pass

    def epoch(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# What every student is measured against


@dataclass
class EvalReference:
    """The eval-split predictions every student of a run is measured against: S0's, the teachers'
    and (for a sequential stage) the original student's, with the teachers' top-p classes.

    Build it with `EvalReference.build`; `row(predictions)` gives the transfer metrics of any
    eval-split predictions (a trained student's, a weight soup's, the `ensemble` baseline's).

    Attributes:
        labels: `(N,)` eval labels.
        before_logits: `(N, C)` logits of S0.
        teacher_logits: `(K, N, C)` logits of the teachers (K = 0 without teachers).
        teacher_reference: `(N,)` "the teachers'" predictions: the teacher's, or with several
            teachers the label where any of them is right (else the first one's).
        top_classes: the teachers' top-p complementary classes per p (None without teachers).
        original_preds: `(N,)` predictions of the original student (None unless given).
    """

    labels: torch.Tensor
    before_logits: torch.Tensor
    teacher_logits: torch.Tensor
    teacher_reference: torch.Tensor | None
    top_classes: dict[float, Any] | None
    original_preds: torch.Tensor | None = None
    _available: dict[str, float | None] | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        student: Classifier,
        teachers: list[Classifier],
        data: Dataset,
        batch_size: int,
        device: torch.device,
        original: Classifier | None = None,
        runtime: Runtime | None = None,
    ) -> EvalReference:
        """Predictions of S0, the teachers and the original student (through the predictions cache)."""
        runtime = runtime or Runtime.of(device)
        labels = data.labels("eval")
        before_logits = cached_logits(student, data, "eval", batch_size, runtime=runtime)
        teacher_logits = (
            torch.stack([cached_logits(t, data, "eval", batch_size, runtime=runtime) for t in teachers])
            if teachers
            else before_logits.new_empty((0, *before_logits.shape))
        )
        original_preds = None
        if original is not None:
            original_preds = cached_logits(original, data, "eval", batch_size, runtime=runtime).argmax(1)
            original.to("cpu")  # only its predictions are needed
        reference = top_classes = None
        if teachers:
            predictions = teacher_logits.argmax(2)
            if len(teachers) == 1:
                reference = predictions[0]
            else:  # several teachers: "the teachers" are right where any of them is right
                right = (predictions == labels).any(0)
                reference = torch.where(right, labels, predictions[0])
            flips = per_class_positive_flips(before_logits.argmax(1), reference, labels, data.num_classes)
            top_classes = {p: top_p_classes(flips, p).classes for p in DEFAULT_TOP_P}
        return cls(labels, before_logits, teacher_logits, reference, top_classes, original_preds)

    @property
    def before(self) -> torch.Tensor:
        """`(N,)` predictions of S0."""
        return self.before_logits.argmax(1)

    def available_gain(self) -> dict[str, float | None]:
        """How much a student could take from its teacher(s) without any training: the eval accuracy of
        the student–teacher ensemble (S0's and the teachers' probabilities averaged, equal weights;
        and, as the paper's baseline, per sample the most confident model) and its Δ over S0.

        Returns:
            `ensemble_acc`, `ensemble_maxconf_acc`, `ensemble_delta` (pp); None without teachers.
        """
        if self.teacher_reference is None:
            return {"ensemble_acc": None, "ensemble_maxconf_acc": None, "ensemble_delta": None}
        probs = torch.cat([self.before_logits.unsqueeze(0), self.teacher_logits.to(self.before_logits.dtype)])
        probs = probs.float().softmax(-1)
        mean_acc = 100.0 * (probs.mean(0).argmax(1) == self.labels).double().mean().item()
        maxconf = ensemble_predictions(self.before_logits, self.teacher_logits)[0]
        maxconf_acc = 100.0 * (maxconf == self.labels).double().mean().item()
        before_acc = 100.0 * (self.before == self.labels).double().mean().item()
        return {"ensemble_acc": mean_acc, "ensemble_maxconf_acc": maxconf_acc, "ensemble_delta": mean_acc - before_acc}

    def row(self, predictions: torch.Tensor, epoch: int | None = None) -> dict[str, Any]:
        """Transfer metrics of eval-split `predictions` against S0 and the teacher(s) (`epoch` first when
        given), as plain JSON data."""
        labels, before = self.labels, self.before
        if self.teacher_reference is not None:
            row = transfer_metrics(before, predictions, self.teacher_reference, labels, self.top_classes)
            if len(self.teacher_logits) > 1:
                accs = [100.0 * (p == labels).double().mean().item() for p in self.teacher_logits.argmax(2)]
                row["teacher_acc"], row["teacher_accs"] = max(accs), accs
        else:
            row = transfer_metrics(before, predictions, before, labels)
            row["teacher_acc"] = row["transfer_rate"] = None
        if self.original_preds is not None:
            against = transfer_metrics(self.original_preds, predictions, self.original_preds, labels)
            row["vs_original"] = {key: against[key] for key in ORIGINAL_KEYS}
        if self._available is None:
            self._available = self.available_gain()
        row.update(self._available)
        delta = self._available["ensemble_delta"]
        # the share of the ensemble's gain this student reached (None where the ensemble gains nothing)
        row["transfer_efficiency"] = 100.0 * row["transfer_delta"] / delta if delta is not None and delta > 0 else None
        return json_ready(row if epoch is None else {"epoch": epoch, **row})


def evaluate(
    model: nn.Module, data: Dataset, batch_size: int, device: torch.device, runtime: Runtime | None = None
) -> torch.Tensor:
    """Eval-split predictions of `model` (one no-grad pass in eval mode)."""
    return model_logits(model, data, "eval", batch_size=batch_size, device=device, runtime=runtime).argmax(1)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# What a step imitates: the frozen student's and the teachers' outputs


def split_features(model: Classifier, data: Dataset, split: str, batch_size: int, runtime: Runtime) -> torch.Tensor:
    """Penultimate features of `model` over a whole split, in index order (eval mode), on the device."""
    return split_outputs(model, data, split, batch_size, runtime, lambda run, x: model.features(x)[1]).to(
        runtime.device
    )


class ReferenceOutputs:
    """The outputs a training step imitates: the frozen student's logits, the teachers' logits and the
    first teacher's features, each only when the method needs it.

    Unless `needs.live` (augmented or mixed inputs, or caching switched off) they are computed once over
    the transfer split through the predictions cache and indexed by each batch's `index`; otherwise the
    frozen student (a copy of S0) and the teachers run live on every batch, in eval mode without gradients.
    """

    def __init__(
        self,
        student: Classifier,
        teachers: list[Classifier],
        data: Dataset,
        needs: MethodNeeds,
        batch_size: int,
        runtime: Runtime,
    ):
        cache = not needs.live
        self.needs, self.cache, self.teachers, self.runtime = needs, cache, teachers, runtime
        self.autocast = runtime.autocast
        self.frozen = self.teacher_logits = self.teacher_features = None
        self.frozen_model: Classifier | None = None
        device = runtime.device
        if cache:
            if needs.frozen:
                self.frozen = cached_logits(student, data, "transfer", batch_size, runtime=runtime).to(device)
            if needs.teacher_logits:
                self.teacher_logits = torch.stack(
                    [cached_logits(t, data, "transfer", batch_size, runtime=runtime) for t in teachers]
                ).to(device)
            if needs.teacher_features:
                self.teacher_features = split_features(teachers[0], data, "transfer", batch_size, runtime)
            for teacher in teachers:  # no longer needed on the accelerator
                teacher.to("cpu")
        else:
            if needs.frozen:
                self.frozen_model = runtime.place(copy.deepcopy(student).eval())  # type: ignore[assignment]
            for teacher in teachers:
                runtime.place(teacher.eval())
        # live models run as the runtime says (compiled: a wrapper; the models stay as they are)
        self._frozen_run = runtime.compiled(self.frozen_model) if self.frozen_model is not None else None
        self._teacher_runs = [runtime.compiled(t) for t in teachers] if not cache else []

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """`(frozen (B, C), teachers (K, B, C), teacher features (B, D))` of one batch; None where unused."""
        if self.cache:
            return (
                None if self.frozen is None else self.frozen[index],
                None if self.teacher_logits is None else self.teacher_logits[:, index],
                None if self.teacher_features is None else self.teacher_features[index],
            )
        frozen = teachers = features = None
        with self.autocast():
            if self._frozen_run is not None:
                frozen = self._frozen_run(x)
            if self.needs.teacher_features:
                logits, features = self.teachers[0].features(x)
                teachers = logits.unsqueeze(0)
            elif self.needs.teacher_logits:
                teachers = torch.stack([run(x) for run in self._teacher_runs])
        return frozen, teachers, features

    def teacher_feature_dim(self, x: torch.Tensor) -> int:
        """Size of the first teacher's features (measured on a batch when they are not cached)."""
        if self.teacher_features is not None:
            return self.teacher_features.shape[1]
        with torch.no_grad():
            return self.teachers[0].features(x)[1].shape[1]


class RoutingCounts:
    """How many transfer samples took their distillation target from each candidate during an epoch.

    Candidates are the target rules' routing codes: the frozen student (`FROZEN`), teacher k (k),
    a mix of both (`MIXED`) and no target at all (`SKIPPED`).
    """

    def __init__(self, num_teachers: int, device: torch.device):
        self.teacher_names = ["teacher"] if num_teachers == 1 else [f"teacher{k}" for k in range(1, num_teachers + 1)]
        self.codes = {
            "skipped": SKIPPED,
            "mixed": MIXED,
            "frozen": FROZEN,
            **{name: k for k, name in enumerate(self.teacher_names, start=1)},
        }
        self.offset = -min(self.codes.values())  # bincount needs codes >= 0
        self.counts = torch.zeros(max(self.codes.values()) + self.offset + 1, dtype=torch.long, device=device)

    def add(self, routing: torch.Tensor) -> None:
        self.counts += torch.bincount(routing + self.offset, minlength=len(self.counts))

    def shares(self) -> dict[str, Any]:
        """`routing` (percent per candidate, by name) and `routed_to_teacher` (percent to any teacher)."""
        counts = self.counts.tolist()
        total = max(sum(counts), 1)
        shares = {
            name: 100.0 * counts[code + self.offset] / total
            for name, code in self.codes.items()
            if code != SKIPPED and code != MIXED
        }
        shares["mixed"] = 100.0 * counts[MIXED + self.offset] / total
        shares["skipped"] = 100.0 * counts[SKIPPED + self.offset] / total
        return {"routed_to_teacher": sum(shares[name] for name in self.teacher_names), "routing": shares}


@dataclass
class TrainOutcome:
    """What `Trainer.run` returns.

    Attributes:
        history: metrics rows, epoch 0 first.
        final: the metrics of the exported student (None while unfinished).
        model: the model to export (the student, or MCL's slow weights); None for `ensemble`.
        finished: False when the run stopped early on request (resumable).
    """

    history: list[dict[str, Any]]
    final: dict[str, Any] | None
    model: nn.Module | None
    finished: bool


# ---------------------------------------------------------------------------------------------
# The training state


@dataclass
class TrainingState:
    """Everything a checkpoint holds, in one place: what `state_dict` writes and `load_state_dict`
    restores, so a resumed run continues to bitwise the same weights on CPU.

    Attributes:
        student: the student being trained (its `Classifier`, not the DDP/compile wrapper).
        method: the preset made concrete (CRD's projections and memory bank are its state).
        optimizer: the optimiser of the student's and the method's parameters.
        regulariser: the weight regulariser (the no-op `WeightRegulariser` for a preset without one).
        augment_rng: the generator of the data augmentation.
        device: where the run trains (its CUDA RNG states are saved too).
        history: metrics rows, epoch 0 first.
        epoch: the last finished epoch.
        step: optimiser steps taken.
    """

    student: nn.Module
    method: TransferMethod
    optimizer: torch.optim.Optimizer
    regulariser: WeightRegulariser
    augment_rng: torch.Generator
    device: torch.device
    history: list[dict[str, Any]]
    epoch: int = 0
    step: int = 0
    arithmetic: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint (`CHECKPOINT_FORMAT`): plain tensors, numbers and a JSON history, and how its floats
        were computed (`arithmetic`: a resume computed otherwise is not bitwise the uninterrupted run)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "arithmetic": json.dumps(self.arithmetic, sort_keys=True),
            "epoch": self.epoch,
            "step": self.step,
            "student": self.student.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "regulariser": self.regulariser.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "augment": self.augment_rng.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            },
            "history": json.dumps(self.history),
        }

    def load_state_dict(self, state: dict[str, Any], restore_rng: bool = True) -> None:
        """Restore what `state_dict` wrote.

        Args:
            state: a checkpoint of this run.
            restore_rng: also restore the random states (False under DDP, where every epoch
                re-seeds each rank: `anyteach.ddp`).

        Raises:
            KeyError, RuntimeError, ValueError, TypeError: the checkpoint does not fit this run.
        """
        self.student.load_state_dict(state["student"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.regulariser.load_state_dict(state["regulariser"])
        if restore_rng:
            torch.set_rng_state(state["rng"]["torch"])
            self.augment_rng.set_state(state["rng"]["augment"])
            if self.device.type == "cuda" and state["rng"]["cuda"]:
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.history = json.loads(state["history"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])


def arithmetic(device: torch.device, runtime: Runtime) -> dict[str, Any]:
    """What decides a run's floats beyond its inputs and seeds: the device, the dtype it computes in, and on
    the CPU the number of threads and the kernels' instruction set (a reduction split over two threads, or done
    with AVX2 instead of AVX-512 kernels, adds in another order). Two runs that agree here compute bitwise the
    same on the same machine and torch version."""
    described: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "dtype": "bfloat16 autocast" if runtime.autocast_enabled else "float32",
        "torch": torch.__version__,
    }
    if device.type == "cpu":
        described.update(threads=torch.get_num_threads(), kernels=torch.backends.cpu.get_cpu_capability())
    return described


def arithmetic_change(saved: dict[str, Any], now: dict[str, Any]) -> str:
    """One line when a checkpoint was written with other arithmetic than the resume's, else empty."""
    names = {"threads": "torch threads", "kernels": "CPU kernels"}
    changed = [
        f"{names.get(key, key)} {now.get(key)} (the checkpoint was written with {saved.get(key)})"
        for key in sorted(set(saved) | set(now))
        if saved.get(key) != now.get(key)
    ]
    if not saved or not changed:
        return ""
    return (
        f"resuming with {', '.join(changed)}: the result will not be bitwise identical to an uninterrupted run "
        "(its numbers may differ in the last digits)"
    )


# ---------------------------------------------------------------------------------------------
# Where choices are made


CHOICE_SHARE = 0.5
"""The share of the calib split a preset chooses on when it also fine-tunes on the calib labels (`held_out_choice`)."""


def held_out_choice(preset: MethodPreset, data: Dataset, seed: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Which calib samples a preset's choices are made on, and which labelled samples it fine-tunes on.

    A choice (the WiSE guard's α, an ensemble's teacher weight) made on samples the student was trained on is
    blind: it sees the training accuracy (a control fine-tuned on the 5,000 calib labels scored 96–100% on them
    against 64–99% on held-out samples, and kept α = 1). So where a preset fine-tunes on the labels of the calib
    split and also chooses on it (`labelled_split == "calib"`: `self+xe+wise`), the split is cut into two
    disjoint, class-stratified halves drawn with the run's seed: the labelled batches come from one, every choice
    is made on the other (`CHOICE_SHARE`). Otherwise the choices use the whole calib split and the labelled
    batches the whole labelled split.

    Returns:
        `(choice, labelled)`: positions in the calib split to choose on and positions in the labelled split to
        fine-tune on, each None for "all of it".
    """
    needs = preset.needs
    if not needs.calibration or needs.labelled != "calib":
        return None, None
    labels = data.labels("calib").numpy()
    choice = stratified_subset(labels, CHOICE_SHARE, seed)
    labelled = np.setdiff1d(np.arange(len(labels)), choice)
    if not len(choice) or not len(labelled):
        raise AnyteachError(
            f"method {preset.name!r} fine-tunes on the calib labels and chooses on held-out calib samples: the "
            f"calib split of {data.ref!r} has {len(labels)} samples, too few to cut in two (give it more)"
        )
    return torch.from_numpy(choice), torch.from_numpy(labelled)


# ---------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """Transfers from `teachers` into `student` on `data` with one method.

    Everything a run needs besides its training state is ready after `__init__`: the eval-split
    reference predictions (`reference`) and, for methods that train, the outputs each step imitates
    (`outputs`); `run` then trains, measures and checkpoints.

    Args:
        student: the student S0 (a copy is trained; the argument is left untouched).
        teachers: K >= 0 teachers (the method decides how many it accepts).
        data: the dataset; training uses its `transfer` split, measuring its `eval` split.
        method: a preset name from `methods.METHODS`.
        method_options: the method's resolved options (`methods.resolve_method_options`).
        options: training options.
        reporter: progress sink (default: silent).
        original: an earlier student that every row is also measured against (`vs_original`).

    Attributes:
        on_step: called after every optimiser step with `(step, loss terms, learning rate)`, the
            terms as tensors on the device (experiment trackers: `RunTrackers.log_step`); None: nothing.
    """

    on_step: Callable[[int, dict[str, torch.Tensor], float], None] | None = None

    def __init__(
        self,
        student: Classifier,
        teachers: list[Classifier],
        data: Dataset,
        method: str,
        method_options: dict[str, Any],
        options: TrainingOptions,
        reporter: Reporter | None = None,
        original: Classifier | None = None,
        allow_chance: bool = False,
    ):
        self.preset = get_method(method)
        self.needs = self.preset.needs_for(options)
        self.teachers = list(teachers)
        self.data = data
        self.method_options = dict(method_options)
        self.options = options
        self.lr = resolve_lr(options, method)
        self.device = rank_device(resolve_device(options.device))  # the run was checked by `transfer.plan_run`
        self.runtime = Runtime.of(self.device, options)
        self.reporter = reporter or SilentReporter()
        self.student = sync_batchnorm(copy.deepcopy(student), options)
        self.runtime.place(self.student)
        self.reference = EvalReference.build(
            self.student, self.teachers, data, options.eval_batch_size, self.device, original, self.runtime
        )
        if not allow_chance:  # a student or teacher at chance on the eval split is a wrong input, not a result
            labels = self.reference.labels
            for role, model, logits in [
                ("student", student, self.reference.before_logits),
                *(("teacher", t, lg) for t, lg in zip(self.teachers, self.reference.teacher_logits)),
            ]:
                check_not_at_chance(model, data, "eval", role, Predictions(logits, labels, model.name, "eval"))
        if self.needs.calibration and not data.has_split("calib"):
            raise AnyteachError(
                f"method {self.preset.name!r} chooses on a calibration split, but dataset {data.ref!r} "
                "has none (e.g. mnist1d:calib=5000, or a calib/ folder of an image folder)"
            )
        self.steps_per_epoch = len(self._loader(0))
        if self.preset.trains and self.steps_per_epoch == 0 and options.epochs > 0:
            raise AnyteachError(
                f"the transfer split has {data.size('transfer')} samples, fewer than one batch of "
                f"{options.batch_size}; lower batch_size"
            )
        self.lr_at = lr_factor(
            options.lr_schedule,
            options.epochs * self.steps_per_epoch,
            round(options.warmup_epochs * self.steps_per_epoch),
        )
        """The factor of `lr` at each optimiser step (the schedule)."""
        self.outputs: ReferenceOutputs | None = None
        if self.preset.trains:
            self.outputs = ReferenceOutputs(
                self.student,
                self.teachers,
                data,
                self.needs,
                options.eval_batch_size,
                self.runtime,
            )

    def _autocast(self):
        return self.runtime.autocast()

    def measure(self, model: nn.Module) -> dict[str, Any]:
        """Eval-split metrics of any `model` against S0 and the teacher(s), as a row without an epoch."""
        return self.reference.row(self.evaluate(model))

    def evaluate(self, model: nn.Module) -> torch.Tensor:
        """Eval-split predictions of `model` (one no-grad pass)."""
        return evaluate(model, self.data, self.options.eval_batch_size, self.device, self.runtime)

    # -- the loop ------------------------------------------------------------------------------

    def run(
        self,
        checkpoint: Path | None = None,
        on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
        stop_after_epoch: int | None = None,
    ) -> TrainOutcome:
        """Train (or resume) and measure.

        Args:
            checkpoint: where the full state is saved after every epoch and resumed from if it exists.
            on_epoch: called with the whole history after each evaluated epoch, after the checkpoint
                is safely written (an exception raised there leaves a resumable run).
            stop_after_epoch: stop (resumably) once this epoch is done: a hook for time-sliced jobs
                and for testing resume.

        Returns:
            A `TrainOutcome`.
        """
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # leave the caller's random state as it was
            return self._run(checkpoint, on_epoch, stop_after_epoch)

    def _run(self, checkpoint, on_epoch, stop_after_epoch) -> TrainOutcome:
        opts = self.options
        epoch0 = self.reference.row(self.reference.before, 0)
        if not self.preset.trains:
            return self._ensemble(epoch0, on_epoch)
        context = self.method_context()

        state = self._new_state(context, epoch0)
        # every rank reads the checkpoint rank 0 wrote (the run directory is shared); rank 0 decides
        if checkpoint is not None and distributed.on_main(lambda: Path(checkpoint).exists()):
            self._load(checkpoint, state)
        if on_epoch is not None:  # also after a resume: a kill between checkpoint and metrics lost no row
            on_epoch(state.history)

        self.reporter.start(opts.epochs, self.steps_per_epoch, state.history)
        step_student = TrainingStudent(self.student, self.runtime)
        exported = None  # the model measured after the last epoch trained in this call (the last is always measured)
        try:
            while state.epoch < opts.epochs:
                state.epoch += 1
                epoch = state.epoch
                started = time.perf_counter()
                train = self._train_epoch(state, step_student)
                train_seconds = time.perf_counter() - started
                if epoch % opts.eval_every == 0 or epoch == opts.epochs:
                    started = time.perf_counter()
                    exported = state.regulariser.exported(self.student)
                    row = self.reference.row(self.evaluate(exported), epoch)
                    row.update(json_ready(state.regulariser.chosen()))
                    row.update(
                        json_ready(train),
                        steps=state.step,
                        seconds_train=round(train_seconds, 3),
                        seconds_eval=round(time.perf_counter() - started, 3),
                    )
                    state.history.append(row)
                    self.reporter.epoch(row)
                if checkpoint is not None:
                    distributed.on_main(lambda: torch_save(checkpoint, state.state_dict()))
                if on_epoch is not None and state.history[-1]["epoch"] == epoch:
                    on_epoch(state.history)
                if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < opts.epochs:
                    return TrainOutcome(state.history, None, None, False)
        finally:
            self.reporter.close()
            del step_student
            if distributed.active():
                # DDP's reducer sits in a reference cycle: collect it now, while its process group
                # exists (collected after the group is destroyed, it aborts the process)
                gc.collect()
        if exported is None:  # resumed after the last epoch: choose again (WiSE is a function of the weights)
            exported = state.regulariser.exported(self.student)
        return TrainOutcome(state.history, dict(state.history[-1]), exported, True)

    def _new_state(self, context: MethodContext, epoch0: dict[str, Any]) -> TrainingState:
        """A fresh training state: the method, its optimiser, the regulariser and the random states."""
        opts = self.options
        torch.manual_seed(opts.seed)  # what happened before must not change the training randomness
        method = build_method(self.preset.name, self.method_options, context).to(self.device)
        optimizer = make_optimizer(
            list(self.student.parameters()) + list(method.parameters()),
            opts.optimizer,
            self.lr,
            opts.weight_decay,
            opts.momentum,
        )
        regulariser = build_regulariser(self.preset, self.student, self.method_options, context)
        augment_rng = torch.Generator().manual_seed(augment_seed(opts.seed))
        return TrainingState(
            self.student,
            method,
            optimizer,
            regulariser,
            augment_rng,
            self.device,
            [epoch0],
            arithmetic=arithmetic(self.device, self.runtime),
        )

    def method_context(self) -> MethodContext:
        """What the method's parts are built with: sizes, the transfer labels, the samples its choices are made
        on (`Calibration`, `calib_score`) and the labelled batches it fine-tunes on (`labelled_batch`).

        Choices are made on samples the method does not train on: on the calib split, never the eval split,
        and where the preset also fine-tunes on the calib labels (`self+xe+wise`), only on the half of the calib
        split it does not fine-tune on (`held_out_choice`)."""
        context = MethodContext(
            self.data.num_classes, transfer_labels=self.data.labels("transfer"), seed=self.options.seed
        )
        choice, labelled = held_out_choice(self.preset, self.data, self.options.seed)
        split = None  # the labelled split's samples on the device, loaded once
        if self.needs.labelled is not None:
            split = self._split_tensors(self.needs.labelled)
            context.labelled_batch = self._labelled_batches(*split, labelled)
        if self.needs.calibration:  # choices made on the calib split, never on the eval split
            bs = self.options.eval_batch_size
            labels = self.data.labels("calib")
            frozen = cached_logits(self.student, self.data, "calib", bs, self.device, self.runtime).cpu()
            teachers = [
                cached_logits(t, self.data, "calib", bs, self.device, self.runtime).cpu() for t in self.teachers
            ]
            teacher_logits = torch.stack(teachers) if teachers else frozen[None, :0]
            if choice is None:
                context.calibration = Calibration(labels, frozen, teacher_logits)

                def calib_score(model: nn.Module) -> float:
                    logits = model_logits(model, self.data, "calib", bs, self.device, self.runtime)  # type: ignore[arg-type]
                    return 100.0 * (logits.argmax(1) == labels).float().mean().item()

            else:  # the calib split is also trained on: choose on the held-out half only (loaded above)
                held = teacher_logits[:, choice] if teachers else frozen[choice][None, :0]
                context.calibration = Calibration(labels[choice], frozen[choice], held)
                assert split is not None  # a preset choosing on the calib split it fine-tunes on loaded it above
                inputs, targets = split[0][choice.to(split[0].device)], split[1][choice.to(split[1].device)]

                def calib_score(model: nn.Module) -> float:
                    was_training = model.training
                    model.eval()
                    with torch.no_grad(), self._autocast():
                        logits = torch.cat([model(inputs[i : i + bs]) for i in range(0, len(inputs), bs)])
                    model.train(was_training)
                    return 100.0 * (logits.argmax(1) == targets).float().mean().item()

            context.calib_score = calib_score
        if self.needs.teacher_features:
            x, _, _ = next(
                iter(
                    self.data.loader(
                        "transfer", batch_size=2, num_workers=0, preprocessing=self.student.info.preprocessing
                    )
                )
            )
            x = self.runtime.to_device(x)
            with torch.no_grad():
                self.student.eval()
                context.student_feature_dim = self.student.features(x)[1].shape[1]
                assert self.outputs is not None, "reference outputs are set up before the method"
                context.teacher_feature_dim = self.outputs.teacher_feature_dim(x)
        return context

    def _split_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All of `split`'s inputs (preprocessed for the student) and labels, on the device, in index order."""
        x, y, _ = next(
            iter(
                self.data.loader(
                    split,
                    batch_size=self.data.size(split),
                    num_workers=0,
                    preprocessing=self.student.info.preprocessing,
                )
            )
        )
        return self.runtime.to_device(x), y.to(self.device)

    def _labelled_batches(
        self, x: torch.Tensor, y: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """`index -> (inputs, labels)`: a batch of the labelled split's samples `x, y` (those at the positions
        `allowed`, default all) of the transfer batch's size, drawn at random as a function of the transfer
        batch's index (a resumed run draws the same)."""
        seed = self.options.seed
        count = len(y) if allowed is None else len(allowed)

        def draw(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            generator = torch.Generator().manual_seed(seed * RUN_STRIDE + int(index.sum()))
            pick = torch.randint(count, (len(index),), generator=generator)
            if allowed is not None:
                pick = allowed[pick]
            pick = pick.to(y.device)
            return x[pick], y[pick]

        return draw

    def _loader(self, epoch: int, augment_rng: torch.Generator | None = None):
        """The transfer split's batches of `epoch` (this rank's share of each under DDP)."""
        return self.data.loader(
            "transfer",
            batch_size=self.options.batch_size,
            shuffle=True,
            seed=self.options.seed,
            epoch=epoch,
            preprocessing=self.student.info.preprocessing,
            augment=self.options.augment,
            drop_last=True,
            generator=augment_rng,
            num_workers=self.options.workers,
            shard=(distributed.rank(), distributed.world_size()),
        )

    def _train_epoch(self, state: TrainingState, step_student: nn.Module) -> dict[str, Any]:
        """Epoch `state.epoch`: one pass over the transfer split, advancing `state`. Returns the epoch's
        training numbers:
        mean loss terms (`train_loss`, `train_loss_kl`, ...) and, for methods with a target rule, the
        percent of transfer samples whose target came from each candidate (`routing`) and from any
        teacher (`routed_to_teacher`)."""
        epoch, method, optimizer, regulariser = state.epoch, state.method, state.optimizer, state.regulariser
        augment_rng, step = state.augment_rng, state.step
        self.student.train()
        method.train()
        if distributed.active():
            seed_epoch(self.options.seed, epoch, augment_rng)
        routing = RoutingCounts(len(self.teachers), self.device)
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        first_bad = torch.tensor(-1, device=self.device)  # the first step whose loss is not finite (no host sync)
        mixing, rank = self.options.mix, distributed.rank()
        for x, y, index in self._loader(epoch, augment_rng):
            x = self.runtime.to_device(x)
            y, index = y.to(self.device, non_blocking=True), index.to(self.device, non_blocking=True)
            mix = None
            if mixing != "none":  # every model sees the same mixed batch: a function of (seed, step, rank)
                x, mix = mix_batch(x, mix_seed(self.options.seed, step, rank), mixing, self.options.mix_alpha)
            frozen, teachers, features = self.outputs(x, index)  # type: ignore[misc]  # set up by then
            with self._autocast():
                out = method(step_student, x, y, index, frozen, teachers, features, mix)
            loss = sum(out.losses.values())
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), step + 1, first_bad)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:  # the schedule is a function of the step: resumes exactly
                group["lr"] = self.lr * self.lr_at(step)
            optimizer.step()
            if self.on_step is not None:
                self.on_step(step + 1, out.losses, self.lr * self.lr_at(step))
            step += 1
            steps += 1
            state.step = step
            regulariser.after_step(self.student, step)
            for name, value in out.losses.items():
                sums[name] = sums.get(name, 0.0) + value.detach()
            if out.target is not None:
                routing.add(out.target.routing)
            self.reporter.step()
            if steps % DIVERGENCE_CHECK_STEPS == 0:
                self._check_finite(first_bad, epoch)
        self._check_finite(first_bad, epoch, weights=True)
        if distributed.active():
            means, routing.counts = reduce_training_numbers(sums, steps, routing.counts)
            train: dict[str, Any] = {"train_loss": sum(means.values()) if means else 0.0}
            train.update({f"train_{name}": means[name] for name in sums})
        else:
            total = sum(sums.values())
            train = {"train_loss": float(total.item()) / max(steps, 1) if isinstance(total, torch.Tensor) else 0.0}
            train.update({f"train_{name}": float(value.item()) / max(steps, 1) for name, value in sums.items()})
        if method.rule is not None:
            train.update(routing.shares())
        if method.rule_params:
            train["calibration"] = dict(method.rule_params)
        return train

    def _check_finite(self, first_bad: torch.Tensor, epoch: int, weights: bool = False) -> None:
        """Stop a run whose loss (or, at the end of an epoch, whose weights) became NaN or infinite.

        Raises:
            TrainingDiverged: naming the step and the likely cause; nothing of the bad epoch is saved.
        """
        step = int(first_bad.item())
        what = "the loss"
        if step < 0 and weights:
            params = [p.detach() for p in self.student.parameters()]
            if params and not bool(torch.stack([p.isfinite().all() for p in params]).all()):
                step, what = (epoch - 1) * self.steps_per_epoch + self.steps_per_epoch, "the weights"
        if distributed.active():  # every rank stops together (a rank left alone would wait forever)
            anywhere = distributed.all_reduce_sum(torch.tensor([float(step >= 0)]))
            if anywhere.item() > 0 and step < 0:
                what, step = "another rank's loss", epoch * self.steps_per_epoch
        if step < 0:
            return
        lr = self.lr * self.lr_at(max(step - 1, 0))
        kept = f"the last good checkpoint (epoch {epoch - 1}) is kept" if epoch > 1 else "no epoch had finished"
        raise TrainingDiverged(
            f"training diverged at step {step} (epoch {epoch}): {what} became NaN or infinite; the learning rate "
            f"({lr:.3g} at that step) is likely too high for this method, lower it (--lr); {kept} and no student "
            "is exported"
        )

    def _ensemble(self, epoch0: dict[str, Any], on_epoch) -> TrainOutcome:
        """The `ensemble` baseline: no training; per sample the more confident of S0 and the teachers."""
        predictions, routing = ensemble_predictions(self.reference.before_logits, self.reference.teacher_logits)
        final = self.reference.row(predictions)
        final["routed_to_teacher"] = 100.0 * (routing > 0).double().mean().item()
        history = [epoch0]
        if on_epoch is not None:
            on_epoch(history)
        return TrainOutcome(history, final, None, True)

    # -- checkpoints ---------------------------------------------------------------------------

    def _load(self, path: Path, state: TrainingState) -> None:
        """Restore the full training state from `path`.

        Raises:
            CorruptCheckpoint: the file cannot be read or does not fit this run (named with the remedy).
        """

        def corrupt(reason: str) -> CorruptCheckpoint:
            return CorruptCheckpoint(
                f"checkpoint {path} is corrupt ({reason}); run again with --restart (API: "
                "restart=True) to start this run from scratch"
            )

        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the same user-facing problem
            raise corrupt("truncated, damaged or not a checkpoint file") from e
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            raise corrupt("not an anyteach checkpoint")
        try:
            written = json.loads(saved.get("arithmetic") or "{}")
        except (TypeError, ValueError):
            written = {}
        change = arithmetic_change(written if isinstance(written, dict) else {}, state.arithmetic)
        if change and distributed.is_main():
            warnings.warn(change, AnyteachWarning, stacklevel=2)
        try:
            # under DDP every epoch re-seeds each rank (anyteach.ddp)
            state.load_state_dict(saved, restore_rng=not distributed.active())
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise corrupt(f"it does not fit this run: {str(e).splitlines()[0]}") from e


__all__ = [
    "CHECKPOINT_FORMAT",
    "ORIGINAL_KEYS",
    "EvalReference",
    "ReferenceOutputs",
    "Reporter",
    "RoutingCounts",
    "SilentReporter",
    "TrainOutcome",
    "Trainer",
    "TrainingOptions",
    "TrainingState",
    "arithmetic",
    "arithmetic_change",
    "evaluate",
    "held_out_choice",
    "resolve_device",
    "resolve_lr",
    "split_features",
]
