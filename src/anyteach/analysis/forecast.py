"""Where to find the gains: every candidate teacher of a student ranked before any training.

A transfer run costs training; the signals that say which teacher is worth one cost forward passes
only. `pair_signals` computes them for every ordered (student, teacher) pair from each model's cached
predictions on the dataset's `calib` split (one forward pass per model, never the eval split): teacher
and student accuracy, the teacher-strength bucket, complementary knowledge (positive flips, from one
matrix product over the correctness matrix, `complementarity.zoo_from_predictions`), calibration error,
and the *available gain*: the accuracy gain of the calibrated student–teacher ensemble
`(1 − w)·p_S0 + w·p_T` over the student, with `w` chosen on the calib split by the same code the `ens`
target rule uses (`methods.choose_mixture_weight`). A `Forecaster` turns these signals into the forecast
Δ beyond the method's no-teacher control: per method, a least-squares line through the runs of a
finished study (`fit_forecaster`), with a 95% interval from its residuals. The package ships one fitted
on studies of the seed-0 MNIST-1D zoo (`forecaster.json`, see research/teachers/); a user's own
finished study re-fits it (`anyteach teachers ... --fit STUDY_DIR`, `teacher_analysis.fit_from_study`).
`rank_teachers` puts it together for one student.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..core.errors import AnyteachError
from ..core.io import write_json
from .metrics import strength_bucket, teacher_strength

SIGNALS: dict[str, str] = {
    "available_gain": "available gain",
    "complementary_knowledge": "complementary knowledge",
    "accuracy_difference": "teacher − student accuracy",
    "student_overconfidence": "student over-confidence",
    "log_available_gain": "ln(1 + available gain)",
    "student_log_size": "log10 student parameters",
    "log_available_gain_x_student_log_size": "ln(1 + available gain) × log10 student parameters",
}
"""The no-training signals a forecaster may use (column name: how tables and messages call it)."""


def _log_gain(t: Any) -> np.ndarray:
    return np.log1p(np.clip(t["available_gain"].to_numpy(dtype=float), 0.0, None))


def _log_size(t: Any) -> np.ndarray:
    return np.log10(t["student_params"].to_numpy(dtype=float))


DERIVED: dict[str, tuple[tuple[str, ...], Callable[[Any], np.ndarray]]] = {
    "log_available_gain": (("available_gain",), _log_gain),
    "student_log_size": (("student_params",), _log_size),
    "log_available_gain_x_student_log_size": (
        ("available_gain", "student_params"),
        lambda t: _log_gain(t) * _log_size(t),
    ),
}
"""Signals computed from columns of `pair_signals` (so a runs table with those columns works too): per name,
the columns it is computed from and how. The available gain enters through its logarithm because the share
of it a student takes shrinks as it grows: a small student offered +30 pp by every ensemble takes little of
it (research/teachers/)."""


def signal_sources(names: Sequence[str]) -> tuple[str, ...]:
    """The `pair_signals` columns that signals `names` are computed from, each once."""
    return tuple(dict.fromkeys(c for n in names for c in (DERIVED[n][0] if n in DERIVED else (n,))))


def signal_values(table: Any, names: Sequence[str]) -> np.ndarray:
    """The `(rows, signals)` array of signal columns `names` of a signals table, derived ones computed.

    Raises:
        AnyteachError: an unknown signal, or a column it needs is missing.
    """
    unknown = [s for s in names if s not in SIGNALS]
    if unknown:
        raise AnyteachError(f"unknown signals {unknown}; known: {', '.join(SIGNALS)}")
    columns = []
    for name in names:
        try:
            columns.append(DERIVED[name][1](table) if name in DERIVED else table[name].to_numpy(dtype=float))
        except KeyError as e:
            raise AnyteachError(f"the signal {name!r} needs the column {e.args[0]!r} of a signals table") from None
    return np.column_stack(columns) if columns else np.empty((len(table), 0))


DEFAULT_SIGNALS = ("log_available_gain", "log_available_gain_x_student_log_size")
"""The signals of a fit that is told none: the form chosen for the teaching preset (research/teachers/)."""

DEFAULT_METHOD = "pl+ens+wise"
"""The method ranked for by default: the best teaching preset (research/teaching-gains.md)."""

FORECASTER_FILE = "forecaster.json"
"""The shipped forecaster, a file inside the package."""

CALIB_SPLIT = "calib"
ECE_BINS = 15

PAIR_COLUMNS = (
    "student",
    "teacher",
    "student_name",
    "teacher_name",
    "student_family",
    "teacher_family",
    "student_params",
    "teacher_params",
    "student_acc",
    "teacher_acc",
    "accuracy_difference",
    "bucket",
    "complementary_knowledge",
    "negative_flips",
    "available_gain",
    "teacher_weight",
    "student_ece",
    "teacher_ece",
    "student_overconfidence",
)
"""Columns of `pair_signals`: accuracies, flips and gains in percent / percentage points on the calib split."""


# ---------------------------------------------------------------------------------------------
# Signals from cached predictions


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error (percent) of the max-probability confidence, `bins` equal-width bins."""
    probs = logits.float().softmax(1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).float()
    which = (confidence * bins).long().clamp_(0, bins - 1)
    count = torch.bincount(which, minlength=bins).float()
    gap = (
        torch.bincount(which, weights=confidence, minlength=bins)
        - torch.bincount(which, weights=correct, minlength=bins)
    ).abs()
    return float(100.0 * gap.sum() / count.sum())


def overconfidence(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean max-probability minus accuracy (pp): above 0 an over-confident model, below 0 an under-confident one."""
    probs = logits.float().softmax(1)
    confidence, predicted = probs.max(1)
    return float(100.0 * (confidence.mean() - (predicted == labels).float().mean()))


def available_gains(
    student_logits: torch.Tensor, teacher_logits: Sequence[torch.Tensor], labels: torch.Tensor
) -> list[dict[str, float]]:
    """The calibrated student–teacher ensemble of each teacher, chosen as the `ens` target rule chooses it.

    Args:
        student_logits: `(N, C)` logits of the student on the calib split.
        teacher_logits: each teacher's `(N, C)` logits on the same samples.
        labels: `(N,)` labels.

    Returns:
        Per teacher `{"available_gain": pp, "teacher_weight": w}`: the ensemble's calib accuracy minus
        the student's, with `w` from `methods.choose_mixture_weight`.
    """
    from ..methods import Calibration, choose_mixture_weight

    out = []
    for logits in teacher_logits:
        chosen = choose_mixture_weight(Calibration(labels, student_logits, logits.unsqueeze(0)))
        out.append(
            {
                "available_gain": chosen["calib_ensemble_acc"] - chosen["calib_student_acc"],
                "teacher_weight": chosen["teacher_weight"],
            }
        )
    return out


_top_level_commas = re.compile(r",(?![^\[\]]*\])")
"""The commas between references, not those inside a model argument's list (`channels=[8,16,32,64]`)."""


def resolve_models(models: str | Sequence[str]) -> list[str]:
    """Model references from a zoo (`mnist1d`, `zoo:mnist1d@1`), a comma-separated list or a sequence.

    Raises:
        AnyteachError: an unknown zoo, or no models.
    """
    if isinstance(models, str):
        from ..zoo import ZOOS, get_zoo

        text = models.strip()
        body = text.removeprefix("zoo:")
        name, at, seed = body.partition("@")
        if "," not in text and "/" not in body and (name in ZOOS or text.startswith("zoo:")):
            if name not in ZOOS:
                raise AnyteachError(f"unknown zoo {name!r}; built-in zoos: {', '.join(ZOOS)}")
            if at and not seed.isdigit():
                raise AnyteachError(f"bad zoo seed in {models!r}: expected an integer after @")
            return get_zoo(name, int(seed) if at else 0).refs()
        models = [m.strip() for m in _top_level_commas.split(text) if m.strip()]
    refs = list(dict.fromkeys(str(m) for m in models))
    if not refs:
        raise AnyteachError("no models given")
    return refs


def pair_signals(
    students: Sequence[str], teachers: Sequence[str], data: Any, *, on_model: Callable[[str], None] | None = None
) -> Any:
    """The no-training signals of every ordered (student, teacher) pair of different models.

    Each model runs once over the calib split (`predictions.predict`, cached on disk); complementary
    knowledge of all pairs is one matrix product, the available gain one ensemble choice per pair.

    Args:
        students, teachers: model references.
        data: a dataset reference (or `Dataset`) with a `calib` split, e.g. `mnist1d:calib=5000`.
        on_model: called with each reference once its predictions are ready (progress).

    Returns:
        A pandas DataFrame with `PAIR_COLUMNS`, one row per pair, students in the given order.

    Raises:
        AnyteachError: no calib split, unknown references, class-count mismatch.
    """
    import pandas as pd

    from ..data.predictions import check_compatible, predict
    from ..data.references import load_dataset
    from ..models.references import load_model
    from .complementarity import zoo_from_predictions

    dataset = load_dataset(data)
    if not dataset.has_split(CALIB_SPLIT):
        raise AnyteachError(
            f"dataset {dataset.ref!r} has no calib split: the forecast measures on held-out "
            "labelled samples, never the eval split (mnist1d:calib=5000, or a calib/ folder of an "
            "image folder)"
        )
    refs = list(dict.fromkeys([*students, *teachers]))
    logits, info = {}, {}
    labels = torch.empty(0, dtype=torch.long)
    for ref in refs:
        model = load_model(ref)
        check_compatible(model, dataset)
        predictions = predict(model, dataset, CALIB_SPLIT)
        logits[ref], labels = predictions.logits, predictions.labels
        info[ref] = model.info
        if on_model is not None:
            on_model(ref)
    zoo = zoo_from_predictions(
        torch.stack([logits[r].argmax(1) for r in refs]).to(torch.int32),
        labels,
        models=refs,
        num_classes=dataset.num_classes,
        per_class=False,
    )
    ece = {r: expected_calibration_error(logits[r], labels) for r in refs}
    confident = {s: overconfidence(logits[s], labels) for s in students}
    rows = []
    for student in students:
        s = refs.index(student)
        others = [t for t in teachers if not _same_model(student, t, info, logits)]
        gains = available_gains(logits[student], [logits[t] for t in others], labels)
        for teacher, gain in zip(others, gains):
            t = refs.index(teacher)
            strength = teacher_strength(zoo.accuracy[t], zoo.accuracy[s])
            rows.append(
                {
                    "student": student,
                    "teacher": teacher,
                    "student_name": info[student].name,
                    "teacher_name": info[teacher].name,
                    "student_family": info[student].family,
                    "teacher_family": info[teacher].family,
                    "student_params": int(info[student].num_params),
                    "teacher_params": int(info[teacher].num_params),
                    "student_acc": float(zoo.accuracy[s]),
                    "teacher_acc": float(zoo.accuracy[t]),
                    "accuracy_difference": strength,
                    "bucket": strength_bucket(strength),
                    "complementary_knowledge": float(zoo.positive_flips[s, t]),
                    "negative_flips": float(zoo.negative_flips[s, t]),
                    **gain,
                    "student_ece": ece[student],
                    "teacher_ece": ece[teacher],
                    "student_overconfidence": confident[student],
                }
            )
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def _same_model(a: str, b: str, info: Mapping[str, Any], logits: Mapping[str, torch.Tensor]) -> bool:
    """Two references to one model: the same reference, the same content identity (`zoo:glyphs/x`
    and the path of its file), or the same logits on every calib sample (a saved model and its raw
    weights under `timm:<arch>@<file>`). A student is never its own teacher."""
    if a == b or (info[a].identity and info[a].identity == info[b].identity):
        return True
    return logits[a].shape == logits[b].shape and bool(torch.equal(logits[a], logits[b]))


# ---------------------------------------------------------------------------------------------
# The forecaster


def _num(value: float) -> str:
    """A number for a sentence: thousands separated and whole (a parameter count), else 3 digits."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


@dataclass
class MethodForecast:
    """The forecast of one method's Δ beyond its control: `intercept + Σ coef·signal`, ± `half_width`.

    Attributes:
        method: the method (study label) it forecasts.
        control: the no-teacher control the realised Δ was measured against.
        signals: the signal columns it uses (`SIGNALS`).
        coef: one coefficient per signal (pp of Δ beyond control per unit of the signal).
        intercept: pp.
        half_width: half the 95% interval, pp (1.96 residual standard deviations of the fit).
        means: the mean of each signal over the fitted runs (to say which signal drives a forecast).
        runs, students: what it was fitted on.
        fitted_on: where those runs came from (study names).
        ranges: the smallest and largest value over the fitted runs of each column the signals are computed
            from (`signal_sources`: the student's size, not its log); a pair outside them gets an
            extrapolated forecast (`outside`).
    """

    method: str
    control: str
    signals: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    half_width: float
    means: tuple[float, ...]
    runs: int
    students: int
    fitted_on: str = ""
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def values(self, signals: Any) -> np.ndarray:
        """The `(rows, signals)` array of this forecast's signals from a signals table."""
        return signal_values(signals, self.signals)

    def predict(self, signals: Any) -> np.ndarray:
        """Forecast Δ beyond the control (pp) for each row of a signals table."""
        return self.intercept + self.values(signals) @ np.asarray(self.coef, dtype=float)

    def outside_by_column(self, signals: Any) -> dict[str, np.ndarray]:
        """Per source column with a fitted range, which rows lie outside it."""
        out = {}
        for column, (low, high) in self.ranges.items():
            if column not in signals.columns:
                raise AnyteachError(f"forecast of {self.method!r} needs the column {column!r} of a signals table")
            x, slack = signals[column].to_numpy(dtype=float), 1e-9 + 1e-6 * (high - low)
            out[column] = (x < low - slack) | (x > high + slack)
        return out

    def outside(self, signals: Any) -> np.ndarray:
        """Per row, whether a signal lies outside the range the forecast was fitted on (an extrapolation)."""
        out = np.zeros(len(signals), dtype=bool)
        for rows in self.outside_by_column(signals).values():
            out |= rows
        return out

    def extrapolation_note(self, signals: Any) -> str:
        """Which source columns of `signals` lie outside the fitted ranges, in words ('' if none)."""
        parts = []
        for column, rows in self.outside_by_column(signals).items():
            if rows.any():
                low, high = self.ranges[column]
                values = signals[column].to_numpy(dtype=float)[rows]
                shown = _num(values.min()) if np.ptp(values) == 0 else f"{_num(values.min())}–{_num(values.max())}"
                parts.append(f"{column.replace('_', ' ')} {shown} (fitted on {_num(low)}–{_num(high)})")
        return "; ".join(parts)

    def top_signal(self, signals: Any) -> list[str]:
        """Per row, the signal that moves its forecast most away from the average fitted run."""
        if not self.signals:
            return ["none"] * len(signals)
        push = (self.values(signals) - np.asarray(self.means)) * np.asarray(self.coef)
        return [self.signals[int(i)] for i in np.abs(push).argmax(1)]

    def sentence(self) -> str:
        terms = (
            " ".join(f"{c:+.3f}·{SIGNALS.get(s, s)}" for s, c in zip(self.signals, self.coef))
            or "(no signal ranks its teachers: the same forecast for every pair)"
        )
        return (
            f"{self.method}: Δ beyond {self.control} ≈ {self.intercept:+.3f} {terms} pp "
            f"(± {self.half_width:.2f} pp, {self.runs} runs of {self.students} students)"
        )


@dataclass
class Forecaster:
    """One `MethodForecast` per method."""

    methods: dict[str, MethodForecast] = field(default_factory=dict)
    source: str = ""

    def get(self, method: str) -> MethodForecast:
        if method not in self.methods:
            known = ", ".join(sorted(self.methods)) or "none"
            raise AnyteachError(
                f"no forecast for method {method!r}; this forecaster knows: {known} "
                "(fit one on a finished study of that method: --fit STUDY_DIR)"
            )
        return self.methods[method]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "linear least squares of Δ beyond control on no-training signals, per method",
            "source": self.source,
            "methods": {m: asdict(f) for m, f in self.methods.items()},
        }

    def save(self, path: str | Path) -> Path:
        """Write the forecaster as JSON, atomically."""
        write_json(path, self.as_dict())
        return Path(path)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "") -> Forecaster:
        try:
            methods = {}
            for name, f in raw["methods"].items():
                methods[name] = MethodForecast(
                    method=str(f["method"]),
                    control=str(f["control"]),
                    signals=tuple(f["signals"]),
                    coef=tuple(float(c) for c in f["coef"]),
                    intercept=float(f["intercept"]),
                    half_width=float(f["half_width"]),
                    means=tuple(float(m) for m in f["means"]),
                    runs=int(f["runs"]),
                    students=int(f["students"]),
                    fitted_on=str(f.get("fitted_on", "")),
                    ranges={str(c): (float(lo), float(hi)) for c, (lo, hi) in f.get("ranges", {}).items()},
                )
                unknown = [s for s in methods[name].signals if s not in SIGNALS]
                if unknown or len(methods[name].coef) != len(methods[name].signals):
                    raise ValueError(f"bad signals {unknown or methods[name].signals}")
                stray = sorted(set(methods[name].ranges) - set(signal_sources(methods[name].signals)))
                if stray:
                    raise ValueError(f"ranges of columns its signals do not use: {stray}")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise AnyteachError(f"not a forecaster file{f' ({source})' if source else ''}: {e}") from e
        return cls(methods, str(raw.get("source", source)))

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        """Read a forecaster written by `save`.

        Raises:
            AnyteachError: missing or malformed file.
        """
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise AnyteachError(f"cannot read forecaster {str(path)!r}: {e}") from e
        return cls.from_dict(raw, str(path))


def shipped_forecaster() -> Forecaster:
    """The forecaster shipped in the package (fitted on studies of the seed-0 MNIST-1D zoo)."""
    text = resources.files("anyteach.analysis").joinpath(FORECASTER_FILE).read_text()
    return Forecaster.from_dict(json.loads(text), f"anyteach/{FORECASTER_FILE}")


def fit_forecast(
    signals: Any, realised: Any, *, method: str, control: str, use: Sequence[str] = DEFAULT_SIGNALS, fitted_on: str = ""
) -> MethodForecast:
    """Least-squares fit of the realised Δ beyond control on signal columns.

    Args:
        signals: a table with the `use` columns and a `student` column, one row per run.
        realised: the realised Δ beyond the control (pp), one per row.
        method, control: what the rows are.
        use: the signal columns (none: the mean Δ for every pair, for a method whose gains no signal ranks).
        fitted_on: where the rows came from.

    Raises:
        AnyteachError: fewer runs than signals + 2, unknown signals, missing values.
    """
    x = signal_values(signals, use)
    y = np.asarray(realised, dtype=float)
    keep = np.isfinite(x).all(1) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(y) < len(use) + 2:
        raise AnyteachError(
            f"{len(y)} runs of {method!r} with a control: too few to fit a forecast on "
            f"{len(use)} signals (need {len(use) + 2})"
        )
    design = np.column_stack([np.ones(len(y)), x]) if len(use) else np.ones((len(y), 1))
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ solution
    sd = math.sqrt(float(residual @ residual) / max(len(y) - design.shape[1], 1))
    students = int(signals["student"][keep].nunique()) if "student" in signals.columns else 0
    means = tuple(float(m) for m in x.mean(0)) if len(use) else ()
    ranges = {c: (float(signals[c][keep].min()), float(signals[c][keep].max())) for c in signal_sources(use)}
    return MethodForecast(
        method,
        control,
        tuple(use),
        tuple(float(c) for c in solution[1:]),
        float(solution[0]),
        1.96 * sd,
        means,
        int(len(y)),
        students,
        fitted_on,
        ranges,
    )


# ---------------------------------------------------------------------------------------------
# Ranking for one student


@dataclass
class TeacherRanking:
    """Every candidate teacher of one student, best forecast first.

    Attributes:
        student: the student's reference.
        method, control: the method ranked for and its no-teacher control.
        data: the dataset reference the signals were measured on (its calib split).
        table: pandas DataFrame, `PAIR_COLUMNS` plus `forecast`, `forecast_low`, `forecast_high`,
            `top_signal`, `extrapolated` (a signal outside the fitted range), `rank` (1 = best).
        forecast: the `MethodForecast` used.
        seconds: wall time of the ranking.
    """

    student: str
    method: str
    control: str
    data: str
    table: Any
    forecast: MethodForecast
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        import pandas as pd

        rows = [
            {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
            for r in self.table.astype(object).where(pd.notna(self.table), None).to_dict("records")
        ]
        return {
            "student": self.student,
            "method": self.method,
            "control": self.control,
            "data": self.data,
            "split": CALIB_SPLIT,
            "forecaster": self.forecast.sentence(),
            "verdict": self.verdict(),
            "teachers": rows,
        }

    def verdict(self) -> str:
        """One sentence: which teachers are forecast to beat the control beyond the interval, or that none is."""
        t = self.table
        above = t[t["forecast_low"] > 0]
        if above.empty:
            return (
                f"No teacher is forecast to beat {self.control} beyond the 95% interval (forecasts "
                f"{t['forecast'].min():+.2f} to {t['forecast'].max():+.2f} pp, ± {self.forecast.half_width:.2f}): "
                f"expect little from {self.method} for this student."
            )
        best = above.iloc[0]
        return (
            f"{len(above)} of {len(t)} teachers are forecast to beat {self.control} beyond the 95% interval; "
            f"best: {best['teacher_name']} ({best['forecast']:+.2f} ± {self.forecast.half_width:.2f} pp)."
        )

    def save_json(self, path: str | Path) -> Path:
        write_json(path, self.as_dict())
        return Path(path)


def rank_rows(signals: Any, forecast: MethodForecast) -> Any:
    """A signals table with the forecast, its 95% interval, the top signal and the rank per student (equal
    forecasts ordered by complementary knowledge, then teacher accuracy)."""
    table = signals.copy()
    table["forecast"] = forecast.predict(table)
    table["forecast_low"] = table["forecast"] - forecast.half_width
    table["forecast_high"] = table["forecast"] + forecast.half_width
    table["top_signal"] = forecast.top_signal(table)
    table["extrapolated"] = forecast.outside(table)
    # equal forecasts (equal available gains: a strong student's come in steps of one calib sample) go to
    # the teacher with more complementary knowledge, then the more accurate one, then the given order
    keys = [k for k in ("forecast", "complementary_knowledge", "teacher_acc") if k in table.columns]
    order = table.sort_values(keys, ascending=False, kind="stable")
    table["rank"] = order.groupby("student", sort=False).cumcount().reindex(table.index) + 1
    return table.sort_values(["student", "rank"], kind="stable").reset_index(drop=True)


def rank_teachers(
    student: str,
    teachers: str | Sequence[str],
    data: Any,
    *,
    method: str = DEFAULT_METHOD,
    forecaster: Forecaster | str | Path | None = None,
    on_model: Callable[[str], None] | None = None,
    allow_chance: bool = False,
) -> TeacherRanking:
    """Every candidate teacher of `student` ranked by the forecast Δ of `method` beyond its control.

    Args:
        student: the student's reference; a bare name (`gru`) is looked up among `teachers`.
        teachers: a zoo (`mnist1d`, `zoo:mnist1d@1`), a comma-separated list or a sequence of
            references (the student itself is left out).
        data: a dataset with a calib split (`mnist1d:calib=5000`): every signal is measured there.
        method: the method whose gain is forecast.
        forecaster: a `Forecaster`, a path to a forecaster file, or None for the shipped one.
        on_model: progress callback, called with each reference once its predictions are ready.
        allow_chance: a model at chance on the calib split is expected (a random candidate) instead of an
            error naming its likely cause.

    Raises:
        AnyteachError: no forecast for `method`, no calib split, unknown references, fewer than one
            teacher.
    """
    import time

    start = time.perf_counter()
    if forecaster is None:
        forecaster = shipped_forecaster()
    elif not isinstance(forecaster, Forecaster):
        forecaster = Forecaster.load(forecaster)
    forecast = forecaster.get(method)
    refs = resolve_models(teachers)
    if student not in refs:
        named = [r for r in refs if student in (r.rsplit("/", 1)[-1], Path(r).stem)]
        student = named[0] if len(named) == 1 else student
    candidates = [r for r in refs if r != student]
    if not candidates:
        raise AnyteachError("no candidate teacher: give models other than the student")
    if not allow_chance:  # a forecast for a model at chance (a wrong input size or label order) means nothing
        from ..data.predictions import check_not_at_chance
        from ..data.references import load_dataset
        from ..models.references import load_model

        dataset = load_dataset(data)
        if dataset.has_split("calib"):
            for role, ref in [("student", student), *(("teacher", r) for r in candidates)]:
                check_not_at_chance(load_model(ref), dataset, "calib", role)
    signals = pair_signals([student], candidates, data, on_model=on_model)
    if signals.empty:
        raise AnyteachError(f"no candidate teacher: every model given is the student {student} itself")
    table = rank_rows(signals, forecast)
    data_ref = data if isinstance(data, str) else getattr(data, "ref", str(data))
    return TeacherRanking(student, method, forecast.control, data_ref, table, forecast, time.perf_counter() - start)


def ranking_figure(ranking: TeacherRanking, path: str | Path) -> Path:
    """Horizontal bars of each teacher's forecast Δ beyond the control with its 95% interval."""
    from ..core.plotting import pyplot, save_figure

    plt = pyplot()
    t = ranking.table
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(t) + 1.2))
    y = np.arange(len(t))
    outside = t["extrapolated"].to_numpy(dtype=bool) if "extrapolated" in t else np.zeros(len(t), dtype=bool)
    bars = ax.barh(y, t["forecast"], xerr=ranking.forecast.half_width, color="tab:blue", alpha=0.8, capsize=2)
    for bar, extrapolated in zip(bars, outside):
        if extrapolated:  # hatched: outside what the forecaster was fitted on, read the order, not the pp
            bar.set_hatch("//")
            bar.set_alpha(0.45)
    ax.set_yticks(y, [n for n in t["teacher_name"]])
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"forecast Δ of {ranking.method} beyond {ranking.control} (pp, 95% interval)")
    title = f"teachers for {t['student_name'].iloc[0]}"
    if outside.any():
        title += f"\nhatched: extrapolated, {ranking.forecast.extrapolation_note(t)}"
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Studies that spend compute where the gains are


@dataclass
class RecommendedPairs:
    """The pairs of `pairs: {recommended: k}`: per student its k best-forecast teachers, and a random
    draw of k of its candidate teachers to compare them with (a pair may be in both)."""

    method: str
    data: str
    recommended: list[tuple[str, str]]
    drawn: list[tuple[str, str]]

    def ordered(self) -> list[tuple[str, str]]:
        """Every pair once, per student its recommended teachers first."""
        return list(dict.fromkeys(self.recommended + self.drawn))


def calib_data(refs: Sequence[str | None]) -> str | None:
    """The first dataset reference of `refs` that has a calib split (None: none has)."""
    from ..data.references import load_dataset

    for ref in dict.fromkeys(r for r in refs if r):
        try:
            if load_dataset(ref).has_split(CALIB_SPLIT):
                return ref
        except AnyteachError:
            continue
    return None


def recommended_pairs(
    students: Sequence[str],
    teachers: Sequence[str],
    k: int,
    data: str,
    *,
    method: str,
    seed: int = 0,
    forecaster: Forecaster | None = None,
) -> RecommendedPairs:
    """Per student its `k` best-forecast teachers for `method`, and a seeded random draw of `k` teachers.

    Raises:
        AnyteachError: k < 1, no forecast for the method, no calib split.
    """
    import random

    if k < 1:
        raise AnyteachError(f"pairs.recommended must be at least 1 (got {k})")
    forecast = (forecaster or shipped_forecaster()).get(method)
    table = rank_rows(pair_signals(students, teachers, data), forecast)
    rng = random.Random(seed)
    recommended, drawn = [], []
    for student in students:
        part = table[table["student"] == student]
        recommended += [(student, t) for t in part["teacher"].iloc[:k]]
        candidates = sorted(part["teacher"])
        drawn += [(student, t) for t in rng.sample(candidates, min(k, len(candidates)))]
    return RecommendedPairs(method, data, recommended, drawn)


__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_SIGNALS",
    "DERIVED",
    "FORECASTER_FILE",
    "Forecaster",
    "MethodForecast",
    "PAIR_COLUMNS",
    "SIGNALS",
    "RecommendedPairs",
    "TeacherRanking",
    "available_gains",
    "calib_data",
    "expected_calibration_error",
    "fit_forecast",
    "overconfidence",
    "pair_signals",
    "rank_rows",
    "rank_teachers",
    "ranking_figure",
    "recommended_pairs",
    "resolve_models",
    "shipped_forecaster",
    "signal_sources",
    "signal_values",
]
