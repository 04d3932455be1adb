"""Transfer studies: which runs a study is made of, and the driver that runs them into the store.

A study is pairs x methods x seeds over one dataset (PAPER.md section 4: the paper ran 20 students
x 20 teachers per method). Its definition (`StudySpec`) comes from a YAML file, a dict or CLI
flags, and is fully validated before any work starts: an unknown key or a bad value is an
`AnyteachError` naming the key. Pairs are either every ordered (student, teacher) pair of the chosen
models or N random ordered pairs drawn with a seed, optionally balanced over the teacher-strength
buckets of PAPER.md section 2 (measured from the models' cached eval predictions). `run_study`
plans the runs, skips those already in the study's SQLite store, hands the rest to an executor
(in-process, local worker processes or Ray) and writes each finished run into the store, from the
driver only, in one transaction. Killing it at any moment loses at most the runs in flight; running
it again resumes them (each run directory resumes through the transfer engine).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import yaml

from ._io import slug, text_digest, write_text
from .errors import AnyteachError
from .methods import METHODS, get_method
from .metrics import BUCKETS, strength_bucket, teacher_strength
from .options import METHOD_OPTIONS, TRAINING_OPTIONS
from .transfer import resolve_run_options

STUDY_KEYS = ("name", "data", "models", "pairs", "methods", "seeds", "recipe", "workers", "executor", "address",
              "resources")
PAIR_KEYS = ("students", "teachers", "random", "seed", "balanced")
METHOD_KEYS = ("name", "label", "options")
RESOURCE_KEYS = ("num_cpus", "num_gpus")
EXECUTORS = ("local", "ray")
# Arguments of `transfer(...)` that the study itself sets for every run; a recipe may not set them.
RESERVED_OPTIONS = frozenset({"student", "teacher", "data", "method", "out", "seed", "progress", "overwrite",
                              "stop_after_epoch", "on_epoch"})

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+.\-]*$")


# ---------------------------------------------------------------------------------------------
# Definition


@dataclass(frozen=True)
class MethodSpec:
    """One transfer method of a study: an engine method name, its options, and the label it is
    reported under (defaults to the name; give two entries of one method different labels)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def teacher_free(self) -> bool:
        """True for methods that ignore the teacher (the `xe` control, `self`): one run per student."""
        return not get_method(self.name).needs_teacher


@dataclass(frozen=True)
class PairSpec:
    """Which ordered (student, teacher) pairs a study covers.

    Attributes:
        students: model references or names (default: all models).
        teachers: model references or names (default: all models).
        random: draw this many ordered pairs from students x teachers (default: all of them).
        seed: seed of the draw.
        balanced: draw evenly over the teacher-strength buckets (round-robin over the buckets that
            have candidate pairs), using the models' eval accuracies from cached predictions.
    """

    students: tuple[str, ...] | None = None
    teachers: tuple[str, ...] | None = None
    random: int | None = None
    seed: int = 0
    balanced: bool = False


@dataclass(frozen=True)
class StudySpec:
    """A validated study definition (build one with `load_study_spec`).

    Attributes:
        models: model references; a zoo name in the YAML (`mnist1d`) is expanded to its members.
        data: the dataset reference every run transfers on and is evaluated on.
        pairs: which ordered pairs.
        methods: the transfer methods, each with its own options.
        seeds: transfer seeds; every (pair, method) runs once per seed.
        recipe: options shared by every run (epochs, lr, batch_size, ...), passed to `transfer`;
            a method's own options override them.
        workers: local worker processes (1: in-process) or, with Ray, the CPUs of a local instance.
        executor: `local` or `ray`.
        address: address of an existing Ray cluster (`ray` executor only; default: start one here).
        resources: per-run resource request for Ray (`num_cpus`, `num_gpus`).
        name: a name for the report.
    """

    models: tuple[str, ...]
    data: str
    pairs: PairSpec = field(default_factory=PairSpec)
    methods: tuple[MethodSpec, ...] = ()
    seeds: tuple[int, ...] = (0,)
    recipe: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    executor: str = "local"
    address: str | None = None
    resources: dict[str, float] = field(default_factory=dict)
    name: str = "study"

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that `load_study_spec` turns back into the same spec (written to study.yaml)."""
        d = dataclasses.asdict(self)
        d["models"] = list(self.models)
        d["seeds"] = list(self.seeds)
        d["methods"] = [{"name": m.name, "label": m.label, "options": dict(m.options)} for m in self.methods]
        d["pairs"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d["pairs"].items() if v is not None}
        return d


def _where(path: str) -> str:
    return f"study spec key {path!r}"


def _check_keys(obj: Any, allowed: Sequence[str], path: str) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise AnyteachError(f"{_where(path or 'study')}: expected a mapping, got {type(obj).__name__}")
    for key in obj:
        if key not in allowed:
            prefix = f"{path}." if path else ""
            raise AnyteachError(f"unknown {_where(prefix + str(key))}; known keys: {', '.join(allowed)}")
    return dict(obj)


def _as_int(value: Any, path: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        else:
            raise AnyteachError(f"{_where(path)} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise AnyteachError(f"{_where(path)} must be >= {minimum}, got {value}")
    return value


def _as_str(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnyteachError(f"{_where(path)} must be a non-empty string, got {value!r}")
    return value.strip()


def _as_list(value: Any, path: str) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise AnyteachError(f"{_where(path)} must be a list (or a comma-separated string), got {value!r}")


def _as_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise AnyteachError(f"{_where(path)} must be true or false, got {value!r}")


def _check_options(options: Any, path: str) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise AnyteachError(f"{_where(path)} must be a mapping of option: value, got {options!r}")
    out: dict[str, Any] = {}
    for key, value in options.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise AnyteachError(f"{_where(f'{path}.{key}')}: option names must be identifiers")
        if key in RESERVED_OPTIONS:
            raise AnyteachError(f"{_where(f'{path}.{key}')}: `{key}` is set by the study for every run "
                                f"(use the study's own keys: models, pairs, data, methods, seeds)")
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads `1e-3` as a string
        try:
            json.dumps(value)
        except TypeError as e:
            raise AnyteachError(f"{_where(f'{path}.{key}')}: value {value!r} is not plain data") from e
        out[key] = value
    return out


def _check_run_options(method: str, options: Mapping[str, Any], path: str) -> None:
    """Every option of one method's runs must be a training option of `transfer` or one of the
    method's own options, with a valid value (the engine's own declarations decide)."""
    for key in options:
        if key not in TRAINING_OPTIONS and key not in METHOD_OPTIONS:
            training = sorted(set(TRAINING_OPTIONS) - RESERVED_OPTIONS)
            raise AnyteachError(f"{_where(f'{path}.{key}')}: unknown option; training options: "
                                f"{', '.join(training)}; method options: {', '.join(sorted(METHOD_OPTIONS))}")
    try:
        resolve_run_options(method, options)
    except AnyteachError as e:
        raise AnyteachError(f"{_where(path)}: {e}") from e


def run_options(method: MethodSpec, recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The options of one method's runs: the study recipe, then the method's own options over it.

    A recipe's method options (e.g. `temperature`) go only to the methods that use them, so one
    recipe serves every method; a method's own options must all apply to it.
    """
    used = set(get_method(method.name).option_names)
    shared = {k: v for k, v in recipe.items() if k not in METHOD_OPTIONS or k in used}
    return {**shared, **method.options}


def _parse_method(item: Any, path: str) -> MethodSpec:
    if isinstance(item, str):
        item = {"name": item}
    raw = _check_keys(item, METHOD_KEYS, path)
    if "name" not in raw:
        raise AnyteachError(f"{_where(path + '.name')} is missing")
    name = _as_str(raw["name"], f"{path}.name")
    if name not in METHODS:
        raise AnyteachError(f"{_where(path + '.name')}: unknown method {name!r}; known: {', '.join(METHODS)}")
    label = _as_str(raw.get("label", name), f"{path}.label")
    if not _LABEL.match(label):
        raise AnyteachError(f"{_where(path + '.label')}: {label!r} may only hold letters, digits and _+.-")
    method = MethodSpec(name, _check_options(raw.get("options"), f"{path}.options"), label)
    _check_run_options(name, method.options, f"{path}.options")
    return method


def _expand_models(value: Any) -> tuple[list[str], str | None]:
    """Model references of a study, and the zoo's dataset when `value` names a zoo."""
    from .zoo import ZOOS, get_zoo

    if isinstance(value, str) and "," not in value:
        body = value.strip().removeprefix("zoo:")
        name, at, seed = body.partition("@")
        if name in ZOOS and "/" not in body:
            if at and not seed.isdigit():
                raise AnyteachError(f"{_where('models')}: bad zoo seed in {value!r}: expected an integer after @")
            zoo = get_zoo(name, int(seed) if at else 0)
            return zoo.refs(), zoo.data
        if value.startswith("zoo:") and "/" not in body:
            raise AnyteachError(f"{_where('models')}: unknown zoo {name!r}; built-in zoos: {', '.join(ZOOS)}")
    refs = [_as_str(r, "models") for r in _as_list(value, "models")]
    return refs, None


def load_study_spec(source: StudySpec | str | Path | Mapping[str, Any], **overrides: Any) -> StudySpec:
    """Read and validate a study definition before any work is done.

    Args:
        source: a `StudySpec`, the path of a YAML file, or a dict with the YAML's keys: `models` (a
            zoo name such as `mnist1d`, or a list of model references), `data` (dataset reference;
            default: the zoo's), `pairs` (an int N for N random pairs, or a mapping with `students`,
            `teachers`, `random`, `seed`, `balanced`), `methods` (names, or mappings with `name`,
            `label`, `options`), `seeds`, `recipe` (options shared by every run), `workers`,
            `executor` (`local` | `ray`), `address`, `resources` (`num_cpus`, `num_gpus`), `name`.
        **overrides: top-level keys that replace the file's (the CLI's flags); `None` values are
            ignored.

    Returns:
        The validated `StudySpec`.

    Raises:
        AnyteachError: an unreadable file, an unknown key, or a bad value (the message names the key).
    """
    if isinstance(source, StudySpec):
        raw: dict[str, Any] = source.to_dict()
    elif isinstance(source, (str, Path)):
        raw = _read_yaml(Path(source))
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        raise AnyteachError(f"a study is a StudySpec, a YAML path or a dict, got {type(source).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    raw = _check_keys(raw, STUDY_KEYS, "")

    if "models" not in raw:
        raise AnyteachError(f"{_where('models')} is missing: give a zoo name (e.g. mnist1d) or a list of model references")
    models, zoo_data = _expand_models(raw["models"])
    if len(set(models)) != len(models):
        raise AnyteachError(f"{_where('models')}: a model is listed twice")
    if len(models) < 2 and not raw.get("pairs"):
        raise AnyteachError(f"{_where('models')}: a study needs at least two models, got {len(models)}")
    data = raw.get("data", zoo_data)
    if data is None:
        raise AnyteachError(f"{_where('data')} is missing: models is not a zoo, so name the dataset (e.g. mnist1d)")
    data = _as_str(data, "data")

    pairs_raw = raw.get("pairs", {})
    if pairs_raw is None or pairs_raw == "all":
        pairs_raw = {}
    elif isinstance(pairs_raw, (int, str)) and not isinstance(pairs_raw, bool):
        pairs_raw = {"random": pairs_raw}
    pairs_raw = _check_keys(pairs_raw, PAIR_KEYS, "pairs")
    pairs = PairSpec(
        students=tuple(_as_str(s, "pairs.students") for s in _as_list(pairs_raw["students"], "pairs.students"))
        if pairs_raw.get("students") is not None else None,
        teachers=tuple(_as_str(t, "pairs.teachers") for t in _as_list(pairs_raw["teachers"], "pairs.teachers"))
        if pairs_raw.get("teachers") is not None else None,
        random=_as_int(pairs_raw["random"], "pairs.random", 1) if pairs_raw.get("random") is not None else None,
        seed=_as_int(pairs_raw.get("seed", 0), "pairs.seed"),
        balanced=_as_bool(pairs_raw.get("balanced", False), "pairs.balanced"),
    )
    if pairs.balanced and pairs.random is None:
        raise AnyteachError(f"{_where('pairs.balanced')} needs pairs.random (how many pairs to draw)")

    if "methods" not in raw:
        raise AnyteachError(f"{_where('methods')} is missing: list the transfer methods (e.g. [kl, kl+dp])")
    method_items = raw["methods"]
    if isinstance(method_items, (str, Mapping)):
        method_items = _as_list(method_items, "methods") if isinstance(method_items, str) else [method_items]
    if not isinstance(method_items, (list, tuple)) or not method_items:
        raise AnyteachError(f"{_where('methods')} must be a non-empty list of methods")
    methods = tuple(_parse_method(m, f"methods[{i}]") for i, m in enumerate(method_items))
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise AnyteachError(f"{_where('methods')}: label {dup!r} is used twice; give each entry its own `label`")

    seeds_raw = raw.get("seeds", [0])
    seeds_list = [seeds_raw] if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool) else \
        _as_list(seeds_raw, "seeds")
    seeds = tuple(_as_int(s, "seeds", 0) for s in seeds_list)
    if not seeds or len(set(seeds)) != len(seeds):
        raise AnyteachError(f"{_where('seeds')} must be a non-empty list of distinct integers, got {seeds_raw!r}")

    recipe = _check_options(raw.get("recipe"), "recipe")
    for method in methods:
        _check_run_options(method.name, run_options(method, recipe), "recipe")
    workers = _as_int(raw.get("workers", 1), "workers", 1)
    executor = _as_str(raw.get("executor", "local"), "executor")
    if executor not in EXECUTORS:
        raise AnyteachError(f"{_where('executor')} must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    address = raw.get("address")
    if address is not None:
        address = _as_str(address, "address")
        if executor != "ray":
            raise AnyteachError(f"{_where('address')} is the address of a Ray cluster: it needs executor: ray")
    resources_raw = _check_keys(raw.get("resources") or {}, RESOURCE_KEYS, "resources")
    resources: dict[str, float] = {}
    for key, value in resources_raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise AnyteachError(f"{_where('resources.' + key)} must be a non-negative number, got {value!r}")
        resources[key] = value
    if resources.get("num_cpus", 1) == 0:
        raise AnyteachError(f"{_where('resources.num_cpus')} must be positive: every run needs a CPU")
    name = _as_str(raw.get("name", "study"), "name")
    return StudySpec(tuple(models), data, pairs, methods, seeds, recipe, workers, executor, address, resources, name)


def build_study_spec(spec: StudySpec | str | Path | Mapping[str, Any] | None = None, *,
                     models: str | Sequence[str] | None = None, data: str | None = None, pairs: int | None = None,
                     balanced: bool | None = None, pair_seed: int | None = None,
                     methods: str | Sequence[Any] | None = None, seeds: str | Sequence[int] | None = None,
                     recipe: Mapping[str, Any] | None = None, workers: int | None = None,
                     executor: str | None = None, address: str | None = None,
                     resources: Mapping[str, float] | None = None, name: str | None = None) -> StudySpec:
    """A study from a YAML file / dict and/or keyword options (what the CLI's flags map to).

    Keywords that are not None replace the file's keys; `pairs`, `balanced` and `pair_seed` set
    `pairs.random`, `pairs.balanced` and `pairs.seed`; `recipe` and `resources` are merged key by
    key over the file's. Without a file, `models` and `methods` are required.

    Raises:
        AnyteachError: as `load_study_spec`.
    """
    if spec is None:
        raw: dict[str, Any] = {}
    elif isinstance(spec, StudySpec):
        raw = spec.to_dict()
    elif isinstance(spec, (str, Path)):
        raw = _read_yaml(Path(spec))
    else:
        raw = dict(spec)
    pair_raw = raw.get("pairs")
    if isinstance(pair_raw, int) and not isinstance(pair_raw, bool):
        pair_raw = {"random": pair_raw}
    if pairs is not None or balanced is not None or pair_seed is not None:
        pair_raw = dict(pair_raw or {})
        for key, value in (("random", pairs), ("balanced", balanced), ("seed", pair_seed)):
            if value is not None:
                pair_raw[key] = value
    if pair_raw is not None:
        raw["pairs"] = pair_raw
    for key, extra in (("recipe", recipe), ("resources", resources)):
        if extra:
            base = raw.get(key) or {}
            raw[key] = {**base, **extra} if isinstance(base, Mapping) else base  # a bad base fails validation
    overrides = {"models": models, "data": data, "methods": methods, "seeds": seeds, "workers": workers,
                 "executor": executor, "address": address, "name": name}
    return load_study_spec(raw, **overrides)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise AnyteachError(f"study file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise AnyteachError(f"cannot read study file {path}: not valid YAML ({e})") from e
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise AnyteachError(f"study file {path} must hold a mapping of keys, got {type(loaded).__name__}")
    return dict(loaded)


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


def describe_models(refs: Sequence[str], data: str, accuracies: bool = False) -> list[ModelEntry]:
    """Load each model's metadata (validating the reference and the class count against `data`).

    Args:
        refs: model references.
        data: dataset reference.
        accuracies: also measure each model's eval accuracy (from the predictions cache).

    Raises:
        AnyteachError: a reference that does not resolve or does not fit the data.
    """
    from .data import load_dataset
    from .models import load_model
    from .predictions import check_compatible, predict

    dataset = load_dataset(data)
    entries = []
    for ref in refs:
        model = load_model(ref)
        check_compatible(model, dataset)
        acc = predict(model, dataset, "eval").accuracy if accuracies else None
        entries.append(ModelEntry(ref, model.info.name, model.info.family, int(model.info.num_params), acc))
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
            raise AnyteachError(f"{_where(key)}: {name!r} names {len(by_name[name])} models; use their references")
        else:
            raise AnyteachError(f"{_where(key)}: {name!r} is not one of the study's models "
                                f"({', '.join(m.name for m in models)})")
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
        raise AnyteachError(f"{_where('pairs')}: no ordered (student, teacher) pair of two different models")
    if pairs.random is None:
        return candidates
    if pairs.random > len(candidates):
        raise AnyteachError(f"{_where('pairs.random')}: asked for {pairs.random} pairs but only "
                            f"{len(candidates)} ordered pairs of different models exist")
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

    @property
    def key(self) -> str:
        """Stable identity: the store's primary key and the run directory's suffix."""
        return text_digest(json.dumps([self.label, self.method, self.student, self.teacher, self.seed,
                                       self.options, self.data]), 20)

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

    @property
    def names(self) -> dict[str, str]:
        return {m.ref: m.name for m in self.models}


def plan_study(spec: StudySpec) -> StudyPlan:
    """Resolve models and pairs and list the runs: for each pair, each method, each seed.

    Teacher-free methods (the `xe` control) run once per distinct student, placed where that
    student first appears, so a study cut short still has its controls.
    """
    models = describe_models(spec.models, spec.data, accuracies=spec.pairs.balanced)
    pairs = sample_pairs(models, spec.pairs)
    runs: list[RunSpec] = []
    seen_students: set[str] = set()
    for student, teacher in pairs:
        for method in spec.methods:
            if method.teacher_free and student.ref in seen_students:
                continue
            options = json.dumps(run_options(method, spec.recipe), sort_keys=True)
            for seed in spec.seeds:
                runs.append(RunSpec(method.label, method.name, student.ref,
                                    None if method.teacher_free else teacher.ref, seed, options, spec.data))
        seen_students.add(student.ref)
    return StudyPlan(spec, models, pairs, runs)


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

    @property
    def complete(self) -> bool:
        return self.skipped + self.finished == self.total


STUDY_FILE = "study.yaml"
LOCK_FILE = ".driver.lock"


def run_study(spec: StudySpec | str | Path | Mapping[str, Any], study_dir: str | Path, *,
              workers: int | None = None, executor: str | None = None, address: str | None = None,
              progress: bool = True, on_run: Callable[[dict[str, Any]], None] | None = None) -> StudyOutcome:
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

    Returns:
        A `StudyOutcome`.

    Raises:
        AnyteachError: a bad definition (before any work), or a run failing with a user error (the
            study stops; finished runs stay in the store). Runs failing otherwise are recorded in the
            store's `failures` table and retried by the next `run_study`; the rest of the study
            goes on.
    """
    from .executors import RunTask, make_executor
    from .store import StudyStore, run_row

    start = time.perf_counter()
    spec = load_study_spec(spec, workers=workers, executor=executor, address=address)
    plan = plan_study(spec)
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    names = plan.names
    with _driver_lock(study_dir), StudyStore(study_dir) as store:
        write_text(study_dir / STUDY_FILE, yaml.safe_dump(spec.to_dict(), sort_keys=False))
        store.set_meta("spec", json.dumps(spec.to_dict()))
        store.add_models([dataclasses.asdict(m) for m in plan.models])
        store.set_plan([r.key for r in plan.runs])
        done = store.finished_keys()
        todo = [r for r in plan.runs if r.key not in done]
        skipped = len(plan.runs) - len(todo)
        threads = int(spec.resources.get("num_cpus", 1)) if spec.executor == "ray" else int(spec.workers > 1)
        tasks = [RunTask(run, str(study_dir / "runs" / run.directory_name(names)), threads) for run in todo]
        failed: list[tuple[str, str]] = []
        finished = 0
        bar = _Progress(len(plan.runs), skipped, progress)
        with bar, make_executor(spec.executor, spec.workers, spec.address, spec.resources) as pool:
            for outcome in pool.run(tasks):
                task = outcome["task"]
                if outcome.get("error"):
                    store.add_failure(task.run.key, outcome["error"])
                    failed.append((task.run.key, outcome["error"]))
                    bar.failed(task.run, names, outcome["error"])
                    if outcome.get("user_error"):
                        raise AnyteachError(f"run {task.run.label} {names[task.run.student]} <- "
                                            f"{names.get(task.run.teacher or '', '-')} failed: {outcome['error']}")
                    continue
                row = run_row(task.run, outcome, names, {m.ref: m for m in plan.models})
                store.add_run(row, outcome["history"])
                finished += 1
                bar.finished(row)
                if on_run is not None:
                    on_run(row)
    return StudyOutcome(study_dir, len(plan.runs), skipped, finished, failed, time.perf_counter() - start)


@contextmanager
def _driver_lock(study_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the study directory: one driver per study at a time.

    The operating system releases the lock when the driver dies, however it dies, so a killed
    study never leaves a stale lock behind.

    Raises:
        AnyteachError: another driver is running this study.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, as before
        yield
        return
    with open(study_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise AnyteachError(f"another `anyteach study` is running on {study_dir}; wait for it or stop it "
                                "(its finished runs are kept)") from e
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class _Progress:
    """A rich progress bar over the study's runs (done / total, elapsed, ETA), or nothing."""

    def __init__(self, total: int, already: int, enabled: bool):
        self.enabled = enabled
        self.total, self.already = total, already
        self._progress = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(TextColumn("[bold]study runs"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                      console=Console(stderr=True))
            self._progress.__enter__()
            self._task = self._progress.add_task("runs", total=self.total, completed=self.already)
            if self.already:
                self._progress.console.print(f"resuming: {self.already} of {self.total} runs already in the store")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def finished(self, row: Mapping[str, Any]) -> None:
        if self._progress is None:
            return
        teacher = row["teacher_name"] or "-"
        self._progress.console.print(
            f"  {row['label']:<9} {row['student_name']} <- {teacher}: Δ {row['transfer_delta']:+.2f} pp "
            f"(+{row['knowledge_gain']:.2f} −{row['knowledge_loss']:.2f}, {row['seconds']:.0f} s)", highlight=False)
        self._progress.advance(self._task)

    def failed(self, run: RunSpec, names: Mapping[str, str], error: str) -> None:
        if self._progress is None:
            return
        self._progress.console.print(f"  [red]failed[/red] {run.label} {names[run.student]} <- "
                                     f"{names.get(run.teacher or '', '-')}: {error.splitlines()[0]}", highlight=False)


def study_runs(spec: StudySpec | str | Path | Mapping[str, Any]) -> list[RunSpec]:
    """The runs a study definition expands to (loads model metadata; runs nothing)."""
    return plan_study(load_study_spec(spec)).runs


__all__ = [
    "BUCKETS", "MethodSpec", "ModelEntry", "PairSpec", "RunSpec", "StudyOutcome", "StudyPlan", "StudySpec",
    "describe_models", "load_study_spec", "plan_study", "run_study", "sample_pairs", "strength_bucket",
    "study_runs", "teacher_strength",
]
