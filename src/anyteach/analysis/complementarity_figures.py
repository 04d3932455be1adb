"""Figures of complementary knowledge, as PNG files drawn with matplotlib (Agg).

What they show: docs/concepts/complementary-knowledge.md.

- `plot_complementary_knowledge`: complementary knowledge vs accuracy difference (teacher minus
  student) for every ordered pair of a zoo, with the minimum marked (paper Fig. 1).
- `plot_per_class_flips`: per-class positive-flip histograms of one student for a weaker, an equal
  and a stronger teacher (paper Fig. 2a); `plot_pair_per_class` the same for a single pair.
- `plot_entropy`: entropy of each pair's per-class flip distribution against the uniform
  ln(#classes) (paper Fig. 2b).
`zoo_figures` / `pair_figures` write the whole set into a directory. Every file is written
atomically. These functions only draw what `anyteach.complementarity` computed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import AnyteachError
from ..core.plotting import pyplot, save_figure
from ..models.references import display_name
from .complementarity import PairAnalysis, ZooAnalysis

_MAX_LABELLED_CLASSES = 30  # above this, per-class plots show ranks instead of class names


# ---------------------------------------------------------------------------------------------
# Fig. 1


def plot_complementary_knowledge(zoo: ZooAnalysis, path: str | Path) -> Path:
    """Complementary knowledge (positive flips student->teacher, % of samples) against the accuracy
    difference (teacher minus student, percentage points) of every ordered pair; the minimum is marked.

    Raises:
        AnyteachError: fewer than two models.
    """
    if zoo.num_models < 2:
        raise AnyteachError("the complementary-knowledge figure needs at least two models")
    plt = pyplot()
    off = zoo.off_diagonal()
    s, t = np.nonzero(off)
    x, y = zoo.accuracy_difference[s, t], zoo.positive_flips[s, t]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    points = ax.scatter(
        x, y, c=zoo.accuracy[s], cmap="viridis", s=28, alpha=0.85, edgecolors="none", label=f"ordered pair ({len(x)})"
    )
    bar = fig.colorbar(points, ax=ax)
    bar.set_label("student accuracy (%)")
    student, teacher, value = zoo.minimum()
    i, j = zoo.index(student), zoo.index(teacher)
    ax.scatter(
        [zoo.accuracy_difference[i, j]],
        [value],
        marker="*",
        s=260,
        color="crimson",
        edgecolors="black",
        linewidths=0.6,
        zorder=5,
        label=f"minimum: {value:.2f}%",
    )
    ax.annotate(
        f"teacher {display_name(teacher)} → student {display_name(student)}\n{value:.2f}% of samples",
        (zoo.accuracy_difference[i, j], value),
        xytext=(0.04, 0.42),
        textcoords="axes fraction",
        fontsize=9,
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "crimson", "alpha": 0.9},
        arrowprops={"arrowstyle": "->", "color": "crimson"},
    )
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("accuracy difference: teacher − student (percentage points)")
    ax.set_ylabel("complementary knowledge: positive flips (% of samples)")
    ax.set_title(
        f"Complementary knowledge of every teacher for every student ({zoo.num_models} models, "
        f"{zoo.num_samples:,} samples)",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Fig. 2a


def choose_teachers(zoo: ZooAnalysis, student: str | int) -> dict[str, str]:
    """A weaker, an equal and a stronger teacher of a student.

    Weaker: the least accurate other model; stronger: the most accurate; equal: the other model with
    the accuracy closest to the student's. Returns `{"weaker": name, "equal": name, "stronger": name}`
    (the same model may fill two roles in a small zoo).
    """
    s = zoo.index(student)
    others = [m for m in range(zoo.num_models) if m != s]
    if not others:
        raise AnyteachError("choosing teachers needs at least two models")
    acc = zoo.accuracy
    return {
        "weaker": zoo.models[min(others, key=lambda m: acc[m])],
        "equal": zoo.models[min(others, key=lambda m: abs(acc[m] - acc[s]))],
        "stronger": zoo.models[max(others, key=lambda m: acc[m])],
    }


def default_student(zoo: ZooAnalysis) -> str:
    """The median-accuracy model: it has both weaker and stronger teachers."""
    order = np.argsort(zoo.accuracy, kind="stable")
    return zoo.models[int(order[len(order) // 2])]


def _draw_per_class(ax, pair: PairAnalysis, title: str, color: str) -> None:
    counts = pair.per_class_flips
    total = int(counts.sum())
    order = np.argsort(-counts, kind="stable")
    ranks = np.arange(len(counts))
    ax.bar(
        ranks,
        counts[order],
        color=color,
        width=0.85 if len(counts) <= 200 else 1.0,
        label="positive flips of the class",
    )
    if total:
        ax.axhline(total / len(counts), color="black", ls="--", lw=1, label="uniform over classes")
    top = pair.top_p.get(50.0)
    if top is not None and top.k:
        ax.axvspan(-0.5, top.k - 0.5, color="orange", alpha=0.18, zorder=0, label=f"top-50% classes (k={top.k})")
    if len(counts) <= _MAX_LABELLED_CLASSES:
        ax.set_xticks(ranks)
        ax.set_xticklabels([pair.class_names[c] for c in order], rotation=60, ha="right", fontsize=8)
        ax.set_xlabel("true class (most flips first)")
    else:
        ax.set_xlabel("class rank (most flips first)")
    ax.set_ylabel("positive flips (samples)")
    ax.set_title(
        f"{title}\nCK {pair.positive_flips:.2f}%, entropy {pair.entropy:.2f} / "
        f"ln {len(counts)} = {pair.uniform_entropy:.2f}",
        fontsize=9,
    )
    ax.grid(axis="y", alpha=0.3)


def plot_per_class_flips(
    zoo: ZooAnalysis, path: str | Path, student: str | int | None = None, teachers: dict[str, str] | None = None
) -> Path:
    """Per-class positive-flip histograms of one student for a weaker, an equal and a stronger teacher.

    Args:
        zoo: an analysis with per-class counts.
        path: PNG file to write.
        student: the student (default: the median-accuracy model, `default_student`).
        teachers: `{role: teacher}` to draw (default: `choose_teachers`).

    Raises:
        AnyteachError: unknown model, analysis without per-class counts.
    """
    plt = pyplot()
    student = zoo.models[zoo.index(student)] if student is not None else default_student(zoo)
    teachers = teachers or choose_teachers(zoo, student)
    pairs = {role: zoo.pair(student, teacher) for role, teacher in teachers.items()}
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs), 4.4), sharey=True, squeeze=False)
    colors = {"weaker": "tab:blue", "equal": "tab:green", "stronger": "tab:red"}
    s_acc = zoo.accuracy[zoo.index(student)]
    for ax, (role, pair) in zip(axes[0], pairs.items()):
        title = (
            f"{role} teacher {display_name(pair.teacher)} ({pair.teacher_acc:.1f}%, {pair.accuracy_difference:+.1f} pp)"
        )
        _draw_per_class(ax, pair, title, colors.get(role, "tab:purple"))
    for ax in axes[0][1:]:
        ax.set_ylabel("")
    axes[0][0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Per-class complementary knowledge for student {display_name(student)} ({s_acc:.1f}%)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pair_per_class(pair: PairAnalysis, path: str | Path) -> Path:
    """Per-class positive-flip histogram of one teacher for one student."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    _draw_per_class(
        ax,
        pair,
        f"teacher {display_name(pair.teacher)} ({pair.teacher_acc:.1f}%) → student "
        f"{display_name(pair.student)} ({pair.student_acc:.1f}%)",
        "tab:blue",
    )
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Fig. 2b


def plot_entropy(zoo: ZooAnalysis, path: str | Path) -> Path:
    """Entropy of every pair's per-class flip distribution against the uniform ln(#classes).

    x: complementary knowledge (% of samples); y: entropy (nats); the dashed line is the entropy of
    flips spread evenly over all classes. Points below the line: flips concentrated in some classes.

    Raises:
        AnyteachError: fewer than two models or no per-class entropies.
    """
    if zoo.num_models < 2 or np.isnan(zoo.entropy).all():
        raise AnyteachError("the entropy figure needs at least two models and per-class counts")
    plt = pyplot()
    s, t = np.nonzero(zoo.off_diagonal())
    fig, ax = plt.subplots(figsize=(7.5, 5))
    points = ax.scatter(
        zoo.positive_flips[s, t],
        zoo.entropy[s, t],
        c=zoo.accuracy_difference[s, t],
        cmap="coolwarm",
        s=28,
        alpha=0.85,
        edgecolors="none",
        label="ordered pair",
    )
    bar = fig.colorbar(points, ax=ax)
    bar.set_label("accuracy difference: teacher − student (pp)")
    ax.axhline(
        zoo.uniform_entropy,
        color="black",
        ls="--",
        lw=1.2,
        label=f"uniform: ln {zoo.num_classes} = {zoo.uniform_entropy:.2f}",
    )
    ratio = np.median(zoo.entropy[s, t] / zoo.uniform_entropy)
    ax.set_xlabel("complementary knowledge: positive flips (% of samples)")
    ax.set_ylabel("entropy of the per-class flip distribution (nats)")
    lowest = float(np.min(zoo.entropy[s, t]))
    ax.set_ylim(max(0.0, lowest - 0.25 * (zoo.uniform_entropy - lowest) - 0.1), zoo.uniform_entropy * 1.05)
    ax.set_title(f"Concentration of complementary knowledge (median entropy = {ratio:.0%} of uniform)", fontsize=10)
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Sets of figures


def zoo_figures(zoo: ZooAnalysis, directory: str | Path, student: str | None = None) -> list[Path]:
    """Write Fig. 1, Fig. 2a and Fig. 2b for a zoo into `directory`; returns the paths."""
    directory = Path(directory)
    paths = [plot_complementary_knowledge(zoo, directory / "complementary_knowledge.png")]
    if zoo.per_class_flips is not None:
        paths.append(plot_per_class_flips(zoo, directory / "per_class_flips.png", student=student))
        paths.append(plot_entropy(zoo, directory / "entropy.png"))
    return paths


def pair_figures(pair: PairAnalysis, directory: str | Path) -> list[Path]:
    """Write the per-class flip histogram of one pair into `directory`; returns the paths."""
    return [plot_pair_per_class(pair, Path(directory) / "per_class_flips.png")]


__all__: Sequence[str] = [
    "choose_teachers",
    "default_student",
    "pair_figures",
    "plot_complementary_knowledge",
    "plot_entropy",
    "plot_pair_per_class",
    "plot_per_class_flips",
    "zoo_figures",
]
