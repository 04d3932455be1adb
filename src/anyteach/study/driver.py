"""Transfer studies: planning a study's runs and the driver that runs them into the store.

A study's definition (`StudySpec`, validated by `anyteach.study_spec`) names models, pairs,
methods, seeds and a recipe. Pairs are either every ordered (student, teacher) pair of the chosen
models or N random ordered pairs drawn with a seed, optionally balanced over the teacher-strength
buckets of docs/concepts/measures.md (measured from the models' cached eval predictions). `run_study`
plans the runs, skips those already in the study's SQLite store, hands the rest to an executor
(in-process, local worker processes or Ray) and writes each finished run into the store, from the
driver only, in one transaction. Killing it at any moment loses at most the runs in flight; running
it again resumes them (each run directory resumes through the transfer engine).
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import yaml

from ..analysis.metrics import BUCKETS, strength_bucket, teacher_strength
from ..core.errors import AnyteachError, RunFailed
from ..core.io import exclusive_lock, slug, text_digest, write_text
from ..core.trackers import check_trackers
from ..data.predictions import check_compatible, predict
from ..data.references import Dataset, load_dataset
from ..models.references import load_model
from ..training.transfer import model_identity
from .executors import RunTask, make_executor
from .spec import MethodSpec, PairSpec, StudySpec, build_study_spec, load_study_spec, run_options, spec_key
from .store import StudyStore, run_row

if TYPE_CHECKING:
    from ..analysis.forecast import RecommendedPairs

# ---------------------------------------------------------------------------------------------
# Models and pairs


@dataclass(frozen=True)
class ModelEntry:
    """A study model: its reference and metadata (eval accuracy only when the plan needed it)."""

    ref: str
    name: str
    family: str
    num_params: int
    eval_acc: float | None = None
    identity: str = ""  # content identity (weights digest): a model file overwritten is another model


def describe_models(refs: Sequence[str], data: str | Dataset, accuracies: bool = False) -> list[ModelEntry]:
    """Load each model's metadata (validating the reference and the class count against `data`).

    Args:
        refs: model references.
        data: dataset reference.
        accuracies: also measure each model's eval accuracy (from the predictions cache).

    Raises:
        AnyteachError: a reference that does not resolve or does not fit the data.
    """
    dataset = load_dataset(data)
    entries = []
    for ref in refs:
        model = load_model(ref)
        check_compatible(model, dataset)
        acc = predict(model, dataset, "eval").accuracy if accuracies else None
        entries.append(
            ModelEntry(ref, model.info.name, model.info.family, int(model.info.num_params), acc, model_identity(model))
        )
    return entries


def _resolve_names(names: Sequence[str] | None, models: Sequence[ModelEntry], key: str) -> list[ModelEntry]:
    if names is None:
        return list(models)
    by_ref = {m.ref: m for m in models}
    by_name: dict[str, list[ModelEntry]] = {}
    for m in models:
        by_name.setdefault(m.name, []).append(m)
    chosen = []
    for name in names:
        if name in by_ref:
            chosen.append(by_ref[name])
        elif len(by_name.get(name, [])) == 1:
            chosen.append(by_name[name][0])
        elif name in by_name:
            raise AnyteachError(f"{spec_key(key)}: {name!r} names {len(by_name[name])} models; use their references")
        else:
            raise AnyteachError(
                f"{spec_key(key)}: {name!r} is not one of the study's models ({', '.join(m.name for m in models)})"
            )
    return chosen


def sample_pairs(models: Sequence[ModelEntry], pairs: PairSpec) -> list[tuple[ModelEntry, ModelEntry]]:
    """The ordered (student, teacher) pairs of a study, students != teachers.

    Without `pairs.random`: every pair of students x teachers, in the listed order. With it: that
    many pairs drawn without replacement with `random.Random(pairs.seed)` from the sorted candidate
    list (so the draw is the same on every machine); `balanced` draws round-robin over the
    teacher-strength buckets that have candidates, so every bucket is covered as evenly as the zoo
    allows and a study cut short still covers all of them.

    Raises:
        AnyteachError: no candidate pairs, more pairs asked than exist, or `balanced` without
            measured accuracies.
    """
    students = _resolve_names(pairs.students, models, "pairs.students")
    teachers = _resolve_names(pairs.teachers, models, "pairs.teachers")
    candidates = [(s, t) for s in students for t in teachers if s.ref != t.ref]
    if not candidates:
        raise AnyteachError(f"{spec_key('pairs')}: no ordered (student, teacher) pair of two different models")
    if pairs.random is None:
        return candidates
    if pairs.random > len(candidates):
        raise AnyteachError(
            f"{spec_key('pairs.random')}: asked for {pairs.random} pairs but only "
            f"{len(candidates)} ordered pairs of different models exist"
        )
    rng = random.Random(pairs.seed)
    ordered = sorted(candidates, key=lambda p: (p[0].ref, p[1].ref))
    if not pairs.balanced:
        return rng.sample(ordered, pairs.random)
    if any(m.eval_acc is None for m in models):
        raise AnyteachError("balanced pair sampling needs every model's eval accuracy")
    groups: dict[str, list[tuple[ModelEntry, ModelEntry]]] = {b: [] for b in BUCKETS}
    for s, t in ordered:
        groups[strength_bucket(teacher_strength(t.eval_acc, s.eval_acc))].append((s, t))  # type: ignore[arg-type]
    for group in groups.values():
        rng.shuffle(group)
    drawn: list[tuple[ModelEntry, ModelEntry]] = []
    while len(drawn) < pairs.random:
        for bucket in BUCKETS:
            if groups[bucket] and len(drawn) < pairs.random:
                drawn.append(groups[bucket].pop())
    return drawn


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class RunSpec:
    """One transfer of a study: everything that determines its result, and its identity `key`."""

    label: str
    method: str
    student: str
    teacher: str | None
    seed: int
    options: str  # JSON, sorted keys: the study recipe merged with the method's options
    data: str
    content: str = ""  # what was read: the models' weight digests and the data's identity (manifests)

    @property
    def key(self) -> str:
        """Stable identity: the store's primary key and the run directory's suffix. It includes the
        content identities of the models and the data, so overwriting a model file or editing an image
        makes another run (never a stale result under the old key)."""
        return text_digest(
            json.dumps(
                [self.label, self.method, self.student, self.teacher, self.seed, self.options, self.data, self.content]
            ),
            20,
        )

    @property
    def option_dict(self) -> dict[str, Any]:
        return json.loads(self.options)

    def directory_name(self, names: Mapping[str, str]) -> str:
        """`<label>/<student>--<teacher>-s<seed>-<key>`, made of filesystem-safe characters."""
        teacher = names.get(self.teacher, "") if self.teacher else "none"
        stem = f"{names.get(self.student, 'student')}--{teacher}-s{self.seed}-{self.key[:10]}"
        return f"{slug(self.label)}/{slug(stem)}"


@dataclass
class StudyPlan:
    """The runs of a study, in execution order, with the models they use."""

    spec: StudySpec
    models: list[ModelEntry]
    pairs: list[tuple[ModelEntry, ModelEntry]]
    runs: list[RunSpec]
    data_identities: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> dict[str, str]:
        return {m.ref: m.name for m in self.models}


def recommended_study_pairs(spec: StudySpec, models: Sequence[ModelEntry]) -> list[tuple[ModelEntry, ModelEntry]]:
    """The pairs of `pairs: {recommended: k}`, in plan order (`recommended_choice`).

    Raises:
        AnyteachError: no method with a forecast, no calib split.
    """
    by_ref = {m.ref: m for m in models}
    return [(by_ref[s], by_ref[t]) for s, t in recommended_choice(spec, models).ordered()]


def recommended_choice(spec: StudySpec, models: Sequence[ModelEntry]) -> RecommendedPairs:
    """The two arms of `pairs: {recommended: k}`: per student its k best-forecast teachers and a random
    draw of k (`forecast.recommended_pairs`), forecast for `pairs.method` (default: the study's first
    method the shipped forecaster knows) on the calib split of that method's data (or the study's).
    The plan and the report both call it, so the report compares exactly the arms that ran.

    Raises:
        AnyteachError: no method with a forecast, no calib split.
    """
    from ..analysis.forecast import calib_data, recommended_pairs, shipped_forecaster

    forecaster = shipped_forecaster()
    method = spec.pairs.method or next((m.label for m in spec.methods if m.label in forecaster.methods), None)
    if method is None:
        raise AnyteachError(
            f"{spec_key('pairs.recommended')}: no method of the study has a forecast "
            f"({', '.join(sorted(forecaster.methods))}); name one with pairs.method"
        )
    own = next((m.data for m in spec.methods if m.label == method), None)
    data = calib_data([own, spec.data])
    if data is None:
        raise AnyteachError(
            f"{spec_key('pairs.recommended')}: the forecast measures on a calib split; give the "
            f"study's data one (e.g. {spec.data.partition(':')[0]}:calib=5000)"
        )
    students = _resolve_names(spec.pairs.students, models, "pairs.students")
    teachers = _resolve_names(spec.pairs.teachers, models, "pairs.teachers")
    return recommended_pairs(
        [m.ref for m in students],
        [m.ref for m in teachers],
        int(spec.pairs.recommended or 0),
        data,
        method=method,
        seed=spec.pairs.seed,
        forecaster=forecaster,
    )


def plan_study(spec: StudySpec) -> StudyPlan:
    """Resolve models and pairs and list the runs: for each pair, each method, each seed.

    Teacher-free methods (the `xe` control) run once per distinct student, placed where that
    student first appears, so a study cut short still has its controls.
    """
    dataset = load_dataset(spec.data)  # once: an image folder's manifest reads every file's metadata
    models = describe_models(spec.models, dataset, accuracies=spec.pairs.balanced)
    pairs = recommended_study_pairs(spec, models) if spec.pairs.recommended else sample_pairs(models, spec.pairs)
    identity = {m.ref: m.identity for m in models}
    data_identity = data_identities(spec, {spec.data: dataset})
    runs: list[RunSpec] = []
    seen_students: set[str] = set()
    for student, teacher in pairs:
        for method in spec.methods:
            if (method.teacher_free and student.ref in seen_students) or method.teacher is not None:
                continue
            options = json.dumps(run_options(method, spec.recipe), sort_keys=True)
            for seed in spec.seeds:
                data = method.data or spec.data
                content = json.dumps(
                    [identity[student.ref], None if method.teacher_free else identity[teacher.ref], data_identity[data]]
                )
                runs.append(
                    RunSpec(
                        method.label,
                        method.name,
                        student.ref,
                        None if method.teacher_free else teacher.ref,
                        seed,
                        options,
                        data,
                        content,
                    )
                )
        seen_students.add(student.ref)
    for method in (m for m in spec.methods if m.teacher == "best"):
        students = list(dict.fromkeys(s for s, _ in pairs))
        for student, teacher in best_teachers(spec, method, students, models):
            options = json.dumps(run_options(method, spec.recipe), sort_keys=True)
            data = method.data or spec.data
            content = json.dumps([identity[student.ref], identity[teacher.ref], data_identity[data]])
            runs += [
                RunSpec(method.label, method.name, student.ref, teacher.ref, seed, options, data, content)
                for seed in spec.seeds
            ]
    return StudyPlan(spec, models, pairs, runs, data_identity)


def best_teachers(
    spec: StudySpec, method: MethodSpec, students: Sequence[ModelEntry], models: Sequence[ModelEntry]
) -> list[tuple[ModelEntry, ModelEntry]]:
    """`teacher: best`: per student (in study order), the study model the shipped forecast ranks first as its
    teacher for `method` (for a method without a forecast, for the teaching preset `pl+ens+wise`), from the
    signals on the calib split of the method's data (or the study's); no training.

    Raises:
        AnyteachError: neither data has a calib split.
    """
    from ..analysis.forecast import DEFAULT_METHOD, calib_data, pair_signals, rank_rows, shipped_forecaster

    forecaster = shipped_forecaster()
    data = calib_data([method.data, spec.data])
    if data is None:
        raise AnyteachError(
            f"{spec_key('methods')}: {method.label!r} has teacher: best, which ranks teachers on a "
            f"calib split; give its data one (e.g. {spec.data.partition(':')[0]}:calib=5000)"
        )
    forecast = forecaster.get(method.name if method.name in forecaster.methods else DEFAULT_METHOD)
    refs = [m.ref for m in models]
    table = rank_rows(pair_signals([s.ref for s in students], refs, data), forecast)
    by_ref = {m.ref: m for m in models}
    best = table[table["rank"] == 1].set_index("student")["teacher"]
    return [(s, by_ref[best[s.ref]]) for s in students if s.ref in best.index]


def data_identities(spec: StudySpec, loaded: Mapping[str, Dataset] | None = None) -> dict[str, str]:
    """Each dataset reference of a study (its own and its methods') -> its content identity
    (`loaded`: datasets already loaded, by reference)."""
    loaded = loaded or {}
    refs = dict.fromkeys([spec.data, *(m.data for m in spec.methods if m.data)])
    return {ref: (loaded.get(ref) or load_dataset(ref)).identity for ref in refs}


def content_changes(store: StudyStore, plan: StudyPlan) -> list[str]:
    """What changed since the store last planned this study: one line per model file whose weights
    or dataset whose files differ (their runs then run again under new keys)."""
    before = store.identities()
    notes = []
    for m in plan.models:
        old = before.get(m.ref)
        if old and m.identity and old != m.identity:
            notes.append(
                f"model {m.ref} changed since the last run of this study (weights {old[:12]} -> "
                f"{m.identity[:12]}): its runs run again"
            )
    for ref, identity in plan.data_identities.items():
        old = before.get(f"data:{ref}")
        if old and old != identity:
            notes.append(
                f"data {ref} changed since the last run of this study (files added, removed, edited or "
                "relabelled): its runs run again"
            )
    return notes


# ---------------------------------------------------------------------------------------------
# Driver


@dataclass
class StudyOutcome:
    """What `run_study` did: runs planned, already in the store, finished now, failed."""

    study_dir: Path
    total: int
    skipped: int
    finished: int
    failed: list[tuple[str, str]]  # (run key, error)
    seconds: float
    held_back: list[str] = field(default_factory=list)  # failed earlier (diverged, corrupt) and not retried
    changed: list[str] = field(default_factory=list)  # models or data whose content changed since the last run

    @property
    def complete(self) -> bool:
        return self.skipped + self.finished == self.total


FINAL_FAILURES = frozenset({"diverged", "corrupt-checkpoint"})
"""Failures a plain re-run does not retry: the same run would fail the same way (`retry_failed`)."""

STUDY_FILE = "study.yaml"
LOCK_FILE = ".driver.lock"


def run_study(
    spec: StudySpec | str | Path | Mapping[str, Any],
    study_dir: str | Path,
    *,
    workers: int | None = None,
    executor: str | None = None,
    address: str | None = None,
    progress: bool = True,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    retry_failed: bool = False,
    log: Sequence[str] = (),
) -> StudyOutcome:
    """Run a transfer study into `study_dir` (resumable: finished runs are skipped).

    Args:
        spec: a `StudySpec`, a YAML path or a dict (see `load_study_spec`).
        study_dir: the study directory: SQLite store `study.sqlite`, the definition `study.yaml`,
            one directory per run under `runs/`, and later the report.
        workers: override the spec's worker count (1: in-process; N: N local processes, one torch
            thread each; with Ray: the CPUs of a local Ray instance).
        executor: override the spec's executor (`local` | `ray`).
        address: override the spec's Ray address.
        progress: show a progress bar (runs done / total, ETA) and a line per finished run on stderr.
        on_run: called in the driver with each finished run's store row.
        retry_failed: also run again the runs that failed as diverged (same options: same outcome,
            unless the code changed) or with a corrupt checkpoint (restarted from scratch).
        log: experiment trackers for every run (`trackers.TRACKERS`), one tracker run per transfer run.

    Returns:
        A `StudyOutcome`.

    Raises:
        AnyteachError: a bad definition (before any work), or a run failing with a user error or a
            full disk (the study stops; finished runs stay in the store). A run that diverges or
            whose checkpoint is corrupt is recorded in the store's `failures` table with its reason
            and not run again unless `retry_failed`; a run failing otherwise (a crash) is recorded
            and retried by the next `run_study`; either way the rest of the study goes on.
    """
    start = time.perf_counter()
    spec = load_study_spec(spec, workers=workers, executor=executor, address=address)
    log = check_trackers(log)
    plan = plan_study(spec)
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    names = plan.names
    lock = exclusive_lock(
        study_dir / LOCK_FILE,
        f"another `anyteach study` is running on {study_dir}; wait for it or stop it (its finished runs are kept)",
    )
    with lock, StudyStore(study_dir) as store:
        write_text(study_dir / STUDY_FILE, yaml.safe_dump(spec.to_dict(), sort_keys=False))
        changes = content_changes(store, plan)
        if progress:
            for note in changes:
                print(note, file=sys.stderr)
        store.set_meta("spec", json.dumps(spec.to_dict()))
        store.add_models([dataclasses.asdict(m) for m in plan.models])
        store.set_meta("data_identities", json.dumps(plan.data_identities))
        store.set_plan([r.key for r in plan.runs])
        done = store.finished_keys()
        failed_before = store.failure_kinds()
        held_back = [
            r
            for r in plan.runs
            if r.key not in done and failed_before.get(r.key) in FINAL_FAILURES and not retry_failed
        ]
        held = {r.key for r in held_back}
        todo = [r for r in plan.runs if r.key not in done and r.key not in held]
        skipped = len(plan.runs) - len(todo) - len(held_back)
        threads = int(spec.resources.get("num_cpus", 1)) if spec.executor == "ray" else int(spec.workers > 1)
        tasks = [
            RunTask(
                run,
                str(study_dir / "runs" / run.directory_name(names)),
                threads,
                spec.imports,
                restart=failed_before.get(run.key) == "corrupt-checkpoint",
                log=tuple(log),
            )
            for run in todo
        ]
        failed: list[tuple[str, str]] = []
        finished = 0
        bar = _Progress(len(plan.runs), skipped, progress, len(held_back))
        with bar, make_executor(spec.executor, spec.workers, spec.address, spec.resources) as pool:
            for outcome in pool.run(tasks):
                task = outcome["task"]
                if outcome.get("error"):
                    store.add_failure(task.run.key, outcome["error"], outcome.get("kind", "error"), task.run.label)
                    failed.append((task.run.key, outcome["error"]))
                    bar.failed(task.run, names, outcome["error"])
                    if outcome.get("user_error"):
                        error = RunFailed if outcome.get("exit_code") == RunFailed.exit_code else AnyteachError
                        raise error(
                            f"run {task.run.label} {names[task.run.student]} <- "
                            f"{names.get(task.run.teacher or '', '-')} failed: {outcome['error']}"
                        )
                    continue
                row = run_row(task.run, outcome, names, {m.ref: m for m in plan.models})
                store.add_run(row, outcome["history"])
                finished += 1
                bar.finished(row)
                if on_run is not None:
                    on_run(row)
    return StudyOutcome(
        study_dir,
        len(plan.runs),
        skipped,
        finished,
        failed,
        time.perf_counter() - start,
        [r.key for r in held_back],
        changes,
    )


class _Progress:
    """The study's progress on stderr: first how many runs it planned (and how many are already in
    the store); then, in a terminal, a bar over the runs (done / total, elapsed, ETA) and one line per
    finished run; in a log (stderr piped or redirected, a batch job) the same lines, each with its
    count (`[3/24]`), and no bar. Nothing when disabled."""

    def __init__(self, total: int, already: int, enabled: bool, held_back: int = 0):
        self.enabled = enabled
        self.total, self.already, self.held_back = total, already, held_back
        self.done = already
        self._progress: Any = None  # a rich Progress on a terminal
        self._console: Any = None

    def __enter__(self) -> _Progress:
        if not self.enabled:
            return self
        from rich.console import Console

        self._console = Console(stderr=True)
        todo = self.total - self.already - self.held_back
        parts = [f"{self.already} already in the store"] if self.already else []
        parts += [f"{self.held_back} failed earlier and held back"] if self.held_back else []
        parts.append(f"{todo} to run")
        self._print(f"study: {self.total} runs planned ({', '.join(parts)})")
        if self._console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]study runs"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self._console,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("runs", total=self.total, completed=self.already)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def _print(self, text: str) -> None:
        console = self._progress.console if self._progress is not None else self._console
        console.print(text, highlight=False, soft_wrap=True)

    def finished(self, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self.done += 1
        teacher = row["teacher_name"] or "-"
        self._print(
            f"  [{self.done}/{self.total}] {row['label']:<9} {row['student_name']} <- {teacher}: "
            f"Δ {row['transfer_delta']:+.2f} pp (+{row['knowledge_gain']:.2f} −{row['knowledge_loss']:.2f}, "
            f"{row['seconds']:.0f} s)"
        )
        if self._progress is not None:
            self._progress.advance(self._task)

    def failed(self, run: RunSpec, names: Mapping[str, str], error: str) -> None:
        if not self.enabled:
            return
        self._print(
            f"  [red]failed[/red] {run.label} {names[run.student]} <- "
            f"{names.get(run.teacher or '', '-')}: {error.splitlines()[0]}"
        )


__all__ = [
    "BUCKETS",
    "MethodSpec",
    "ModelEntry",
    "PairSpec",
    "RunSpec",
    "StudyOutcome",
    "StudyPlan",
    "StudySpec",
    "build_study_spec",
    "describe_models",
    "load_study_spec",
    "plan_study",
    "run_options",
    "run_study",
    "sample_pairs",
    "strength_bucket",
    "teacher_strength",
]
