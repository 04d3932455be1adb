"""Do the MNIST-1D demo's conclusions hold on another zoo? One check per conclusion, from the numbers.

The MNIST-1D demo (README, "What the demo finds") concluded: plain KL makes students forget from
weaker teachers; data partitioning (DP) is safe; on a zoo at its plateau DP's gains do not clear
the no-teacher control; the teaching preset `pl+ens+wise` beats its `self` control; it takes a
larger share of the available gain than DP; the students sit at their plateau; every pair has
complementary knowledge. `conclusion_checks` tests each of them on a study of another zoo (the
glyphs image zoo) and says, conclusion by conclusion, whether it holds; `crosscheck_section` adds
them to a study report (`report.write_report(..., sections=[...])`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from .aggregate import SIGNIFICANCE, StudySummary

WEAKER = ("much weaker", "weaker")


@dataclass(frozen=True)
class Conclusion:
    """One conclusion of the MNIST-1D demo and the numbers it rests on there."""

    key: str
    claim: str
    mnist1d: str


MNIST1D_CONCLUSIONS: list[Conclusion] = [
    Conclusion(
        "complementary",
        "every pair of models has complementary knowledge (paper: at least ~2% of samples)",
        "every ordered pair of the 11-model zoo",
    ),
    Conclusion(
        "plateau",
        "the students sit at their plateau: the `xe` control (the same budget on the labels, "
        "no teacher) moves them by less than 0.3 pp",
        "xe mean Δ +0.04 pp",
    ),
    Conclusion(
        "kl_forgets",
        "plain KL makes students forget from weaker teachers",
        "kl mean Δ −5.3 pp from much weaker teachers; 50% of all kl runs significantly harmed",
    ),
    Conclusion(
        "dp_safe",
        "KL+DP is safe: it significantly harms (almost) no run, far fewer than KL",
        "kl+dp 0% of runs significantly harmed, kl 50%",
    ),
    Conclusion(
        "dp_small",
        "KL+DP's gains on a zoo at its plateau are small and not significantly beyond the `xe` control",
        "kl+dp +0.05 pp, +0.03 pp beyond xe (7/10 students, p = 0.17)",
    ),
    Conclusion(
        "teaching_beats_control",
        "the teaching preset `pl+ens+wise` beats its `self` control (the same unlabelled data and budget, no teacher)",
        "+0.53 pp beyond self, 10/10 students, p = 0.001",
    ),
    Conclusion(
        "efficiency",
        "`pl+ens+wise` takes a larger share of the available gain (a student–teacher ensemble's Δ) than `kl+dp`",
        "13% against 1%",
    ),
]


def _runs(summary: StudySummary, method: str) -> pd.DataFrame:
    runs = summary.runs
    return runs[runs["label"] == method] if len(runs) else runs


def _paired(summary: StudySummary, method: str) -> dict[str, Any] | None:
    """The method's row against its control (`xe`, or `self` for a method without labels)."""
    for table in (summary.vs_control, summary.vs_self):
        if len(table) and method in set(table["method"]):
            return table[table["method"] == method].iloc[0].to_dict()
    return None


def _method_row(summary: StudySummary, method: str) -> dict[str, Any] | None:
    table = summary.by_method
    if table.empty or method not in set(table["method"]):
        return None
    return table[table["method"] == method].iloc[0].to_dict()


def _harm_rate(runs: pd.DataFrame) -> float:
    return 100.0 * float((runs["p_loss"] < SIGNIFICANCE).mean())


def conclusion_checks(summary: StudySummary, positive_flips: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Each MNIST-1D conclusion checked on this study: `key`, `claim`, `mnist1d`, `here` (this
    study's numbers), `holds` (True / False, None where the study lacks the runs to say).

    Args:
        summary: the study's aggregates.
        positive_flips: the zoo's (N, N) positive-flip matrix in percent (`ZooAnalysis.positive_flips`),
            for the complementarity conclusion.
    """
    out = []
    for c in MNIST1D_CONCLUSIONS:
        here, holds = "not measured in this study", None
        if c.key == "complementary" and positive_flips is not None and len(positive_flips) > 1:
            off = positive_flips[~np.eye(len(positive_flips), dtype=bool)]
            here = (
                f"positive flips over {len(off)} ordered pairs: min {off.min():.1f}%, median "
                f"{np.median(off):.1f}%, max {off.max():.1f}% of eval samples"
            )
            holds = bool(off.min() > 0)
        elif c.key == "plateau" and len(_runs(summary, "xe")):
            delta = float(_runs(summary, "xe")["transfer_delta"].mean())
            here, holds = f"xe mean Δ {delta:+.2f} pp", abs(delta) < 0.3
        elif c.key == "kl_forgets" and len(_runs(summary, "kl")):
            kl = _runs(summary, "kl")
            weak = kl[kl["bucket"].isin(WEAKER)]
            if len(weak):
                delta = float(weak["transfer_delta"].mean())
                here = (
                    f"kl mean Δ {delta:+.2f} pp from weaker teachers ({len(weak)} runs, "
                    f"{_harm_rate(weak):.0f}% of them significantly harmed); {_harm_rate(kl):.0f}% of all kl "
                    "runs significantly harmed"
                )
                holds = delta < 0 and _harm_rate(weak) >= 25
        elif c.key == "dp_safe" and len(_runs(summary, "kl+dp")) and len(_runs(summary, "kl")):
            dp, kl = _harm_rate(_runs(summary, "kl+dp")), _harm_rate(_runs(summary, "kl"))
            here, holds = f"kl+dp {dp:.0f}% of runs significantly harmed, kl {kl:.0f}%", dp <= 10 and dp + 10 <= kl
        elif c.key == "dp_small" and (p := _paired(summary, "kl+dp")) is not None:
            delta = float(_runs(summary, "kl+dp")["transfer_delta"].mean())
            here = (
                f"kl+dp {delta:+.2f} pp, {p['mean_delta_vs_control']:+.2f} pp beyond {p['control']} "
                f"({int(p['students_better'])}/{int(p['students'])} students, p = {p['p_better_than_control']:.3g})"
            )
            holds = bool(p["p_better_than_control"] >= SIGNIFICANCE)
        elif c.key == "teaching_beats_control" and (p := _paired(summary, "pl+ens+wise")) is not None:
            here = (
                f"{p['mean_delta_vs_control']:+.2f} pp beyond {p['control']}, {int(p['students_better'])}/"
                f"{int(p['students'])} students, p = {p['p_better_than_control']:.3g}"
            )
            holds = bool(p["p_better_than_control"] < SIGNIFICANCE and p["mean_delta_vs_control"] > 0)
        elif c.key == "efficiency":
            rows = {m: _method_row(summary, m) for m in ("pl+ens+wise", "kl+dp")}
            eff = {m: r["pooled_efficiency"] for m, r in rows.items() if r is not None and "pooled_efficiency" in r}
            if len(eff) == 2 and not any(pd.isna(v) for v in eff.values()):
                here = f"{eff['pl+ens+wise']:.0f}% against {eff['kl+dp']:.0f}%"
                holds = eff["pl+ens+wise"] > eff["kl+dp"]
        out.append({"key": c.key, "claim": c.claim, "mnist1d": c.mnist1d, "here": here, "holds": holds})
    return out


def beating_controls(summary: StudySummary) -> list[str]:
    """Methods whose students gain significantly more than from their control (sign test, p < `SIGNIFICANCE`)."""
    names = []
    for table in (summary.vs_control, summary.vs_self):
        for r in table.to_dict("records") if len(table) else []:
            if r["p_better_than_control"] < SIGNIFICANCE and r["method"] not in names:
                names.append(r["method"])
    return names


def check_sentences(checks: list[dict[str, Any]]) -> list[str]:
    """One plain sentence per check."""
    word = {True: "**holds**", False: "**does not hold**", None: "cannot be checked"}
    return [f"MNIST-1D: {c['claim']} ({c['mnist1d']}). Here: {c['here']}: {word[c['holds']]}." for c in checks]


def crosscheck_section(
    positive_flips: np.ndarray | None = None, reference: str = "MNIST-1D"
) -> Callable[[Any, StudySummary], None]:
    """A report section (for `write_report(..., sections=[...])`): the conclusions, one by one."""

    def section(report, summary: StudySummary) -> None:
        checks = conclusion_checks(summary, positive_flips)
        held = sum(c["holds"] is True for c in checks)
        decided = sum(c["holds"] is not None for c in checks)
        report.heading(f"Do the {reference} conclusions hold here?")
        report.text(
            f"{held} of {decided} checked conclusions of the {reference} demo hold on this study. "
            f"Methods beating their control here (sign test over students, p < {SIGNIFICANCE:g}): "
            + (", ".join(f"`{m}`" for m in beating_controls(summary)) or "none")
            + "."
        )
        report.bullets(check_sentences(checks))

    return section


__all__ = [
    "MNIST1D_CONCLUSIONS",
    "Conclusion",
    "beating_controls",
    "check_sentences",
    "conclusion_checks",
    "crosscheck_section",
]
