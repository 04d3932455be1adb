"""The figures of a study report (matplotlib, PNG), each a function of a `StudySummary`.

They reproduce the paper's views of a transfer study: the success rate per method as a box plot
over students (paper Fig. 4a), the transfer delta per teacher-strength bucket, knowledge gain
against knowledge loss, the transfer delta against student size per family, the complementary
knowledge of each pair against its accuracy gap, and the mean transfer delta over the epochs. Every
figure labels its axes with units and has a legend; a method keeps one colour in every figure. A
function returns None (and writes nothing) when the study has no data for its figure.

The multi-teacher figures take finished runs instead (`anyteach.multi`): Δ, knowledge gain and loss
over the epochs of sequential runs, and the final Δ / gain / loss of several configurations side by
side (parallel, sequential, soup, single teachers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..analysis.metrics import BUCKETS
from ..core.plotting import pyplot, save_figure
from .aggregate import CONTROL_METHOD, StudySummary

FAMILY_MARKERS = {"cnn": "s", "transformer": "^", "mlp": "o", "rnn": "D"}


def method_colors(methods: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One colour per method (tab10, in the study's order)."""
    plt = pyplot()
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)
"""The 97.5% quantile of Student's t for 1..15 degrees of freedom (beyond them: 2.1 down to 1.96)."""


def t_quantile(df: int) -> float:
    """The two-sided 95% t quantile for `df` degrees of freedom (1.96 in the limit)."""
    if df < 1:
        return float("nan")
    return T_975[df - 1] if df <= len(T_975) else 1.96 + 2.4 / df


def beyond_control_intervals(paired: pd.DataFrame, families: Mapping[str, str]) -> pd.DataFrame:
    """Per method and student group: the mean over students of each student's mean Δ beyond its control,
    with a 95% t-interval over students (none with one student).

    Args:
        paired: paired runs (`label`, `student`, `delta_beyond`), as `document.paired_runs` gives them.
        families: student reference -> family.

    Returns:
        Columns `method, group, students, mean, low, high`; group "all students" first, then each family.
    """
    rows = []
    if paired.empty:
        return pd.DataFrame(columns=["method", "group", "students", "mean", "low", "high"])
    per_student = paired.groupby(["label", "student"], sort=False)["delta_beyond"].mean().reset_index()
    per_student["group"] = per_student["student"].map(lambda s: families.get(s, "unknown"))
    for method, part in per_student.groupby("label", sort=False):
        groups = [("all students", part)] + [(g, p) for g, p in part.groupby("group", sort=True)]
        if part["group"].nunique() == 1:
            groups = groups[:1]  # one family: its interval is the whole method's
        for group, values in groups:
            x = values["delta_beyond"].to_numpy(float)
            half = t_quantile(len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
            rows.append(
                {
                    "method": method,
                    "group": group,
                    "students": len(x),
                    "mean": float(x.mean()),
                    "low": float(x.mean() - half),
                    "high": float(x.mean() + half),
                }
            )
    return pd.DataFrame(rows)


def beyond_control(intervals: pd.DataFrame, controls: Mapping[str, str], path: Path) -> Path | None:
    """The report's opening figure: each method's Δ beyond its no-teacher control, the mean over students
    with a 95% interval, for all students and per student group (family).

    Args:
        intervals: `beyond_control_intervals`.
        controls: method -> the control it was paired with (shown beside its name).
    """
    if intervals.empty:
        return None
    plt = pyplot()
    methods = list(dict.fromkeys(intervals["method"]))
    groups = list(dict.fromkeys(intervals["group"]))
    cmap = plt.get_cmap("tab10")
    group_colors = {g: ("black" if g == "all students" else cmap(i % 10)) for i, g in enumerate(groups)}
    rows = len(intervals)
    fig, ax = plt.subplots(figsize=(7.6, min(1.2 + 0.32 * rows + 0.25 * len(methods), 6.2)))
    y, ticks, labels, seen = 0.0, [], [], set()
    for method in methods:
        part = intervals[intervals["method"] == method]
        start = y
        for r in part.itertuples():
            color = group_colors[r.group]
            bold = r.group == "all students"
            if not np.isnan(r.low):
                ax.hlines(y, r.low, r.high, color=color, linewidth=2.6 if bold else 1.6)
            ax.plot(
                r.mean,
                y,
                marker="D" if bold else FAMILY_MARKERS.get(str(r.group), "o"),
                color=color,
                markersize=7 if bold else 5,
                label=None if r.group in seen else f"{r.group}",
                linestyle="none",
            )
            seen.add(r.group)
            ax.annotate(
                f"n={r.students}",
                (1.0, y),
                xycoords=("axes fraction", "data"),
                xytext=(4, 0),
                textcoords="offset points",
                fontsize=7,
                va="center",
                color="dimgray",
            )
            y -= 1.0
        ticks.append((start + y + 1.0) / 2)
        labels.append(f"{method}\nvs {controls.get(method, 'control')}")
        y -= 0.6
    # the frame fits the means and the all-students intervals; a group of two or three students has a wide
    # t-interval, which is cut at the frame rather than squeezing every other row to a point
    main = intervals[intervals["group"] == "all students"]
    ends = np.concatenate([intervals["mean"].to_numpy(float), main[["low", "high"]].to_numpy(float).ravel(), [0.0]])
    low, high = float(np.nanmin(ends)), float(np.nanmax(ends))
    pad = max(0.15 * (high - low), 0.05)
    ax.set_xlim(low - pad, high + pad)
    ax.axvline(0, color="black", linewidth=1.0, linestyle="--")
    ax.set_yticks(ticks, labels, fontsize=9)
    ax.set_xlabel("Δ beyond the no-teacher control (pp): mean over students, 95% interval")
    ax.set_title("What the teacher added, per method and student group")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        title="students",
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=min(len(groups), 5),
        frameon=False,
    )
    return save_figure(fig, path)


def success_rate_boxplot(summary: StudySummary, path: Path, paper: Mapping[str, float] | None = None) -> Path | None:
    """Per method, a box plot over students of the per-student success rate (paper Fig. 4a).

    Args:
        summary: the study's aggregates.
        path: where to write the PNG.
        paper: method label -> the paper's median success rate (%), drawn as a marker.
    """
    students = summary.per_student
    if students.empty:
        return None
    plt = pyplot()
    methods = summary.methods
    colors = method_colors(methods)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(methods) + 2), 4.2))
    data = [students.loc[students["method"] == m, "success_rate"].to_numpy() for m in methods]
    box = ax.boxplot(
        data,
        positions=range(len(methods)),
        widths=0.55,
        patch_artist=True,
        showfliers=False,
        medianprops={"color": "black", "linewidth": 1.6},
    )
    for patch, m in zip(box["boxes"], methods):
        patch.set_facecolor((*colors[m][:3], 0.35))
        patch.set_edgecolor(colors[m])
    rng = np.random.default_rng(0)
    for i, (m, values) in enumerate(zip(methods, data)):
        jitter = rng.uniform(-0.15, 0.15, len(values))
        ax.scatter(i + jitter, values, s=14, color=colors[m], edgecolor="black", linewidth=0.3, zorder=3)
    if paper:
        xs = [i for i, m in enumerate(methods) if m in paper]
        if xs:
            ax.scatter(
                xs,
                [paper[methods[i]] for i in xs],
                marker="D",
                s=46,
                facecolor="white",
                edgecolor="crimson",
                linewidth=1.5,
                zorder=4,
                label="paper (ImageNet, median)",
            )
    ax.scatter([], [], s=14, color="grey", edgecolor="black", linewidth=0.3, label="one student")
    ax.set_xticks(range(len(methods)), methods, rotation=20 if len(methods) > 5 else 0)
    ax.set_xlabel("transfer method")
    ax.set_ylabel("success rate per student (%)\n(share of its teachers with Δ > 0)")
    ax.set_ylim(-5, 105)
    ax.axhline(50, color="grey", linewidth=0.6, linestyle=":")
    ax.set_title("Success rate per student (box: quartiles, line: median)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def delta_by_bucket(summary: StudySummary, path: Path) -> Path | None:
    """Mean transfer delta (± standard error over runs) per teacher-strength bucket, one bar per method."""
    runs = summary.runs.dropna(subset=["bucket"])
    if runs.empty:
        return None
    plt = pyplot()
    methods = [m for m in summary.methods if (runs["label"] == m).any()]
    colors = method_colors(summary.methods)
    stats = runs.groupby(["label", "bucket"])["transfer_delta"].agg(["mean", "sem", "size"])
    fig, ax = plt.subplots(figsize=(max(6.5, 1.5 * len(BUCKETS) + 0.25 * len(methods) * len(BUCKETS)), 4.4))
    width = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        xs, means, errs = [], [], []
        for i, b in enumerate(BUCKETS):
            if (m, b) in stats.index:
                row = stats.loc[(m, b)]
                xs.append(i - 0.4 + width * (j + 0.5))
                means.append(row["mean"])
                errs.append(0.0 if np.isnan(row["sem"]) else row["sem"])
        ax.bar(
            xs,
            means,
            width=width,
            yerr=errs,
            color=colors[m],
            edgecolor="black",
            linewidth=0.4,
            error_kw={"elinewidth": 0.8, "capsize": 2},
            label=m,
        )
    control = summary.runs[summary.runs["method"] == CONTROL_METHOD] if "method" in summary.runs else runs.iloc[:0]
    if len(control):  # the control has no teacher: show its Δ for the students of each bucket's pairs
        by_student = control.groupby("student")["transfer_delta"].mean()
        pairs = runs.drop_duplicates(["student", "teacher", "bucket"])
        level = pairs.assign(control=pairs["student"].map(by_student)).groupby("bucket")["control"].mean()
        label: str | None = f"{CONTROL_METHOD} control (no teacher), same students"
        for i, b in enumerate(BUCKETS):
            if b in level.index and not np.isnan(level[b]):
                ax.hlines(level[b], i - 0.42, i + 0.42, colors="black", linestyles="--", linewidth=1.2, label=label)
                label = None  # one legend entry
    counts = runs.groupby("bucket")[["student", "teacher"]].apply(lambda g: len(g.drop_duplicates()))
    ax.set_xticks(range(len(BUCKETS)), [f"{b}\n({int(counts.get(b, 0))} pairs)" for b in BUCKETS])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("teacher strength: acc(T) − acc(S0), buckets (−∞,−3], (−3,−1], (−1,1], (1,3], (3,∞) pp")
    ax.set_ylabel("mean transfer delta Δ (pp)\n± standard error over runs")
    ax.set_title("Transfer delta by teacher strength")
    if np.nanmax(np.abs(stats["mean"].to_numpy(float))) > 3:  # a few runs forget a lot: keep small bars readable
        ax.set_yscale("symlog", linthresh=1.0, linscale=2.0)
        from matplotlib.ticker import FixedLocator, FuncFormatter

        low, high = ax.get_ylim()
        ticks = [t for t in (-100, -30, -10, -3, -1, -0.5, 0, 0.5, 1, 3, 10, 30, 100) if low <= t <= high]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(FixedLocator([]))
        ax.set_title("Transfer delta by teacher strength (symlog axis: linear within ±1 pp)")
    ax.legend(title="method", fontsize=8, ncol=2 if len(methods) > 4 else 1, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def gain_vs_loss(summary: StudySummary, path: Path) -> Path | None:
    """Knowledge gain against knowledge loss, one point per run; above the diagonal Δ > 0."""
    runs = summary.runs
    if runs.empty:
        return None
    plt = pyplot()
    colors = method_colors(summary.methods)
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    for m in summary.methods:
        sel = runs[runs["label"] == m]
        ax.scatter(
            sel["knowledge_loss"],
            sel["knowledge_gain"],
            s=18,
            color=colors[m],
            alpha=0.8,
            edgecolor="black",
            linewidth=0.3,
            label=m,
        )
    values = np.concatenate([runs["knowledge_gain"].to_numpy(float), runs["knowledge_loss"].to_numpy(float)])
    top = float(max(np.nanmax(values), 0.1)) * 1.08
    # a few runs that forget a lot would squeeze everything else into a corner: symlog then
    outliers = top > 4 * max(float(np.nanquantile(values, 0.9)), 0.25)
    ax.plot(
        np.linspace(0, top, 200),
        np.linspace(0, top, 200),
        color="grey",
        linestyle="--",
        linewidth=0.8,
        label="Δ = 0 (gain = loss)",
    )
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    title = "Knowledge gain vs loss per run (above the line: Δ > 0)"
    if outliers:
        from matplotlib.ticker import FixedLocator, FormatStrFormatter

        ticks = [t for t in (0, 0.5, 1, 2, 5, 10, 20, 50, 100) if t <= top]
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("symlog", linthresh=1.0)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(FixedLocator(ticks))
            axis.set_major_formatter(FormatStrFormatter("%g"))
        title += "\nsymlog axes: linear below 1%, logarithmic above"
    ax.set_xlabel("knowledge loss: negative flips S0→S (% of eval samples)")
    ax.set_ylabel("knowledge gain: positive flips S0→S (% of eval samples)")
    ax.set_title(title)
    ax.legend(title="method", fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def delta_vs_available(summary: StudySummary, path: Path) -> Path | None:
    """Each run's Δ against the gain available to it (the student–teacher ensemble's Δ), per method.

    On the diagonal a run took all an ensemble of the two models would give; near zero it took
    nothing. A point far to the right and low says the knowledge was there and the method left it.
    """
    runs = summary.runs.dropna(subset=["ensemble_delta"]) if "ensemble_delta" in summary.runs else summary.runs[:0]
    if runs.empty:
        return None
    plt = pyplot()
    methods = [m for m in summary.methods if (runs["label"] == m).any()]
    colors = method_colors(summary.methods)
    fig, ax = plt.subplots(figsize=(6.2, 5.0))
    for m in methods:
        sel = runs[runs["label"] == m]
        ax.scatter(
            sel["ensemble_delta"],
            sel["transfer_delta"],
            s=18,
            color=colors[m],
            alpha=0.8,
            edgecolor="black",
            linewidth=0.3,
            label=m,
        )
    x = runs["ensemble_delta"].to_numpy(float)
    y = runs["transfer_delta"].to_numpy(float)
    low, high = float(min(np.nanmin(x), np.nanmin(y), 0.0)), float(max(np.nanmax(x), np.nanmax(y), 0.1))
    line = np.linspace(low, high, 200)
    ax.plot(line, line, color="grey", linestyle="--", linewidth=0.8, label="Δ = available (all taken)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axvline(0, color="black", linewidth=0.6, linestyle=":")
    if high - low > 8 * max(float(np.nanquantile(np.abs(np.concatenate([x, y])), 0.9)), 0.5):
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("available gain: Δ of the student–teacher ensemble (pp, no training)")
    ax.set_ylabel("transfer Δ of the student (pp)")
    ax.set_title("What each run took of what was there to take")
    ax.legend(title="method", fontsize=8, framealpha=0.9, loc="upper left")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def delta_vs_size(summary: StudySummary, path: Path) -> Path | None:
    """Per method (one panel each): each student's mean delta against its parameter count, by family."""
    students = summary.per_student.dropna(subset=["student_params"])
    if students.empty:
        return None
    plt = pyplot()
    methods = [m for m in summary.methods if (students["method"] == m).any()]
    cols = min(3, len(methods))
    rows = int(np.ceil(len(methods) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), sharex=True, sharey=True, squeeze=False)
    families = sorted(students["student_family"].dropna().unique())
    fam_colors = {
        f: c for f, c in zip(families, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"))
    }
    for ax, m in zip(axes.flat, methods):
        sel = students[students["method"] == m]
        for f in families:
            part = sel[sel["student_family"] == f]
            ax.scatter(
                part["student_params"],
                part["mean_delta"],
                s=30,
                marker=FAMILY_MARKERS.get(f, "o"),
                color=fam_colors[f],
                edgecolor="black",
                linewidth=0.4,
                label=f,
            )
        ax.axhline(0, color="black", linewidth=0.7)
        ax.set_xscale("log")
        ax.set_title(m)
        ax.grid(alpha=0.3)
    spare = list(axes.flat[len(methods) :])
    for ax in spare:
        ax.set_visible(False)
    for i, ax in enumerate(axes.flat[: len(methods)]):
        if i + cols >= len(methods):  # nothing drawn below it: it carries the x axis
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("student parameters (log scale)")
    for ax in axes[:, 0]:
        ax.set_ylabel("mean Δ of the student (pp)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if spare:
        spare[0].set_visible(True)
        spare[0].axis("off")
        spare[0].legend(handles, labels, title="student family", loc="center", framealpha=0.9)
    else:
        fig.legend(
            handles,
            labels,
            title="student family",
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=len(labels),
            fontsize=8,
            framealpha=0.9,
        )
    fig.suptitle("Transfer delta vs student size, per method", y=1.01)
    fig.tight_layout()
    return save_figure(fig, path)


def complementarity_vs_gap(summary: StudySummary, path: Path) -> Path | None:
    """Complementary knowledge (positive flips S0→T) of each pair against acc(T) − acc(S0)."""
    runs = summary.runs.dropna(subset=["complementary_knowledge", "teacher_strength"])
    pairs = runs.drop_duplicates(["student", "teacher"])
    if pairs.empty:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    families = sorted(pairs["teacher_family"].dropna().unique())
    for i, f in enumerate(families):
        part = pairs[pairs["teacher_family"] == f]
        ax.scatter(
            part["teacher_strength"],
            part["complementary_knowledge"],
            s=26,
            marker=FAMILY_MARKERS.get(f, "o"),
            color=pyplot().get_cmap("Dark2")(i),
            edgecolor="black",
            linewidth=0.4,
            label=f"teacher: {f}",
        )
    for edge in (-3, -1, 1, 3):
        ax.axvline(edge, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlabel("accuracy gap acc(T) − acc(S0) (pp); dotted: bucket edges")
    ax.set_ylabel("complementary knowledge:\npositive flips S0→T (% of eval samples)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Complementary knowledge vs accuracy gap ({len(pairs)} pairs)")
    ax.legend(fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def delta_over_epochs(history: pd.DataFrame, methods: Sequence[str], path: Path) -> Path | None:
    """Mean transfer delta over the epochs of transfer, per method (epoch 0: before transfer)."""
    if history.empty or "transfer_delta" not in history or history["transfer_delta"].isna().all():
        return None
    plt = pyplot()
    colors = method_colors(methods)
    curves = history.groupby(["label", "epoch"])["transfer_delta"].mean()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for m in methods:
        if m in curves.index.get_level_values(0):
            curve = curves.loc[m]
            ax.plot(curve.index, curve.to_numpy(), marker="o", markersize=3, color=colors[m], label=m)
    ax.axhline(0, color="black", linewidth=0.7)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch of transfer (0: before)")
    ax.set_ylabel("mean transfer delta Δ (pp)")
    ax.set_title("Transfer delta over training, mean over runs")
    ax.legend(title="method", fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Multi-teacher runs


def multi_teacher_over_epochs(results: Mapping[str, object], path: Path) -> Path | None:
    """Δ, knowledge gain and knowledge loss against the original student over the epochs of every
    sequential run in `results` (label -> `MultiTransferResult`), stages laid end to end, one line per
    run (curriculum) with its stage boundaries dotted. None when `results` holds no sequential run."""
    from ..training.multi_teacher import MultiTransferResult, metrics_over_epochs

    runs = {
        label: r
        for label, r in results.items()
        if isinstance(r, MultiTransferResult) and r.mode == "sequential" and r.stages
    }
    if not runs:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    colors = method_colors(list(runs))
    panels = (
        ("transfer_delta", "transfer delta Δ (pp)"),
        ("knowledge_gain", "knowledge gain (% of eval samples)"),
        ("knowledge_loss", "knowledge loss (% of eval samples)"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(14.0, 4.2))
    ends: set[int] = set()
    for label, result in runs.items():
        rows = pd.DataFrame(metrics_over_epochs(result))
        ends.update(int(e) for e in rows.groupby("stage")["epoch"].max().to_numpy()[:-1])
        order = " → ".join(row["teacher"] for row in result.stage_metrics) or " → ".join(result.config["order"])
        for ax, (key, _) in zip(axes, panels):
            ax.plot(rows["epoch"], rows[key], marker="o", markersize=3, color=colors[label], label=f"{label}: {order}")
    for ax, (_, ylabel) in zip(axes, panels):
        for end in sorted(ends):
            ax.axvline(end, color="grey", linestyle=":", linewidth=1.0)
        ax.axhline(0, color="black", linewidth=0.7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch of transfer")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].set_title("transfer delta vs the original student")
    axes[1].set_title("knowledge gain (positive flips S0→S)")
    axes[2].set_title("knowledge loss (negative flips S0→S)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        title="sequential run: teacher order",
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(labels), 2),
        fontsize=8,
        framealpha=0.9,
    )
    fig.suptitle(
        "Sequential multi-teacher transfer over its stages, against the original student S0 "
        "(epoch 0: S0; stages end to end, dotted: stage ends)",
        y=1.02,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def multi_teacher_comparison(results: Mapping[str, Any], path: Path) -> Path | None:
    """Final Δ, knowledge gain and knowledge loss (against the original student) of every run in
    `results` (label -> `MultiTransferResult` or single-teacher `TransferResult`), as grouped bars in
    the given order; the single-teacher run with the highest Δ is marked best."""
    from ..training.transfer import TransferResult

    finished = {label: r for label, r in results.items() if r.final is not None}
    if not finished:
        return None
    plt = pyplot()
    singles = [label for label, r in finished.items() if isinstance(r, TransferResult)]
    best = max(singles, key=lambda label: finished[label].final["transfer_delta"]) if singles else None
    labels = list(finished)
    bars = (
        ("transfer_delta", "Δ (pp)", "tab:blue"),
        ("knowledge_gain", "knowledge gain (%)", "tab:green"),
        ("knowledge_loss", "knowledge loss (%)", "tab:red"),
    )
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(labels) + 1.5), 4.8))
    width = 0.26
    xs = np.arange(len(labels))
    for j, (key, name, color) in enumerate(bars):
        values = [finished[label].final[key] for label in labels]
        drawn = ax.bar(
            xs + (j - 1) * width, values, width=width, color=color, edgecolor="black", linewidth=0.4, label=name
        )
        if key == "transfer_delta":
            ax.bar_label(drawn, labels=[f"{v:+.2f}" for v in values], fontsize=7, padding=2)
    ticks = []
    for label in labels:
        final = finished[label].final
        mark = "\n(best single)" if label == best else ""
        ticks.append(f"{label}{mark}\np gain {final['p_gain']:.1g}\np loss {final['p_loss']:.1g}")
    ax.set_xticks(xs, ticks, fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("Δ: percentage points; gain, loss: % of eval samples")
    ax.set_xlabel("run (p: McNemar p-values of the gain and of the loss against S0)")
    ax.set_title("Multi-teacher transfer vs single teachers: final student against the original student")
    ax.legend(fontsize=8, framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def multi_teacher_figures(results: Mapping[str, object], directory: str | Path) -> list[Path]:
    """Write `multi_teacher_epochs.png` (sequential runs over their stages) and
    `multi_teacher_comparison.png` (final Δ / gain / loss per run) into `directory`; returns those
    written (a figure without data is skipped)."""
    directory = Path(directory)
    written = [
        multi_teacher_over_epochs(results, directory / "multi_teacher_epochs.png"),
        multi_teacher_comparison(results, directory / "multi_teacher_comparison.png"),
    ]
    return [path for path in written if path is not None]


__all__ = [
    "complementarity_vs_gap",
    "delta_by_bucket",
    "delta_over_epochs",
    "delta_vs_size",
    "gain_vs_loss",
    "method_colors",
    "multi_teacher_comparison",
    "multi_teacher_figures",
    "multi_teacher_over_epochs",
    "success_rate_boxplot",
]
