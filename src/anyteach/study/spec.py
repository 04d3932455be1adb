"""Study definitions: what a study is made of, read from YAML, a dict or CLI flags, and validated.

A study is pairs x methods x seeds over one dataset (the paper ran 20 students x 20 teachers per method;
docs/concepts/transfer-without-forgetting.md). Its definition (`StudySpec`) is fully validated before any work starts:
an unknown key or a bad value is an `AnyteachError` naming the key (`study spec key 'recipe.lr'`),
and every run's options are checked by the transfer engine's own option declarations. Modules
named under `imports` are imported first, so methods registered by a user's own code are known
here and in every worker that runs the study (`anyteach.study` plans and drives the runs).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..core.errors import AnyteachError
from ..core.options import MAX_SEED, METHOD_OPTIONS, PER_RUN_OPTIONS, TRAINING_OPTIONS
from ..core.registry import import_plugins
from ..data.references import load_dataset
from ..methods import METHODS, get_method
from ..training.protocols import get_recipe, with_fraction
from ..training.transfer import resolve_run_options
from .executors import EXECUTORS

STUDY_KEYS = (
    "name",
    "data",
    "models",
    "pairs",
    "methods",
    "seeds",
    "recipe",
    "workers",
    "executor",
    "address",
    "resources",
    "imports",
)
PAIR_KEYS = ("students", "teachers", "random", "seed", "balanced", "recommended", "method")
METHOD_KEYS = ("name", "label", "options", "data", "teacher")
TEACHER_CHOICES = ("best",)
"""`teacher:` of a method entry: `best`, one run per student with its best-forecast teacher (not per pair)."""
RESOURCE_KEYS = ("num_cpus", "num_gpus")
# Arguments of `transfer(...)` that the study itself sets for every run; a recipe may not set them.
RESERVED_OPTIONS = frozenset(
    {
        "student",
        "teacher",
        "data",
        "method",
        "out",
        "progress",
        "overwrite",
        "stop_after_epoch",
        "on_epoch",
        *PER_RUN_OPTIONS,
    }
)

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+.\-]*$")


# ---------------------------------------------------------------------------------------------
# Definition


@dataclass(frozen=True)
class MethodSpec:
    """One transfer method of a study: an engine method name, its options, the label it is reported
    under (defaults to the name; give two entries of one method different labels) and, optionally,
    its own transfer data (a dataset reference with the study's eval split, e.g. fresh samples) and
    `teacher: best` (one run per student, with the teacher the shipped forecast ranks first among the
    study's models, instead of one run per pair)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    data: str | None = None
    teacher: str | None = None  # "best": per student, only its best-forecast teacher (`study.best_teacher_runs`)

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
        recommended: per student only its k best-forecast teachers (`forecast.recommended_pairs`),
            plus a random draw (`seed`) of k of its teachers to compare them with.
        method: the method whose gain `recommended` forecasts (default: the study's first method
            the forecaster knows).
    """

    students: tuple[str, ...] | None = None
    teachers: tuple[str, ...] | None = None
    random: int | None = None
    seed: int = 0
    balanced: bool = False
    recommended: int | None = None
    method: str | None = None


@dataclass(frozen=True)
class StudySpec:
    """A validated study definition (build one with `load_study_spec`).

    Attributes:
        models: model references; a zoo in the YAML is expanded to its members: `mnist1d`, `timm`
            (timm's pretrained ImageNet-1k tags) or `timm:<glob>` (`timm:resnet*.a1_in1k`).
        data: the dataset reference every run transfers on and is evaluated on.
        pairs: which ordered pairs.
        methods: the transfer methods, each with its own options.
        seeds: transfer seeds; every (pair, method) runs once per seed.
        recipe: options shared by every run (epochs, lr, batch_size, ...), passed to `transfer`;
            a method's own options override them. A named recipe is resolved to its options (and
            its transfer fraction added to `data`).
        workers: local worker processes (1: in-process) or, with Ray, the CPUs of a local instance.
        executor: `local` or `ray`.
        address: address of an existing Ray cluster (`ray` executor only; default: start one here).
        resources: per-run resource request for Ray (`num_cpus`, `num_gpus`).
        name: a name for the report.
        imports: plugins imported before the definition is validated and before every run (module
            names, or Python files as absolute paths): a user's own registered methods.
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
    imports: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that `load_study_spec` turns back into the same spec (written to study.yaml)."""
        d = dataclasses.asdict(self)
        d["models"] = list(self.models)
        d["seeds"] = list(self.seeds)
        d["imports"] = list(self.imports)
        d["methods"] = [
            {
                "name": m.name,
                "label": m.label,
                "options": dict(m.options),
                **({"data": m.data} if m.data else {}),
                **({"teacher": m.teacher} if m.teacher else {}),
            }
            for m in self.methods
        ]
        d["pairs"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d["pairs"].items() if v is not None}
        return d


def spec_key(path: str) -> str:
    """How messages name a key of a study definition: `study spec key 'pairs.random'`."""
    return f"study spec key {path!r}"


def _check_keys(obj: Any, allowed: Sequence[str], path: str) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise AnyteachError(f"{spec_key(path or 'study')}: expected a mapping, got {type(obj).__name__}")
    for key in obj:
        if key not in allowed:
            prefix = f"{path}." if path else ""
            raise AnyteachError(f"unknown {spec_key(prefix + str(key))}; known keys: {', '.join(allowed)}")
    return dict(obj)


def _as_int(value: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        else:
            raise AnyteachError(f"{spec_key(path)} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise AnyteachError(f"{spec_key(path)} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise AnyteachError(f"{spec_key(path)} must be <= {maximum}, got {value}")
    return value


def _as_str(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnyteachError(f"{spec_key(path)} must be a non-empty string, got {value!r}")
    return value.strip()


def _as_list(value: Any, path: str) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise AnyteachError(f"{spec_key(path)} must be a list (or a comma-separated string), got {value!r}")


def _as_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise AnyteachError(f"{spec_key(path)} must be true or false, got {value!r}")


def _check_options(options: Any, path: str) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise AnyteachError(f"{spec_key(path)} must be a mapping of option: value, got {options!r}")
    out: dict[str, Any] = {}
    for key, value in options.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise AnyteachError(f"{spec_key(f'{path}.{key}')}: option names must be identifiers")
        if key in RESERVED_OPTIONS:
            raise AnyteachError(
                f"{spec_key(f'{path}.{key}')}: `{key}` is set by the study for every run "
                f"(use the study's own keys: models, pairs, data, methods, seeds)"
            )
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads `1e-3` as a string
        try:
            json.dumps(value)
        except TypeError as e:
            raise AnyteachError(f"{spec_key(f'{path}.{key}')}: value {value!r} is not plain data") from e
        out[key] = value
    return out


def _check_run_options(method: str, options: Mapping[str, Any], path: str) -> None:
    """Every option of one method's runs must be a training option of `transfer` or one of the
    method's own options, with a valid value (the engine's own declarations decide)."""
    for key in options:
        if key not in TRAINING_OPTIONS and key not in METHOD_OPTIONS:
            training = sorted(set(TRAINING_OPTIONS) - RESERVED_OPTIONS)
            raise AnyteachError(
                f"{spec_key(f'{path}.{key}')}: unknown option; training options: "
                f"{', '.join(training)}; method options: {', '.join(sorted(METHOD_OPTIONS))}"
            )
    try:
        resolve_run_options(method, options)
    except AnyteachError as e:
        raise AnyteachError(f"{spec_key(path)}: {e}") from e


def run_options(method: MethodSpec, recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The options of one method's runs: the preset's own recipe (`MethodPreset.recipe`), the study
    recipe over it, then the method's own options over both.

    A recipe's method options (e.g. `temperature`) go only to the methods that use them, so one
    recipe serves every method; a method's own options must all apply to it. The preset's recipe is
    written out so that the store's options (and the pairing with a control of the same budget)
    say how the runs really trained.
    """
    preset = get_method(method.name)
    used = set(preset.option_names)
    shared = {k: v for k, v in recipe.items() if k not in METHOD_OPTIONS or k in used}
    return {**preset.recipe, **shared, **method.options}


def _parse_method(item: Any, path: str) -> MethodSpec:
    if isinstance(item, str):
        item = {"name": item}
    raw = _check_keys(item, METHOD_KEYS, path)
    if "name" not in raw:
        raise AnyteachError(f"{spec_key(path + '.name')} is missing")
    name = _as_str(raw["name"], f"{path}.name")
    if name not in METHODS:
        raise AnyteachError(f"{spec_key(path + '.name')}: unknown method {name!r}; known: {', '.join(METHODS)}")
    label = _as_str(raw.get("label", name), f"{path}.label")
    if not _LABEL.match(label):
        raise AnyteachError(f"{spec_key(path + '.label')}: {label!r} may only hold letters, digits and _+.-")
    data = _as_str(raw["data"], f"{path}.data") if raw.get("data") is not None else None
    teacher = _as_str(raw["teacher"], f"{path}.teacher") if raw.get("teacher") is not None else None
    if teacher is not None and teacher not in TEACHER_CHOICES:
        raise AnyteachError(
            f"{spec_key(path + '.teacher')}: {teacher!r} is not one of {', '.join(TEACHER_CHOICES)} "
            "(best: per student, its best-forecast teacher)"
        )
    if teacher is not None and not get_method(name).needs_teacher:
        raise AnyteachError(f"{spec_key(path + '.teacher')}: method {name!r} uses no teacher")
    method = MethodSpec(name, _check_options(raw.get("options"), f"{path}.options"), label, data, teacher)
    _check_run_options(name, method.options, f"{path}.options")
    return method


def _check_method_data(method: MethodSpec, data: str, path: str) -> None:
    """A method's own transfer data must be measured on the study's eval split (comparable numbers)."""
    if method.data is None:
        return
    own, study = load_dataset(method.data), load_dataset(data)
    if own.split_identity("eval") != study.split_identity("eval") or own.num_classes != study.num_classes:
        raise AnyteachError(
            f"{spec_key(path)}: {method.data!r} does not share the eval split of the study's data "
            f"{data!r}; a method may bring its own transfer data, not its own evaluation"
        )


def _resolve_recipe(value: Any) -> tuple[dict[str, Any], float | None]:
    """A study's recipe as options, and the transfer fraction a named recipe fixes.

    `value` is a mapping of options, the name of a recipe (`paper-imagenet`), or a mapping whose
    `base` names a recipe and whose other keys override its options.
    """
    if isinstance(value, str):
        value = {"base": value}
    if not isinstance(value, Mapping) or "base" not in value:
        return _check_options(value, "recipe"), None
    try:
        named = get_recipe(_as_str(value["base"], "recipe.base"))
    except AnyteachError as e:
        raise AnyteachError(f"{spec_key('recipe.base')}: {e}") from e
    overrides = _check_options({k: v for k, v in value.items() if k != "base"}, "recipe")
    return {**named.options, **overrides}, named.fraction


def _expand_models(value: Any) -> tuple[list[str], str | None]:
    """Model references of a study, and the zoo's dataset when `value` names a zoo.

    A zoo is `mnist1d` (`zoo:mnist1d@3`: another seed), `timm` (timm's pretrained ImageNet-1k tags)
    or `timm:<glob>` (those matching, e.g. `timm:resnet*.a1_in1k`).
    """
    from ..zoo import ZOOS, get_zoo
    from ..zoo.timm_zoo import is_filter, timm_refs

    if isinstance(value, str) and "," not in value:
        text = value.strip()
        if text == "timm" or (text.startswith("timm:") and is_filter(text.removeprefix("timm:"))):
            try:
                return timm_refs(text.removeprefix("timm").removeprefix(":") or None), None
            except AnyteachError as e:
                raise AnyteachError(f"{spec_key('models')}: {e}") from e
        body = value.strip().removeprefix("zoo:")
        name, at, seed = body.partition("@")
        if name in ZOOS and "/" not in body:
            if at and not seed.isdigit():
                raise AnyteachError(f"{spec_key('models')}: bad zoo seed in {value!r}: expected an integer after @")
            zoo = get_zoo(name, int(seed) if at else 0)
            return zoo.refs(), zoo.data
        if value.startswith("zoo:") and "/" not in body:
            raise AnyteachError(f"{spec_key('models')}: unknown zoo {name!r}; built-in zoos: {', '.join(ZOOS)}")
    refs = [_as_str(r, "models") for r in _as_list(value, "models")]
    return refs, None


def load_study_spec(source: StudySpec | str | Path | Mapping[str, Any], **overrides: Any) -> StudySpec:
    """Read and validate a study definition before any work is done.

    Args:
        source: a `StudySpec`, the path of a YAML file, or a dict with the YAML's keys: `models` (a
            zoo name such as `mnist1d`, or a list of model references), `data` (dataset reference;
            default: the zoo's), `pairs` (an int N for N random pairs, or a mapping with `students`,
            `teachers`, `random`, `seed`, `balanced`), `methods` (names, or mappings with `name`,
            `label`, `options`), `seeds`, `recipe` (options shared by every run; or a named recipe,
            `paper-imagenet`, or `{base: paper-imagenet, <option>: ...}`: `recipes.RECIPES`), `workers`,
            `executor` (`local` | `ray`), `address`, `resources` (`num_cpus`, `num_gpus`), `name`,
            `imports` (plugins: module names or Python files that register methods).
        **overrides: top-level keys that replace the file's (the CLI's flags); `None` values are
            ignored.

    Returns:
        The validated `StudySpec`.

    Raises:
        AnyteachError: an unreadable file, an unknown key, or a bad value (the message names the key).
    """
    base = Path.cwd()
    if isinstance(source, StudySpec):
        raw: dict[str, Any] = source.to_dict()
    elif isinstance(source, (str, Path)):
        raw = _read_yaml(Path(source))
        base = Path(source).parent
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        raise AnyteachError(f"a study is a StudySpec, a YAML path or a dict, got {type(source).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    raw = _check_keys(raw, STUDY_KEYS, "")
    imports = tuple(_plugin(_as_str(p, "imports"), base) for p in _as_list(raw.get("imports") or [], "imports"))
    try:
        import_plugins(imports)
    except AnyteachError as e:
        raise AnyteachError(f"{spec_key('imports')}: {e}") from e

    if "models" not in raw:
        raise AnyteachError(
            f"{spec_key('models')} is missing: give a zoo name (e.g. mnist1d) or a list of model references"
        )
    models, zoo_data = _expand_models(raw["models"])
    if len(set(models)) != len(models):
        raise AnyteachError(f"{spec_key('models')}: a model is listed twice")
    if len(models) < 2 and not raw.get("pairs"):
        raise AnyteachError(f"{spec_key('models')}: a study needs at least two models, got {len(models)}")
    data = raw.get("data", zoo_data)
    if data is None:
        raise AnyteachError(f"{spec_key('data')} is missing: models is not a zoo, so name the dataset (e.g. mnist1d)")
    data = _as_str(data, "data")
    recipe, fraction = _resolve_recipe(raw.get("recipe"))
    data = with_fraction(data, fraction)

    pairs_raw = raw.get("pairs", {})
    if pairs_raw is None or pairs_raw == "all":
        pairs_raw = {}
    elif isinstance(pairs_raw, (int, str)) and not isinstance(pairs_raw, bool):
        pairs_raw = {"random": pairs_raw}
    pairs_raw = _check_keys(pairs_raw, PAIR_KEYS, "pairs")
    pairs = PairSpec(
        students=tuple(_as_str(s, "pairs.students") for s in _as_list(pairs_raw["students"], "pairs.students"))
        if pairs_raw.get("students") is not None
        else None,
        teachers=tuple(_as_str(t, "pairs.teachers") for t in _as_list(pairs_raw["teachers"], "pairs.teachers"))
        if pairs_raw.get("teachers") is not None
        else None,
        random=_as_int(pairs_raw["random"], "pairs.random", 1) if pairs_raw.get("random") is not None else None,
        seed=_as_int(pairs_raw.get("seed", 0), "pairs.seed"),
        balanced=_as_bool(pairs_raw.get("balanced", False), "pairs.balanced"),
        recommended=_as_int(pairs_raw["recommended"], "pairs.recommended", 1)
        if pairs_raw.get("recommended") is not None
        else None,
        method=_as_str(pairs_raw["method"], "pairs.method") if pairs_raw.get("method") is not None else None,
    )
    if pairs.recommended is not None and pairs.random is not None:
        raise AnyteachError(f"{spec_key('pairs.recommended')} and pairs.random exclude each other: give one")
    if pairs.balanced and pairs.random is None:
        raise AnyteachError(f"{spec_key('pairs.balanced')} needs pairs.random (how many pairs to draw)")

    if "methods" not in raw:
        raise AnyteachError(f"{spec_key('methods')} is missing: list the transfer methods (e.g. [kl, kl+dp])")
    method_items = raw["methods"]
    if isinstance(method_items, (str, Mapping)):
        method_items = _as_list(method_items, "methods") if isinstance(method_items, str) else [method_items]
    if not isinstance(method_items, (list, tuple)) or not method_items:
        raise AnyteachError(f"{spec_key('methods')} must be a non-empty list of methods")
    methods = tuple(_parse_method(m, f"methods[{i}]") for i, m in enumerate(method_items))
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise AnyteachError(f"{spec_key('methods')}: label {dup!r} is used twice; give each entry its own `label`")
    for i, method in enumerate(methods):
        _check_method_data(method, data, f"methods[{i}].data")

    seeds_raw = raw.get("seeds", [0])
    seeds_list = (
        [seeds_raw] if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool) else _as_list(seeds_raw, "seeds")
    )
    seeds = tuple(_as_int(s, "seeds", 0, MAX_SEED) for s in seeds_list)
    if not seeds or len(set(seeds)) != len(seeds):
        raise AnyteachError(f"{spec_key('seeds')} must be a non-empty list of distinct integers, got {seeds_raw!r}")

    for method in methods:
        _check_run_options(method.name, run_options(method, recipe), "recipe")
    workers = _as_int(raw.get("workers", 1), "workers", 1)
    executor = _as_str(raw.get("executor", "local"), "executor")
    if executor not in EXECUTORS:
        raise AnyteachError(f"{spec_key('executor')} must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    address = raw.get("address")
    if address is not None:
        address = _as_str(address, "address")
        if executor != "ray":
            raise AnyteachError(f"{spec_key('address')} is the address of a Ray cluster: it needs executor: ray")
    resources_raw = _check_keys(raw.get("resources") or {}, RESOURCE_KEYS, "resources")
    resources: dict[str, float] = {}
    for key, value in resources_raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise AnyteachError(f"{spec_key('resources.' + key)} must be a non-negative number, got {value!r}")
        resources[key] = value
    if resources.get("num_cpus", 1) == 0:
        raise AnyteachError(f"{spec_key('resources.num_cpus')} must be positive: every run needs a CPU")
    name = _as_str(raw.get("name", "study"), "name")
    return StudySpec(
        tuple(models), data, pairs, methods, seeds, recipe, workers, executor, address, resources, name, imports
    )


def _plugin(plugin: str, base: Path) -> str:
    """A plugin as workers will import it: module names as they are, files as absolute paths (a
    relative path is relative to the study file's directory, or to the current one)."""
    if plugin.endswith(".py") or "/" in plugin:
        return str((base / Path(plugin).expanduser()).resolve())
    return plugin


def build_study_spec(
    spec: StudySpec | str | Path | Mapping[str, Any] | None = None,
    *,
    models: str | Sequence[str] | None = None,
    data: str | None = None,
    pairs: int | None = None,
    balanced: bool | None = None,
    pair_seed: int | None = None,
    methods: str | Sequence[Any] | None = None,
    seeds: str | Sequence[int] | None = None,
    recipe: Mapping[str, Any] | None = None,
    workers: int | None = None,
    executor: str | None = None,
    address: str | None = None,
    resources: Mapping[str, float] | None = None,
    name: str | None = None,
    imports: Sequence[str] | None = None,
) -> StudySpec:
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
        if isinstance(raw.get("imports"), list):  # files named relative to the study file
            raw["imports"] = [_plugin(p, Path(spec).parent) if isinstance(p, str) else p for p in raw["imports"]]
    else:
        raw = dict(spec)
    pair_raw = raw.get("pairs")
    if isinstance(pair_raw, int) and not isinstance(pair_raw, bool):
        pair_raw = {"random": pair_raw}
    if pairs is not None or balanced is not None or pair_seed is not None:
        pair_raw = dict(pair_raw or {})  # type: ignore[arg-type]  # a mapping here: pairs as a number became one
        for key, value in (("random", pairs), ("balanced", balanced), ("seed", pair_seed)):
            if value is not None:
                pair_raw[key] = value
    if pair_raw is not None:
        raw["pairs"] = pair_raw
    for key, extra in (("recipe", recipe), ("resources", resources)):
        if extra:
            base = raw.get(key) or {}
            if key == "recipe" and isinstance(base, str):  # a named recipe, with options changed
                base = {"base": base}
            raw[key] = {**base, **extra} if isinstance(base, Mapping) else base  # a bad base fails validation
    overrides = {
        "models": models,
        "data": data,
        "methods": methods,
        "seeds": seeds,
        "workers": workers,
        "executor": executor,
        "address": address,
        "name": name,
        "imports": list(imports) if imports else None,
    }
    return load_study_spec(raw, **overrides)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base loader says so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: the problem and where (PyYAML's own text spans several lines)."""
    problem = getattr(error, "problem", None) or getattr(error, "reason", None)
    mark = getattr(error, "problem_mark", None)
    if problem is None:
        return " ".join(str(error).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise AnyteachError(f"study file not found: {path}")
    try:  # bytes: PyYAML reads the byte-order mark (UTF-8, UTF-16) and refuses other encodings in one error
        loaded = yaml.load(path.read_bytes(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except OSError as e:
        raise AnyteachError(f"cannot read study file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise AnyteachError(f"cannot read study file {path}: not valid YAML ({_yaml_problem(e)})") from e
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise AnyteachError(f"study file {path} must hold a mapping of keys, got {type(loaded).__name__}")
    return dict(loaded)


__all__ = [
    "EXECUTORS",
    "MethodSpec",
    "PairSpec",
    "StudySpec",
    "build_study_spec",
    "load_study_spec",
    "run_options",
    "spec_key",
]
