"""Aggregation of a study's runs into the paper's numbers (pandas in, pandas out).

The paper's headline number (PAPER.md sections 2 and 4) is the *success rate*: per student, the
percent of its runs with transfer delta > 0 (strictly), summarised over students by the median (with
its interquartile range). Next to it: the pooled success rate over all runs, the mean transfer delta,
knowledge gain and loss (percent / percentage points), and the rates of significant gain and
significant harm (percent of runs whose one-sided exact McNemar p-value of gains, resp. losses, is
below 0.05). The same numbers are computed per method, per method x teacher-strength bucket and per
method x student family; `per_student` gives each student's success rate and mean delta next to
its parameter count (transfer delta against student size). Everything here is a pure function of
the runs table, so it is tested against hand-computed values on a hand-made DataFrame.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..analysis.ceilings import read_ceilings, with_ceilings
from ..analysis.metrics import BUCKETS, SIGNIFICANCE, mcnemar_p_values
from ..core.errors import RunFailed
from ..core.options import BUDGET_OPTIONS, TRAINING_OPTIONS
from ..methods.presets import CONTROL_METHOD, SELF_CONTROL, UNLABELLED_CONTROLS
from ..study.store import StudyStore
from ..training.run_notes import NOTE_KINDS, note_kind

METRIC_COLUMNS: tuple[str, ...] = (
    "runs",
    "students",
    "median_success_rate",
    "success_rate_q1",
    "success_rate_q3",
    "success_rate_iqr",
    "pooled_success_rate",
    "mean_delta",
    "median_delta",
    "student_mean_delta",
    "mean_gain",
    "mean_loss",
    "mean_transfer_rate",
    "significant_gain_rate",
    "significant_harm_rate",
    "mean_teacher_strength",
    "mean_ensemble_delta",
    "pooled_efficiency",
    "median_efficiency",
    "student_median_efficiency",
    "mean_reachable_delta",
    "pooled_reachable_efficiency",
)
"""The columns of every aggregate table (after the grouping keys)."""

REQUIRED_RUN_COLUMNS = ("label", "student", "transfer_delta", "knowledge_gain", "knowledge_loss", "p_gain", "p_loss")


def net_change(runs: pd.DataFrame) -> pd.Series:
    """Each run's net change as an exact number: eval samples gained minus samples lost.

    Every sign decision (success, better than the control, ties) is made on this, never on the float
    transfer delta: two runs that both gain 3 samples store deltas like 0.0600000000000005 and
    0.05999999999999961, which a float comparison would call a win. Runs without flip counts (tables
    written by hand) fall back to the delta rounded to 1e-6 pp, which absorbs the float noise of any
    eval split below 10^8 samples.
    """
    delta = pd.to_numeric(runs["transfer_delta"], errors="coerce").round(6)
    if {"gain_count", "loss_count"} <= set(runs.columns):
        counts = pd.to_numeric(runs["gain_count"], errors="coerce") - pd.to_numeric(runs["loss_count"], errors="coerce")
        return counts.where(counts.notna(), delta)
    return delta


def _prepare(runs: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED_RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}")
    out = runs.copy()
    for column, default in (
        ("transfer_rate", np.nan),
        ("teacher_strength", np.nan),
        ("bucket", None),
        ("student_family", "unknown"),
        ("student_params", np.nan),
        ("student_name", None),
        ("ensemble_delta", np.nan),
        ("transfer_efficiency", np.nan),
        ("ceiling_acc", np.nan),
        ("ensemble_acc", np.nan),
        ("student_acc_before", np.nan),
    ):
        if column not in out.columns:
            out[column] = default
    out["student_name"] = out["student_name"].fillna(out["student"])
    out["ensemble_delta"] = pd.to_numeric(out["ensemble_delta"], errors="coerce")
    out["transfer_efficiency"] = pd.to_numeric(out["transfer_efficiency"], errors="coerce")
    takeable = out["ensemble_delta"] > 0  # runs whose ensemble gains something: the efficiency's denominator
    out["_taken"] = out["transfer_delta"].where(takeable)
    out["_available"] = out["ensemble_delta"].where(takeable)
    # the reachable gain: up to the ensemble, but no higher than what the student's architecture reaches at all
    reachable = np.minimum(
        pd.to_numeric(out["ensemble_acc"], errors="coerce"), pd.to_numeric(out["ceiling_acc"], errors="coerce")
    ) - pd.to_numeric(out["student_acc_before"], errors="coerce")
    out["_reachable"] = reachable.where(reachable > 0)
    out["_taken_reachable"] = out["transfer_delta"].where(reachable > 0)
    out["_net"] = net_change(out)
    out["success"] = out["_net"] > 0
    out["significant_gain"] = out["p_gain"] < SIGNIFICANCE
    out["significant_harm"] = out["p_loss"] < SIGNIFICANCE
    return out


def per_student(runs: pd.DataFrame, by: Sequence[str] = ("label",)) -> pd.DataFrame:
    """Per student (within each `by` group): runs, success rate (%), mean delta, gain and loss.

    Returns:
        Columns `*by, student, student_name, student_family, student_params, runs, success_rate,
        mean_delta, mean_gain, mean_loss`.
    """
    r = _prepare(runs)
    keys = [*by, "student"]
    described = {c: (c, "first") for c in ("student_name", "student_family", "student_params") if c not in keys}
    table = r.groupby(keys, sort=False, dropna=True).agg(
        **described,
        runs=("transfer_delta", "size"),
        success_rate=("success", "mean"),
        mean_delta=("transfer_delta", "mean"),
        mean_gain=("knowledge_gain", "mean"),
        mean_loss=("knowledge_loss", "mean"),
    )
    table["success_rate"] *= 100.0
    return table.reset_index()


def _student_median_efficiency(r: pd.DataFrame, by: Sequence[str], taken: str) -> pd.Series:
    """Per group of `by`: the median over students of each student's pooled efficiency (100 · Σ `taken` /
    Σ available gain over its runs with a gain to take), so a few weak students cannot carry the number."""
    part = r[r["_available"].notna()]
    if part.empty:
        return pd.Series(dtype=float)
    sums = part.groupby([*by, "student"], sort=False)[[taken, "_available"]].sum()
    return (100.0 * sums[taken] / sums["_available"]).groupby(level=list(range(len(by))), sort=False).median()


def aggregate(runs: pd.DataFrame, by: Sequence[str] = ("label",)) -> pd.DataFrame:
    """The study metrics of every group of runs (`METRIC_COLUMNS`), grouped by `by`.

    Rates are percent; deltas, gains and losses percent / percentage points. Runs whose grouping
    key is missing (e.g. the bucket of a teacher-free control) are left out of that grouping.

    Args:
        runs: one row per run, with at least `label, student, transfer_delta, knowledge_gain,
            knowledge_loss, p_gain, p_loss` (the store's `runs` table).
        by: grouping columns (`label` is the method as reported).

    Returns:
        One row per group: the `by` columns then `METRIC_COLUMNS`, groups in order of appearance.
    """
    by = list(by)
    r = _prepare(runs)
    if r.empty:
        return pd.DataFrame(columns=[*by, *METRIC_COLUMNS])
    grouped = r.groupby(by, sort=False, dropna=True)
    out = grouped.agg(
        runs=("transfer_delta", "size"),
        students=("student", "nunique"),
        pooled_success_rate=("success", "mean"),
        mean_delta=("transfer_delta", "mean"),
        median_delta=("transfer_delta", "median"),
        mean_gain=("knowledge_gain", "mean"),
        mean_loss=("knowledge_loss", "mean"),
        mean_transfer_rate=("transfer_rate", "mean"),
        significant_gain_rate=("significant_gain", "mean"),
        significant_harm_rate=("significant_harm", "mean"),
        mean_teacher_strength=("teacher_strength", "mean"),
        mean_ensemble_delta=("ensemble_delta", "mean"),
        median_efficiency=("transfer_efficiency", "median"),
        _taken=("_taken", "sum"),
        _available=("_available", "sum"),
        mean_reachable_delta=("_reachable", "mean"),
        _taken_reachable=("_taken_reachable", "sum"),
        _reachable=("_reachable", "sum"),
    )
    # pooled over runs: the share of all the available gain that the runs took together
    out["pooled_efficiency"] = 100.0 * out["_taken"] / out["_available"].where(out["_available"] > 0)
    out["pooled_reachable_efficiency"] = (
        100.0 * out["_taken_reachable"] / out["_reachable"].where(out["_reachable"] > 0)
    )
    out["student_median_efficiency"] = _student_median_efficiency(r, by, "transfer_delta")
    for column in ("pooled_success_rate", "significant_gain_rate", "significant_harm_rate"):
        out[column] = out[column].astype(float) * 100.0
    students = per_student(r, by).groupby(by, sort=False)
    out["median_success_rate"] = students["success_rate"].median()
    out["success_rate_q1"] = students["success_rate"].quantile(0.25)
    out["success_rate_q3"] = students["success_rate"].quantile(0.75)
    out["success_rate_iqr"] = out["success_rate_q3"] - out["success_rate_q1"]
    out["student_mean_delta"] = students["mean_delta"].mean()
    return out.reset_index()[[*by, *METRIC_COLUMNS]]


def size_correlation(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method: Spearman rank correlation between student parameter count and its mean delta.

    Returns:
        Columns `label, students, delta_size_spearman` (NaN with fewer than 3 students or no spread).
    """
    table = per_student(runs)
    rows = []
    for label, group in table.groupby("label", sort=False):
        rho = float("nan")
        if len(group) >= 3:
            rho = group["student_params"].rank().corr(group["mean_delta"].rank())
        rows.append({"label": label, "students": len(group), "delta_size_spearman": rho})
    return pd.DataFrame(rows, columns=["label", "students", "delta_size_spearman"])


FAILURE_COLUMNS: tuple[str, ...] = ("run_key", "label", "kind", "error", "at")
"""The columns of `StudySummary.failures`: runs that failed and have not finished since."""

CONTROL_COLUMNS: tuple[str, ...] = (
    "paired_runs",
    "students",
    "beats_control_rate",
    "mean_delta_vs_control",
    "students_better",
    "students_worse",
    "p_better_than_control",
    "p_worse_than_control",
    "control",
    "unpaired_runs",
    "pooled_efficiency_vs_control",
    "student_median_efficiency_vs_control",
    "pooled_reachable_efficiency_vs_control",
)
"""The columns of `against_control` (after `label`); `control` names the control label(s) used."""


def _training_options(options: Any) -> dict[str, Any]:
    """A run's training options (its `options` JSON) with every default filled in."""
    given = json.loads(options) if isinstance(options, str) and options else {}
    return {name: given.get(name, option.default) for name, option in TRAINING_OPTIONS.items()}


def data_and_budget(runs: pd.DataFrame) -> dict[str, str]:
    """Each method label's data and budget (`BUDGET_OPTIONS`) as a short text, e.g. `mnist1d, 2 epochs,
    batch 256`: methods are ranked against each other only where this text is the same."""
    out: dict[str, str] = {}
    for label, group in runs.groupby("label", sort=False):
        first = group.iloc[0]
        training = _training_options(first.get("options"))
        epochs = training["epochs"]
        parts = [f"{epochs} epoch{'' if epochs == 1 else 's'}", f"batch {training['batch_size']}"]
        parts += ["augmented"] if training["augment"] else []
        out[str(label)] = f"`{first.get('data', '')}`, " + ", ".join(parts)
    return out


def against_control(runs: pd.DataFrame, control: str | Sequence[str] = CONTROL_METHOD) -> pd.DataFrame:
    """Every method against the no-teacher control, paired by student, seed and budget.

    Each run's transfer delta minus the delta of its student's control run (same seed, same data,
    same budget: `BUDGET_OPTIONS`) says what the teacher added beyond the extra training. A study
    that runs a method with a longer schedule also runs a control with that schedule; among several
    controls of the same budget the one whose other training options agree most is used (the study's
    `xe` with the method's own learning-rate schedule, say). The test is over students, not runs,
    because a student's runs share one control run: per student the mean difference, then a one-sided
    exact sign test over students (students better vs worse than their control; ties left out).

    Args:
        runs: the runs table (with a `method` column naming the engine method, else `label` is used;
            `options` and `data` columns decide the budget when present).
        control: the engine method of the control, or several: each run is then paired with the
            stronger of them (the larger net change on the eval split; a method is never its own control).

    Returns:
        One row per method with a control to pair with: `label` then `CONTROL_COLUMNS`:
        `beats_control_rate` (% of paired runs with a larger delta than their control),
        `mean_delta_vs_control` (pp), `students_better` / `students_worse` (by their mean
        difference), the sign test's `p_better_than_control` / `p_worse_than_control`, the
        `control` label(s) used and the `unpaired_runs` (no control of the same budget); the share
        of the available gain taken beyond the control (`pooled_efficiency_vs_control`: Σ(Δ − Δ_control)
        / Σ ensemble Δ over the runs whose ensemble gains; `student_median_efficiency_vs_control`: the
        same per student, median over students; `pooled_reachable_efficiency_vs_control`: against
        min(ensemble, the student's capacity ceiling) − S0 where ceilings are known). Empty when the
        study has no control runs.
    """
    r = _prepare(runs)
    r = r.assign(
        _method=r["method"] if "method" in r.columns else r["label"],
        _seed=r["seed"] if "seed" in r.columns else 0,
        _data=r["data"] if "data" in r.columns else "",
        _training=[_training_options(o) for o in (r["options"] if "options" in r.columns else [None] * len(r))],
    )
    r["_budget"] = [tuple(t[k] for k in BUDGET_OPTIONS) for t in r["_training"]]
    methods = (control,) if isinstance(control, str) else tuple(control)
    controls: dict[tuple, list[pd.Series]] = {}
    for _, c in r[r["_method"].isin(methods)].iterrows():
        controls.setdefault((c["student"], c["_seed"], c["_data"], c["_budget"]), []).append(c)
    if not controls:
        return pd.DataFrame(columns=["label", *CONTROL_COLUMNS])
    rows = []
    compared = r if len(methods) > 1 else r[r["_method"] != methods[0]]
    for label, group in compared.groupby("label", sort=False):
        diffs, net_diffs, students, used, unpaired, available, reachable = [], [], [], [], 0, [], []
        for _, run in group.iterrows():
            candidates = [
                c
                for c in controls.get((run["student"], run["_seed"], run["_data"], run["_budget"]), [])
                if c["_method"] != run["_method"]
            ]
            if not candidates:
                unpaired += 1
                continue
            agreeing = {}  # per control method, its run whose other training options agree most with this run's
            for c in candidates:
                score = sum(c["_training"][k] == v for k, v in run["_training"].items())
                if c["_method"] not in agreeing or score > agreeing[c["_method"]][0]:
                    agreeing[c["_method"]] = (score, c)
            best = max((c for _, c in agreeing.values()), key=lambda c: (c["_net"], c["transfer_delta"]))
            available.append(run["_available"])
            reachable.append(run["_reachable"])
            diffs.append(run["transfer_delta"] - best["transfer_delta"])
            net_diffs.append(run["_net"] - best["_net"])  # exact: same student, same eval split
            students.append(run["student"])
            used.append(best["label"])
        if not diffs:
            continue
        paired = pd.DataFrame(
            {"student": students, "diff": diffs, "net": net_diffs, "available": available, "reachable": reachable}
        )
        by_student = paired.groupby("student")["net"].sum()  # a sum of exact counts: its sign is exact
        takeable = paired[paired["available"] > 0]
        per_student_taken = takeable.groupby("student")[["diff", "available"]].sum()
        within = paired[paired["reachable"] > 0]
        better, worse = int((by_student > 0).sum()), int((by_student < 0).sum())
        p_better, p_worse = mcnemar_p_values(better, worse)
        rows.append(
            {
                "label": label,
                "paired_runs": len(paired),
                "students": len(by_student),
                "beats_control_rate": 100.0 * float((paired["net"] > 0).mean()),
                "mean_delta_vs_control": float(paired["diff"].mean()),
                "students_better": better,
                "students_worse": worse,
                "p_better_than_control": p_better,
                "p_worse_than_control": p_worse,
                "control": ", ".join(dict.fromkeys(used)),
                "unpaired_runs": unpaired,
                "pooled_efficiency_vs_control": _share(takeable["diff"].sum(), takeable["available"].sum()),
                "student_median_efficiency_vs_control": float(
                    (100.0 * per_student_taken["diff"] / per_student_taken["available"]).median()
                )
                if len(per_student_taken)
                else float("nan"),
                "pooled_reachable_efficiency_vs_control": _share(within["diff"].sum(), within["reachable"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=["label", *CONTROL_COLUMNS])


def noted_runs(runs: pd.DataFrame) -> dict[str, int]:
    """Runs that changed nothing, by kind (`run_notes.NOTE_KINDS`): the WiSE guard kept the original
    student, or the student did not move; kinds without runs are left out."""
    from ..methods import METHODS

    counts = dict.fromkeys(NOTE_KINDS, 0)
    for method, final in zip(runs.get("method", ()), runs.get("final_json", ())):
        trains = METHODS[method].trains if method in METHODS else True
        kind = note_kind(json.loads(final) if isinstance(final, str) else {}, trains)
        if kind is not None:
            counts[kind] += 1
    return {kind: n for kind, n in counts.items() if n}


def _share(taken: float, available: float) -> float:
    """100 · taken / available, NaN when nothing is available."""
    return 100.0 * float(taken) / float(available) if available > 0 else float("nan")


def order_methods(labels: Sequence[str], preferred: Sequence[str] = ()) -> list[str]:
    """Method labels in the study's order (`preferred`), then any others in order of appearance."""
    seen = list(dict.fromkeys(labels))
    return [m for m in preferred if m in seen] + [m for m in seen if m not in preferred]


@dataclass
class StudySummary:
    """A study's aggregates (all pandas DataFrames; `method` is the label a method is reported under).

    Attributes:
        runs: every finished run (the store's `runs` table).
        by_method: `METRIC_COLUMNS` per method.
        by_bucket: per method x teacher-strength bucket (all five buckets, `runs` 0 where empty).
        by_family: per method x student family.
        per_student: per method x student: success rate, mean delta, family and parameter count.
        size_correlation: per method, Spearman correlation of student size and mean delta.
        vs_control: per method, its deltas against the `xe` control's, paired by student, seed and
            budget (`against_control`; empty without control runs).
        vs_self: the same against the stronger of the `UNLABELLED_CONTROLS` of the same data and budget
            (`self`: self-distillation, the control of a method that uses no labels; `self+xe+wise`: the
            same plus fine-tuning on the calib labels), when the study has such runs.
        methods: the method labels, in the study's order.
    """

    runs: pd.DataFrame
    by_method: pd.DataFrame
    by_bucket: pd.DataFrame
    by_family: pd.DataFrame
    per_student: pd.DataFrame
    size_correlation: pd.DataFrame
    methods: list[str]
    vs_control: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    vs_self: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    failures: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))
    planned: int | None = None

    def failed_counts(self, method: str | None = None) -> dict[str, int]:
        """Failed runs (not finished since) by kind (`diverged`, `corrupt-checkpoint`, `error`), of one
        method or of all."""
        part = self.failures if method is None else self.failures[self.failures["label"] == method]
        return {str(k): int(v) for k, v in part["kind"].value_counts().items()}

    def status_line(self) -> str:
        """`24 of 30 planned runs finished; 6 failed (4 diverged, 2 error)`."""
        planned = f" of {self.planned} planned" if self.planned else ""
        line = f"{len(self.runs)}{planned} runs finished"
        counts = self.failed_counts()
        if counts:
            line += f"; {sum(counts.values())} failed ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})"
        notes = noted_runs(self.runs)
        if notes:
            line += "; changed nothing: " + ", ".join(f"{n} {kind}" for kind, n in notes.items())
        return line

    def require_runs(self, study_dir: str | Path) -> None:
        """Raise when there is nothing to summarise.

        Raises:
            RunFailed: no finished run (the message says how many were planned and why runs failed).
        """
        if len(self.runs):
            return
        first = ""
        if len(self.failures):
            first = f"; first failure: {str(self.failures['error'].iloc[0]).splitlines()[0]}"
        raise RunFailed(f"no finished runs in {study_dir}: {self.status_line()}{first}")

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per method: its metrics, plus `by_bucket` and `by_family` lists, its paired comparison
        with the control (`vs_control`) and its failed runs by kind (`failed`), JSON-ready."""
        records = []
        for _, row in self.by_method.iterrows():
            method = row["method"]
            record = _record(row)
            record["by_bucket"] = [
                _record(r, drop=("method",)) for _, r in self.by_bucket[self.by_bucket["method"] == method].iterrows()
            ]
            record["by_family"] = [
                _record(r, drop=("method",)) for _, r in self.by_family[self.by_family["method"] == method].iterrows()
            ]
            control = self.vs_control[self.vs_control["method"] == method] if len(self.vs_control) else []
            record["vs_control"] = _record(control.iloc[0], drop=("method",)) if len(control) else None
            own = self.vs_self[self.vs_self["method"] == method] if len(self.vs_self) else []
            record["vs_self"] = _record(own.iloc[0], drop=("method",)) if len(own) else None
            record["failed"] = self.failed_counts(method)
            records.append(record)
        finished = {r["method"] for r in records}
        for method in dict.fromkeys(self.failures["label"].dropna()):  # all its runs failed: still reported
            if method not in finished:
                records.append({"method": method, "runs": 0, "failed": self.failed_counts(method)})
        return records

    def to_json(self) -> str:
        return json.dumps(self.to_records(), indent=2)


def _record(row: pd.Series, drop: Sequence[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in drop:
            continue
        if isinstance(value, (np.integer,)):
            value = int(value)
        elif isinstance(value, (np.floating, float)):
            value = None if math.isnan(value) else float(value)
        elif isinstance(value, np.bool_):
            value = bool(value)
        out[str(key)] = value
    return out


def against_own_controls(runs: pd.DataFrame) -> pd.DataFrame:
    """`against_control` with `UNLABELLED_CONTROLS`, except for a method whose preset names its own controls
    (`MethodPreset.controls`, e.g. `pl+ens+xetrain+wise`: `self+xetrain+wise`, which spends the same train
    labels): its runs are paired with the stronger of those."""
    from ..methods import METHODS  # the registry, with the presets a study's plugins registered

    method_of = runs["method"] if "method" in runs.columns else runs["label"]
    declared = {m: METHODS[m].controls for m in dict.fromkeys(method_of) if m in METHODS and METHODS[m].controls}
    tables = [against_control(runs, UNLABELLED_CONTROLS)]
    if not declared:
        return tables[0]
    labels_of = {m: set(runs.loc[method_of == m, "label"]) for m in declared}
    tables[0] = tables[0][~tables[0]["label"].isin(set().union(*labels_of.values()))]
    for method, controls in declared.items():
        table = against_control(runs[method_of.isin({method, *controls})], controls)
        tables.append(table[table["label"].isin(labels_of[method])])
    return pd.concat([t for t in tables if len(t)], ignore_index=True) if any(len(t) for t in tables) else tables[0]


def summarize_runs(runs: pd.DataFrame, methods: Sequence[str] = ()) -> StudySummary:
    """Aggregate a runs table (see `aggregate`) into a `StudySummary`.

    Args:
        runs: the runs table.
        methods: preferred method order (the study's); other labels follow in order of appearance.
    """
    order = order_methods(list(runs["label"]) if len(runs) else [], methods)

    def ordered(table: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
        table = table.rename(columns={"label": "method"})
        if table.empty:
            return table
        key = table["method"].map({m: i for i, m in enumerate(order)})
        sort_cols = ["_order", *extra]
        return (
            table.assign(_order=key).sort_values(sort_cols, kind="stable").drop(columns="_order").reset_index(drop=True)
        )

    by_method = ordered(aggregate(runs, ["label"]))
    bucketed = aggregate(runs, ["label", "bucket"])
    full = pd.MultiIndex.from_product([order, list(BUCKETS)], names=["label", "bucket"])
    bucketed = bucketed.set_index(["label", "bucket"]).reindex(full).reset_index()
    bucketed["runs"] = bucketed["runs"].fillna(0).astype(int)
    bucketed["students"] = bucketed["students"].fillna(0).astype(int)
    bucketed = bucketed.assign(_bucket=bucketed["bucket"].map({b: i for i, b in enumerate(BUCKETS)}))
    by_bucket = ordered(bucketed, ["_bucket"]).drop(columns="_bucket")
    by_family = ordered(
        aggregate(runs, ["label", "student_family"]).rename(columns={"student_family": "family"}), ["family"]
    )
    students = ordered(per_student(runs) if len(runs) else pd.DataFrame(columns=["label"]), ["student_params"])
    return StudySummary(
        runs,
        by_method,
        by_bucket,
        by_family,
        students,
        ordered(size_correlation(runs)) if len(runs) else pd.DataFrame(),
        order,
        ordered(against_control(runs)) if len(runs) else pd.DataFrame(),
        ordered(against_own_controls(runs)) if len(runs) else pd.DataFrame(),
    )


def summarize(study_dir: str | Path) -> StudySummary:
    """Aggregate the finished runs of a study directory.

    Raises:
        AnyteachError: `study_dir` holds no study store.
    """
    with StudyStore(study_dir, create=False) as store:
        runs = store.runs()
        spec = store.meta("spec")
        failures = store.failures()
        planned = store.planned()
    methods = [m["label"] for m in json.loads(spec)["methods"]] if spec else []
    summary = summarize_runs(with_ceilings(runs, read_ceilings(study_dir)), methods)
    if "kind" not in failures.columns:  # a store of an older anyteach, read without changing it
        failures = failures.assign(kind="error", label=None)
    summary.failures = failures.reindex(columns=FAILURE_COLUMNS)
    summary.planned = planned or None
    return summary


__all__ = [
    "BUDGET_OPTIONS",
    "against_own_controls",
    "data_and_budget",
    "CONTROL_COLUMNS",
    "CONTROL_METHOD",
    "FAILURE_COLUMNS",
    "METRIC_COLUMNS",
    "SELF_CONTROL",
    "UNLABELLED_CONTROLS",
    "SIGNIFICANCE",
    "StudySummary",
    "against_control",
    "aggregate",
    "net_change",
    "order_methods",
    "per_student",
    "size_correlation",
    "summarize",
    "summarize_runs",
]
