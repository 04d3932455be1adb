"""What a finished study says about choosing teachers: forecasts checked, re-fitted, and explained.

Every run of a method is paired with its student's no-teacher control (`xe` where the study has one of
the same data and budget, else `self`, as `aggregate.against_control` pairs them) and gets its Δ beyond
the control, as a float (pp) and as an exact count of eval samples (`aggregate.net_change`), so that a
sign is decided on counts. On top of that: `fit_from_study` re-fits the teacher forecaster
(`forecast.fit_forecast`) on a user's study; `ranking_quality` scores any ranking of teachers against
the realised gains (Spearman ρ over runs, per-student regret of the top-1 choice); `recommended_vs_random`
compares the realised gains of recommended pairs with a random draw of the same size; and
`property_correlations` is the paper's model-property analysis (Fig. 5): the rank correlation of the Δ
beyond the control with each property of the student and the teacher. `teacher_section` adds all of
it to a study report.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..analysis.forecast import DEFAULT_SIGNALS, Forecaster, fit_forecast, pair_signals
from ..core.errors import AnyteachError
from ..core.options import TRAINING_OPTIONS
from .aggregate import BUDGET_OPTIONS, CONTROL_METHOD, SELF_CONTROL, SIGNIFICANCE, net_change

CONTROLS = (CONTROL_METHOD, SELF_CONTROL)
"""The no-teacher controls, in the order a run is paired with them."""

PROPERTIES: dict[str, str] = {
    "student_acc": "student accuracy",
    "teacher_acc": "teacher accuracy",
    "student_params": "student size",
    "teacher_params": "teacher size",
    "same_family": "same family",
    "student_ece": "student calibration error",
    "teacher_ece": "teacher calibration error",
    "accuracy_difference": "teacher − student accuracy",
    "complementary_knowledge": "complementary knowledge",
    "available_gain": "available gain",
}
"""The model properties of the "what makes a good teacher and student" analysis."""

_Z = statistics.NormalDist().inv_cdf(1 - SIGNIFICANCE / 2)  # 1.96: a two-sided test at SIGNIFICANCE


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than 3 pairs or a constant."""
    frame = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)}).dropna()
    if len(frame) < 3:
        return float("nan")
    rx, ry = frame["x"].rank(), frame["y"].rank()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def resolvable(rho: float, n: int) -> bool:
    """Whether |ρ| over `n` runs is beyond what chance gives at the study's significance level
    (two-sided: |ρ|·√(n−1) above the normal quantile, 1.96 at `SIGNIFICANCE`)."""
    return bool(n > 3 and math.isfinite(rho) and abs(rho) * math.sqrt(n - 1) > _Z)


def _training(options: Any) -> tuple:
    given = json.loads(options) if isinstance(options, str) and options else {}
    return tuple(given.get(k, TRAINING_OPTIONS[k].default) for k in BUDGET_OPTIONS)


def beyond_control(runs: pd.DataFrame) -> pd.DataFrame:
    """Each teacher run with its Δ beyond its student's control of the same seed, data and budget.

    Returns:
        The teacher runs that have a control, with `control` (its label), `delta_beyond` (pp) and
        `net_beyond` (eval samples gained minus lost, beyond the control's: exact).
    """
    if runs.empty:
        return runs.assign(control=[], delta_beyond=[], net_beyond=[])
    r = runs.copy()
    method = r["method"] if "method" in r.columns else r["label"]
    r["_key"] = list(
        zip(
            r["student"],
            r["seed"] if "seed" in r.columns else [0] * len(r),
            r["data"] if "data" in r.columns else [""] * len(r),
            [_training(o) for o in (r["options"] if "options" in r.columns else [None] * len(r))],
        )
    )
    r["_net"] = net_change(r)
    controls: dict[tuple, pd.Series] = {}
    for name in reversed(CONTROLS):  # xe overrides self where a run has both
        for _, c in r[method == name].iterrows():
            controls[c["_key"]] = c
    taught = r[~method.isin(CONTROLS) & r["teacher"].fillna("").astype(bool)]
    rows = []
    for _, run in taught.iterrows():
        control = controls.get(run["_key"])
        if control is None:
            continue
        rows.append(
            {
                **run.drop(["_key", "_net"]).to_dict(),
                "control": control["label"],
                "delta_beyond": float(run["transfer_delta"]) - float(control["transfer_delta"]),
                "net_beyond": float(run["_net"]) - float(control["_net"]),
            }
        )
    return pd.DataFrame(rows)


def with_signals(paired: pd.DataFrame, data: Any) -> pd.DataFrame:
    """`paired` runs joined with the no-training signals of their pairs on `data`'s calib split."""
    if paired.empty:
        return paired
    students = list(dict.fromkeys(paired["student"]))
    teachers = list(dict.fromkeys(paired["teacher"]))
    signals = pair_signals(students, list(dict.fromkeys([*students, *teachers])), data)
    keep = [c for c in signals.columns if c not in paired.columns or c in ("student", "teacher")]
    return paired.merge(signals[keep], on=["student", "teacher"], how="left")


def study_runs(study_dir: str | Path) -> pd.DataFrame:
    """The finished runs of a study directory (the current definition's)."""
    from .aggregate import summarize

    return summarize(study_dir).runs


def fit_from_study(
    study_dir: str | Path,
    data: Any,
    *,
    methods: Sequence[str] | None = None,
    use: Sequence[str] | None = None,
    base: Forecaster | None = None,
) -> Forecaster:
    """A forecaster re-fitted on a finished study: one `MethodForecast` per method with a control.

    Args:
        study_dir: the study directory.
        data: a dataset with a calib split where the study's models are measured (the signals).
        methods: the study labels to fit (default: every method paired with a control).
        use: the signals of the fit (default: per method the signals of `base`'s forecast of it, or of its
            underlying method's, else `forecast.DEFAULT_SIGNALS`).
        base: forecasts kept for methods the study does not have (default: none).

    Raises:
        AnyteachError: no finished run with a control, too few runs for a method, no calib split.
    """
    paired = beyond_control(study_runs(study_dir))
    if paired.empty:
        raise AnyteachError(
            f"study {str(study_dir)!r} has no teacher run paired with a no-teacher control "
            f"({' or '.join(CONTROLS)}) of the same data and budget: nothing to fit on"
        )
    return refit(with_signals(paired, data), Path(study_dir).name, methods=methods, use=use, base=base)


def forecast_key(forecaster: Forecaster, label: str, runs: pd.DataFrame) -> str | None:
    """The forecast of `forecaster` that speaks for runs of study label `label`: the label's own, else its
    method's (`pl+ens+wise.best` runs `pl+ens+wise`), else None."""
    if label in forecaster.methods:
        return label
    method = str(runs["method"].iloc[0]) if "method" in runs.columns and len(runs) else None
    return method if method in forecaster.methods else None


def refit(
    frame: pd.DataFrame,
    name: str,
    *,
    methods: Sequence[str] | None = None,
    use: Sequence[str] | None = None,
    base: Forecaster | None = None,
) -> Forecaster:
    """A forecaster fitted on runs paired with their controls and joined with their signals (`fit_from_study`).

    Raises:
        AnyteachError: a method without runs, or too few runs for its signals.
    """
    fitted = dict(base.methods) if base is not None else {}
    for label in methods or list(dict.fromkeys(frame["label"])):
        part = frame[frame["label"] == label]
        if part.empty:
            raise AnyteachError(f"study {name!r} has no run of {label!r} with a control")
        known = forecast_key(base, label, part) if base is not None else None
        signals = use if use is not None else (base.methods[known].signals if base and known else DEFAULT_SIGNALS)
        fitted[label] = fit_forecast(
            part, part["delta_beyond"], method=label, control=str(part["control"].iloc[0]), use=signals, fitted_on=name
        )
    return Forecaster(fitted, f"fitted on {name}")


# ---------------------------------------------------------------------------------------------
# How good is a ranking


def ranking_quality(frame: pd.DataFrame, score: str, realised: str = "delta_beyond") -> dict[str, Any]:
    """How well `score` ranks teachers, against the realised Δ beyond the control.

    Returns:
        `rho` (Spearman over all runs), `rho_within` (mean over students of the per-student ρ),
        `regret` (mean over students of best realised Δ − realised Δ of the top-1 `score` teacher, pp;
        a tie at the top counts as a random pick among the tied), `top1_hits` (students whose top-1 is
        their best), `students`, `runs`, and `top1_better`
        / `top1_worse`: students whose top-1 teacher beats / falls behind the control in exact counts.
    """
    regrets, within, better, worse = [], [], 0, 0
    hits = 0.0
    for _, part in frame.groupby("student", sort=False):
        tied = part[part[score] == part[score].max()]  # a tie at the top is a random pick among the tied
        top = tied.iloc[0]
        regrets.append(float(part[realised].max() - tied[realised].mean()))
        hits += float((tied[realised] == part[realised].max()).mean())
        within.append(spearman(part[score], part[realised]))
        if "net_beyond" in part.columns:
            better += int(top["net_beyond"] > 0)
            worse += int(top["net_beyond"] < 0)
    return {
        "rho": spearman(frame[score], frame[realised]),
        "rho_within": float(np.nanmean(within)) if within else float("nan"),
        "regret": float(np.mean(regrets)) if regrets else float("nan"),
        "top1_hits": hits,
        "students": len(regrets),
        "runs": len(frame),
        "top1_better": better,
        "top1_worse": worse,
    }


def top_k_gain(frame: pd.DataFrame, score: str, k: int, realised: str = "delta_beyond") -> dict[str, Any]:
    """Realised gain of each student's k best-`score` teachers against a random draw of k of its teachers.

    The random draw's expected mean is the mean over all its teachers, so no draw is needed when
    every teacher was run. Returns the mean Δ beyond the control of the recommended runs and of all
    runs (pp), and students whose recommended runs beat their all-teacher mean in exact counts.
    """
    chosen, mean_all, better, worse = [], [], 0, 0
    for _, part in frame.groupby("student", sort=False):
        top = part.nlargest(k, score)
        chosen.append(float(top[realised].mean()))
        mean_all.append(float(part[realised].mean()))
        if "net_beyond" in part.columns:  # compare sums of counts on a common scale: k·Σall vs n·Σtop
            a, b = len(part) * float(top["net_beyond"].sum()), k * float(part["net_beyond"].sum())
            better, worse = better + int(a > b), worse + int(a < b)
    return {
        "k": k,
        "recommended": float(np.mean(chosen)),
        "random": float(np.mean(mean_all)),
        "students_better": better,
        "students_worse": worse,
        "students": len(chosen),
    }


def recommended_vs_random(
    frame: pd.DataFrame, recommended: set[tuple[str, str]], drawn: set[tuple[str, str]]
) -> pd.DataFrame:
    """Realised Δ beyond the control of the recommended pairs and of a random draw of the same size.

    Args:
        frame: `beyond_control` runs.
        recommended, drawn: (student, teacher) pairs of each arm (a pair may be in both).

    Returns:
        One row per method and arm: runs, mean Δ beyond the control (pp), runs better / worse than
        the control (exact counts).
    """
    rows = []
    keys = list(zip(frame["student"], frame["teacher"])) if len(frame) else []
    for label, part_index in frame.groupby("label", sort=False).groups.items() if len(frame) else []:
        for arm, pairs in (("recommended", recommended), ("random draw", drawn)):
            mask = [keys[frame.index.get_loc(i)] in pairs for i in part_index]
            part = frame.loc[part_index][mask]
            if part.empty:
                continue
            rows.append(
                {
                    "method": label,
                    "pairs": arm,
                    "runs": len(part),
                    "mean Δ beyond control (pp)": f"{float(part['delta_beyond'].mean()):+.2f}",
                    "better / worse than control": f"{int((part['net_beyond'] > 0).sum())} / "
                    f"{int((part['net_beyond'] < 0).sum())}",
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# What makes a good teacher and student


def property_correlations(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method, Spearman ρ of the Δ beyond the control against each model property (`PROPERTIES`).

    Returns:
        One row per method and property: `rho`, `runs`, and `resolved` (|ρ| beyond chance at
        `SIGNIFICANCE` over runs, over students for a student's own property; runs of one student share
        its control, so this is lenient).
    """
    f = frame.copy()
    if "student_family" in f.columns and "teacher_family" in f.columns:
        f["same_family"] = (f["student_family"] == f["teacher_family"]).astype(float)
    rows = []
    for label, part in f.groupby("label", sort=False):
        for column, name in PROPERTIES.items():
            if column not in part.columns:
                continue
            values = pd.to_numeric(part[column], errors="coerce")
            n = int(values.notna().sum())
            rho = spearman(values, part["delta_beyond"])
            # a student's property is one value per student: chance is judged on students, not runs
            independent = int(part.loc[values.notna(), "student"].nunique()) if column.startswith("student_") else n
            rows.append(
                {"method": label, "property": name, "rho": rho, "runs": n, "resolved": resolvable(rho, independent)}
            )
    return pd.DataFrame(rows, columns=["method", "property", "rho", "runs", "resolved"])


def property_figure(table: pd.DataFrame, path: str | Path) -> Path | None:
    """Grouped bars: ρ of the Δ beyond the control with each property, one colour per method."""
    from ..core.plotting import pyplot, save_figure

    if table.empty:
        return None
    plt = pyplot()
    methods = list(dict.fromkeys(table["method"]))
    props = list(dict.fromkeys(table["property"]))
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(props) * max(len(methods), 1) + 1.5))
    from matplotlib.patches import Patch

    height = 0.8 / len(methods)
    colors = plt.get_cmap("tab10")
    for i, method in enumerate(methods):
        part = table[table["method"] == method].set_index("property").reindex(props)
        y = np.arange(len(props)) + i * height
        bars = ax.barh(y, part["rho"].fillna(0), height, color=colors(i % 10))
        for bar, ok in zip(bars, part["resolved"].fillna(False)):
            bar.set_alpha(1.0 if ok else 0.35)
    handles = [Patch(color=colors(i % 10), label=m) for i, m in enumerate(methods)]
    ax.set_yticks(np.arange(len(props)) + 0.4 - height / 2, props)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(f"Spearman ρ with the Δ beyond the control (faded: within chance, p ≥ {SIGNIFICANCE:g})")
    ax.invert_yaxis()
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    return save_figure(fig, path)


def property_words(table: pd.DataFrame) -> list[str]:
    """One sentence per method: the properties that go with a larger gain, or that it is too small to tell."""
    out = []
    for method, part in table.groupby("method", sort=False):
        strong = part[part["resolved"]].sort_values("rho", key=lambda s: -s.abs())
        runs = int(part["runs"].max()) if len(part) else 0
        if strong.empty:
            out.append(
                f"`{method}` ({runs} runs): no property's rank correlation with the gain beyond the control "
                "is beyond chance; the study is too small to tell what makes a good pair for it."
            )
        else:
            out.append(
                f"`{method}` ({runs} runs): "
                + ", ".join(f"{r.property} ρ = {r.rho:+.2f}" for r in strong.itertuples())
                + f" (beyond chance at p < {SIGNIFICANCE:g}; runs of one student share a control, so read it as a"
                " trend)."
            )
    return out


# ---------------------------------------------------------------------------------------------
# The report section


def signal_data(spec: Mapping[str, Any]) -> str | None:
    """The first of a study's datasets (its methods' own, then the study's) with a calib split."""
    from ..analysis.forecast import calib_data

    return calib_data([m.get("data") for m in spec.get("methods", []) if isinstance(m, Mapping)] + [spec.get("data")])


def teacher_section(report: Any, summary: Any, spec: Mapping[str, Any], fig_dir: Path) -> None:
    """Add "What makes a good teacher and student" (and the recommended pairs' check) to a study report.

    Properties come from the calib split of the study's data where it has one (no forward pass beyond
    the cached predictions), else from what the store holds (eval-split complementary knowledge and
    ensemble Δ; no calibration error).
    """
    if summary.runs.empty or "teacher" not in summary.runs.columns:
        return
    paired = beyond_control(summary.runs)
    if paired.empty:
        return
    data = signal_data(spec)
    frame = paired
    if data is not None:
        try:
            frame = with_signals(paired, data)
        except AnyteachError:  # models or data no longer at hand (a copied study): what the store holds
            data = None
    if data is None:
        frame = paired.assign(
            student_acc=paired["student_acc_before"],
            available_gain=paired["ensemble_delta"],
            accuracy_difference=paired["teacher_acc"] - paired["student_acc_before"],
        )
    report.heading("What makes a good teacher and student")
    where = (
        f"on the calib split of `{data}`"
        if data is not None
        else "on the eval split as stored (no calib split: calibration error not measured)"
    )
    table = property_correlations(frame)
    report.text(
        "Spearman rank correlation of each run's Δ beyond its student's no-teacher control with the "
        f"properties of the pair (measured without training, {where}), per method (paper Fig. 5)."
    )
    report.bullets(property_words(table))
    wide = table.assign(
        cell=[
            "– (undefined)" if pd.isna(r) else f"{r:+.2f}" + ("" if ok else " ·")
            for r, ok in zip(table["rho"], table["resolved"])
        ]
    )
    report.table(
        wide.pivot(index="property", columns="method", values="cell").reset_index(),
        f"ρ per property and method; · marks a ρ within chance (p ≥ {SIGNIFICANCE:g}); undefined: the property "
        "or the gain does not vary over these runs.",
    )
    report.figure(
        property_figure(table, fig_dir / "teacher_properties.png"),
        "Rank correlation of the Δ beyond the control with each property (faded: within chance).",
    )
    if data is not None:
        forecast_section(report, frame, fig_dir.parent.name, fig_dir.parent)
    pairs = spec.get("pairs") or {}
    if isinstance(pairs, Mapping) and pairs.get("recommended") and data is not None:
        from ..study.driver import describe_models, load_study_spec, recommended_choice

        study = load_study_spec(dict(spec))
        chosen = recommended_choice(study, describe_models(study.models, study.data))
        compared = recommended_vs_random(paired, set(chosen.recommended), set(chosen.drawn))
        report.heading("Recommended pairs against a random draw", 3)
        report.text(
            f"Each student ran its {pairs['recommended']} best-forecast teachers "
            f"(forecast for `{chosen.method}`) and a random draw of as many teachers "
            f"(seed {pairs.get('seed', 0)})."
        )
        report.table(
            compared,
            "Realised Δ beyond the control of each arm; better / worse: runs whose net sample "
            "count beats / falls behind the control's.",
        )


def forecast_section(report: Any, frame: pd.DataFrame, name: str, out_dir: Path) -> None:
    """How the shipped forecast ranked this study's runs, and the forecaster re-fitted on them, written to
    `out_dir/forecaster.json` (the shipped one's forecasts kept for methods the study lacks)."""
    from ..analysis.forecast import FORECASTER_FILE, shipped_forecaster

    shipped, rows, fitted = shipped_forecaster(), [], {}
    for label, part in frame.groupby("label", sort=False):
        row = {"method": f"`{label}`", "runs": len(part), "students": int(part["student"].nunique())}
        known = forecast_key(shipped, label, part)
        if known is not None:
            row["shipped forecast ρ"] = f"{spearman(shipped.get(known).predict(part), part['delta_beyond']):+.2f}"
        try:
            mine = fitted[label] = refit(part, name, base=shipped).get(label)
            row["re-fitted ρ (in-sample)"] = f"{spearman(mine.predict(part), part['delta_beyond']):+.2f}"
            row["re-fitted forecast"] = mine.sentence().split(": ", 1)[1]
        except AnyteachError as e:  # too few runs for its signals
            row["re-fitted forecast"] = f"not re-fitted: {e}"
        rows.append(row)
    if fitted:
        Forecaster({**shipped.methods, **fitted}, f"fitted on {name}").save(out_dir / FORECASTER_FILE)
    report.heading("The teacher forecast on this study", 3)
    report.text(
        "How well the shipped forecast (`anyteach teachers`) ranked this study's runs by their Δ beyond the "
        "control (Spearman ρ over runs), and the same form re-fitted on them. "
        + (
            f"The re-fitted forecaster is `{FORECASTER_FILE}` beside this report (the shipped forecasts kept for "
            f"other methods): `anyteach teachers STUDENT --zoo ... --data ... --forecaster {FORECASTER_FILE}` "
            "ranks with it."
            if fitted
            else ""
        )
    )
    columns = ["method", "runs", "students", "shipped forecast ρ", "re-fitted ρ (in-sample)", "re-fitted forecast"]
    report.table(
        pd.DataFrame(rows).reindex(columns=columns).fillna("–"),
        "ρ over this study's runs; in-sample: fitted on the same runs, so expect less on new ones.",
    )


__all__ = [
    "CONTROLS",
    "PROPERTIES",
    "beyond_control",
    "fit_from_study",
    "forecast_key",
    "forecast_section",
    "property_correlations",
    "property_figure",
    "property_words",
    "refit",
    "ranking_quality",
    "recommended_vs_random",
    "resolvable",
    "spearman",
    "study_runs",
    "teacher_section",
    "top_k_gain",
    "with_signals",
]
