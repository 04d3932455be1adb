"""What a study shows, in words: the report's opening verdict and its findings, one claim at a time.

Each finding is a small named claim function (`CLAIMS`) that reads a study's aggregates and returns
its sentences; every threshold it judges by is a named constant of this module, and every number
the code already holds (the paper's table `PAPER_RESULTS`, the significance level `SIGNIFICANCE`,
the control names) is imported, not copied. Every verdict states its sample size (students, runs)
next to it, and below `MIN_STUDENTS` students a claim gives no verdict: it says "too few students
to tell (n=3)". `verdict` is the report's three opening sentences: what teaches, what is safe, and
how much of the available gain was taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pandas as pd

from .aggregate import CONTROL_METHOD, SELF_CONTROL, SIGNIFICANCE, StudySummary, data_and_budget, net_change

MIN_STUDENTS = 5
"""A claim judged on fewer students than this gives no verdict ("too few students to tell (n=3)")."""
AGREEMENT_POINTS = 15.0
"""A median success rate within this many points of the paper's counts as agreeing with it."""
ABOUT_ZERO = 0.1
"""A mean delta within ±this many points counts as "about zero" when comparing signs."""
CONTROL_PLATEAU = 0.3
"""The `xe` control's mean delta within ±this many points: the zoo is at its plateau."""
CONTROL_MOVED_RATE = 10.0
"""A control that significantly moves (gain or harm) at most this % of its runs leaves the students where they were."""
SAFE_HARM_RATE = 10.0
"""A method that significantly harms at most this % of its runs is safe."""
SAFER_MARGIN = 10.0
"""DP is "much safer" than KL when its significant-harm rate is lower by at least this many points."""
MAJORITY = 50.0
"""A method "gains" from a group of teachers when it succeeds in more than this % of those runs."""
TREND_RHO = 0.2
"""A rank correlation beyond ±this is a trend."""
WEAKER, STRONGER = ("much weaker", "weaker"), ("stronger", "much stronger")
"""The teacher-strength buckets (`metrics.BUCKETS`) of weaker and of stronger teachers."""


@dataclass(frozen=True)
class PaperResult:
    """A headline row of the paper (docs/concepts/transfer-without-forgetting.md): median success rate (a
    range when the paper gives one) and the mean transfer delta per student, on ImageNet."""

    name: str
    success_low: float
    success_high: float
    mean_delta: float
    note: str = ""

    @property
    def success_text(self) -> str:
        if self.success_low == self.success_high:
            return f"{self.success_low:g}%"
        return f"{self.success_low:g}–{self.success_high:g}%"

    @property
    def success_mid(self) -> float:
        return (self.success_low + self.success_high) / 2


PAPER_RESULTS: dict[str, PaperResult] = {
    "kl": PaperResult("KL-Dist", 32.5, 32.5, -0.30),
    "xekl": PaperResult("XE-KL-Dist", 42.5, 42.5, -0.02),
    "cd": PaperResult("CD", 0.0, 0.0, -1.90),
    "crd": PaperResult("CRD", 0.0, 0.0, -0.82),
    "xekl+mcl": PaperResult("XE-KL + MCL", 80.0, 85.0, 0.0, "≈0; diverged for 3 students"),
    "kl+dp": PaperResult("KL + DP", 92.5, 92.5, 0.32),
    "kl+dp-u": PaperResult("KL + DP unsupervised", 82.5, 82.5, -0.06),
}
"""The paper's headline table by engine method name."""

PAPER_ORDER = ["kl+dp", "kl+dp-u", "xekl+mcl", "xekl", "kl", "crd", "cd"]
"""The paper's methods from the highest median success rate to the lowest."""


# ---------------------------------------------------------------------------------------------
# What the claims read


def engine_methods(summary: StudySummary) -> dict[str, str]:
    """Method label -> engine method name, from the runs."""
    runs = summary.runs
    if runs.empty:
        return {}
    return dict(runs.drop_duplicates("label")[["label", "method"]].itertuples(index=False, name=None))


def paired_control(summary: StudySummary, method: str) -> pd.Series | None:
    """A method's comparison with its control of the same data and budget: the `xe` control where
    the study has one for it, else the `self` control (the control of a method that uses no labels)."""
    for table in (summary.vs_control, summary.vs_self):
        if len(table) and method in set(table["method"]):
            return table[table["method"] == method].iloc[0]
    return None


@dataclass
class Evidence:
    """A study's aggregates as the claims read them.

    Attributes:
        summary: the aggregates.
        engine: method label -> engine method name.
        by_name: engine method name -> its `by_method` row (the paper's methods are found by it).
        control: the `xe` control's `by_method` row, if the study ran it.
    """

    summary: StudySummary
    engine: dict[str, str]
    by_name: dict[str, pd.Series]
    control: pd.Series | None

    @classmethod
    def of(cls, summary: StudySummary) -> Evidence:
        engine = engine_methods(summary)
        by_name: dict[str, pd.Series] = {}
        for _, r in summary.by_method.iterrows():  # a method run under two labels: its first, the study's own
            by_name.setdefault(engine.get(r["method"], r["method"]), r)
        return cls(summary, engine, by_name, by_name.get(CONTROL_METHOD))

    def rows(self):
        return (r for _, r in self.summary.by_method.iterrows())

    def by_strength(self, name: str) -> tuple[pd.Series, dict[str, Any], dict[str, Any]] | None:
        """The paper's method `name` with its pooled numbers from weaker and from stronger teachers
        (None unless the study ran it with both)."""
        row = self.by_name.get(name)
        if row is None:
            return None
        weak, strong = self.buckets(row["method"], WEAKER), self.buckets(row["method"], STRONGER)
        return (row, weak, strong) if weak and strong else None

    def buckets(self, method: str, buckets: Sequence[str]) -> dict[str, Any] | None:
        """Pooled numbers of a method over a group of teacher-strength buckets (None without runs there)."""
        runs = self.summary.runs
        runs = runs[(runs["label"] == method) & runs["bucket"].isin(list(buckets))]
        if runs.empty:
            return None
        return {
            "runs": len(runs),
            "students": runs["student"].nunique(),
            "success": 100.0 * float((net_change(runs) > 0).mean()),
            "delta": float(runs["transfer_delta"].mean()),
            "harm": 100.0 * float((runs["p_loss"] < SIGNIFICANCE).mean()),
            "gain": 100.0 * float((runs["p_gain"] < SIGNIFICANCE).mean()),
        }


def sample(students: int, runs: int | None = None) -> str:
    """`n=6 students, 30 runs`: the sample size written next to a verdict."""
    return f"n={students} student{'s' if students != 1 else ''}" + (f", {runs} runs" if runs is not None else "")


def too_few(students: int) -> str | None:
    """The no-verdict wording when `students` is below `MIN_STUDENTS`, else None."""
    return f"too few students to tell (n={students})" if students < MIN_STUDENTS else None


def _no_verdict(students: int) -> str | None:
    """`too_few(students)` as the end of a sentence."""
    text = too_few(students)
    return text + "." if text else None


def _sign_word(delta: float) -> str:
    if delta > ABOUT_ZERO:
        return "positive"
    if delta < -ABOUT_ZERO:
        return "negative"
    return "about zero"


def _verdict_word(paired: Any) -> str:
    """How a method compares with its paired control, by the one-sided sign tests."""
    if paired["p_better_than_control"] < SIGNIFICANCE:
        return "does significantly better than"
    if paired["p_worse_than_control"] < SIGNIFICANCE:
        return "does significantly worse than"
    return "is not significantly different from"


# ---------------------------------------------------------------------------------------------
# The claims: each returns its sentences (none when the study has not the runs to check it)


def paper_success_rates(ev: Evidence) -> list[str]:
    """Per method with a paper counterpart: its median success rate and the sign of its mean delta."""
    out = []
    for r in ev.rows():
        paper = PAPER_RESULTS.get(ev.engine.get(r["method"], ""))
        if paper is None:
            continue
        ours, students = r["median_success_rate"], int(r["students"])
        low, high = paper.success_low - AGREEMENT_POINTS, paper.success_high + AGREEMENT_POINTS
        if too_few(students):
            verdict = f"{too_few(students)} against the paper's {paper.success_text}"
        elif low <= ours <= high:
            verdict = f"agrees with the paper's {paper.success_text} (within {AGREEMENT_POINTS:g} points)"
        else:
            gap = ours - paper.success_high if ours > high else ours - paper.success_low
            verdict = (
                f"disagrees with the paper's {paper.success_text}: "
                f"{abs(gap):.1f} points {'higher' if gap > 0 else 'lower'}"
            )
        ours_sign, paper_sign = _sign_word(r["student_mean_delta"]), _sign_word(paper.mean_delta)
        sign = too_few(students) or ("the same sign" if ours_sign == paper_sign else "a different sign")
        out.append(
            f"**{r['method']}** ({paper.name}): median success rate {ours:.1f}% "
            f"({sample(students, int(r['runs']))}) {verdict}; its mean Δ per student is "
            f"{r['student_mean_delta']:+.2f} pp ({ours_sign}) against the paper's {paper.mean_delta:+.2f} pp "
            f"({paper_sign}): {sign}."
        )
    return out


def control_plateau(ev: Evidence) -> list[str]:
    """Whether extra training alone (the `xe` control) moves the students."""
    c = ev.control
    if c is None:
        return []
    moved = max(c["significant_gain_rate"], c["significant_harm_rate"])
    if few := too_few(int(c["students"])):
        verdict = few + " whether the students sit at their plateau."
    elif abs(c["mean_delta"]) <= ABOUT_ZERO and moved <= CONTROL_MOVED_RATE:
        verdict = "the students sit at their plateau: extra training alone does not move them."
    elif abs(c["mean_delta"]) <= CONTROL_PLATEAU:
        verdict = (
            f"within ±{CONTROL_PLATEAU:g} pp, yet extra training alone still moves some students "
            f"(significant gain in {c['significant_gain_rate']:.0f}%, harm in "
            f"{c['significant_harm_rate']:.0f}% of them): judge every method against the control, "
            "not against zero."
        )
    else:
        verdict = (
            f"extra training alone moves the students (beyond ±{CONTROL_PLATEAU:g} pp), so gains of the other "
            "methods are not just knowledge transfer: judge every method against the control, not against zero."
        )
    return [
        f"The **{c['method']}** control (the same training budget on the labels, no teacher) has a median "
        f"success rate of {c['median_success_rate']:.1f}% and a mean Δ of {c['mean_delta']:+.2f} pp "
        f"({sample(int(c['students']), int(c['runs']))}): {verdict}"
    ]


def _paired_sentence(method: str, c: Any, against: str, how: str) -> str:
    students = int(c["students"])
    word = too_few(students) or _verdict_word(c)
    if too_few(students):
        return (
            f"**{method}** against {against}: {word}; Δ {c['mean_delta_vs_control']:+.2f} pp beyond it on "
            f"average over {int(c['paired_runs'])} paired runs."
        )
    return (
        f"**{method}** {word} {against}, paired by student{how}: Δ {c['mean_delta_vs_control']:+.2f} pp beyond it "
        f"on average, larger in {c['beats_control_rate']:.0f}% of {int(c['paired_runs'])} runs; "
        f"{int(c['students_better'])} of {students} students better, {int(c['students_worse'])} worse "
        f"(one-sided sign test over students: p = {c['p_better_than_control']:.3g} for better, "
        f"{c['p_worse_than_control']:.3g} for worse; {sample(students, int(c['paired_runs']))})."
    )


def against_control(ev: Evidence) -> list[str]:
    """Each method against the `xe` control of its student, data and budget."""
    if ev.control is None or not len(ev.summary.vs_control):
        return []
    vs = ev.summary.vs_control.set_index("method")
    out = []
    for r in ev.rows():
        if r["method"] == ev.control["method"] or r["method"] not in vs.index:
            continue
        c = vs.loc[r["method"]]
        how = f" (`{c['control']}`: the same data and budget)" if c.get("control") else ""
        out.append(_paired_sentence(r["method"], c, "the control", how))
    return out


def against_self(ev: Evidence) -> list[str]:
    """A method that uses no labels (no `xe` pairing) against the `self` control."""
    vs_control = ev.summary.vs_control
    controlled = set(vs_control["method"]) if len(vs_control) else set()
    records = ev.summary.vs_self.to_dict("records") if len(ev.summary.vs_self) else []
    return [
        _paired_sentence(
            c["method"],
            c,
            f"the `{c['control'] or SELF_CONTROL}` control (the stronger per run of "
            "the no-teacher controls of the same data and budget: `self`, self-distillation, and "
            "`self+xe+wise`, which also fine-tunes on the calib labels, where the study ran it)",
            "",
        )
        for c in records
        if c["method"] not in controlled
    ]


def gain_taken(ev: Evidence) -> list[str]:
    """The share of the available gain (a student–teacher ensemble's Δ) each method took."""
    return [
        f"**{r['method']}** took {round(r['pooled_efficiency'])}% of the gain available to its runs (a "
        f"student–teacher ensemble gains {r['mean_ensemble_delta']:+.2f} pp over the student on average; median "
        f"efficiency {round(r['median_efficiency'])}% over the runs with something to take"
        f"{_efficiency_details(r, paired_control(ev.summary, r['method']))}; "
        f"{sample(int(r['students']), int(r['runs']))})."
        for r in ev.rows()
        if not pd.isna(r.get("pooled_efficiency", float("nan")))
    ]


def _efficiency_details(row: pd.Series, paired: pd.Series | None) -> str:
    """`; per student ..., beyond its control ..., of the reachable gain ...`: the parts that are known."""
    parts = []
    if pd.notna(row.get("student_median_efficiency", float("nan"))):
        parts.append(f"per student (median) {round(row['student_median_efficiency'])}%")
    if paired is not None and pd.notna(paired.get("pooled_efficiency_vs_control", float("nan"))):
        parts.append(
            f"beyond its `{paired['control']}` control {round(paired['pooled_efficiency_vs_control'])}% "
            f"pooled, {round(paired['student_median_efficiency_vs_control'])}% per student (median)"
        )
    if pd.notna(row.get("pooled_reachable_efficiency", float("nan"))):
        parts.append(
            f"of the gain reachable within the students' capacity ceilings "
            f"({row['mean_reachable_delta']:+.2f} pp on average) {round(row['pooled_reachable_efficiency'])}%"
        )
    return "; " + "; ".join(parts) if parts else ""


def kl_needs_stronger_teachers(ev: Evidence) -> list[str]:
    """Paper: plain KL helps only with clearly stronger teachers."""
    found = ev.by_strength("kl")
    if found is None:
        return []
    kl, weak, strong = found
    harms, helps = weak["delta"] < 0, strong["delta"] > 0
    verdict = _no_verdict(min(weak["students"], strong["students"])) or (
        "agrees."
        if harms and helps
        else "partly agrees: it harms from weaker teachers but does not help from stronger ones either."
        if harms
        else "disagrees: it does not harm from weaker teachers."
    )
    return [
        f"Paper: plain KL helps only with clearly stronger teachers. Here **{kl['method']}** has a mean Δ of "
        f"{weak['delta']:+.2f} pp from weaker teachers ({weak['harm']:.0f}% of those runs significantly harmed; "
        f"{sample(weak['students'], weak['runs'])}) and {strong['delta']:+.2f} pp from stronger ones "
        f"({sample(strong['students'], strong['runs'])}): {verdict}"
    ]


def dp_gains_both_ways(ev: Evidence) -> list[str]:
    """Paper: DP gains from weaker and from stronger teachers."""
    found = ev.by_strength("kl+dp")
    if found is None:
        return []
    dp, weak, strong = found
    both = weak["success"] > MAJORITY and strong["success"] > MAJORITY
    one = max(weak["success"], strong["success"]) > MAJORITY
    verdict = _no_verdict(min(weak["students"], strong["students"])) or (
        "agrees." if both else "partly agrees (gains from one side only)." if one else "disagrees."
    )
    return [
        f"Paper: DP gains from weaker *and* stronger teachers. Here **{dp['method']}** succeeds in "
        f"{weak['success']:.0f}% of the runs with weaker teachers (mean Δ {weak['delta']:+.2f} pp; "
        f"{sample(weak['students'], weak['runs'])}) and {strong['success']:.0f}% with stronger ones (mean Δ "
        f"{strong['delta']:+.2f} pp; {sample(strong['students'], strong['runs'])}): {verdict}"
    ]


def dp_is_safer(ev: Evidence) -> list[str]:
    """Paper: DP transfers without forgetting, KL does not."""
    dp, kl = ev.by_name.get("kl+dp"), ev.by_name.get("kl")
    if dp is None or kl is None:
        return []
    verdict = _no_verdict(int(min(dp["students"], kl["students"]))) or (
        "agrees (DP is much safer)."
        if dp["significant_harm_rate"] + SAFER_MARGIN <= kl["significant_harm_rate"]
        else "disagrees (DP is not clearly safer here)."
    )
    return [
        f"DP's point is transfer without forgetting: **{dp['method']}** significantly harms "
        f"{dp['significant_harm_rate']:.0f}% of its runs ({sample(int(dp['students']), int(dp['runs']))}), "
        f"**{kl['method']}** {kl['significant_harm_rate']:.0f}% ({sample(int(kl['students']), int(kl['runs']))}): "
        + verdict
    ]


def unsupervised_dp_close(ev: Evidence) -> list[str]:
    """Paper: unsupervised DP comes close to supervised DP."""
    dp, dpu = ev.by_name.get("kl+dp"), ev.by_name.get("kl+dp-u")
    if dp is None or dpu is None:
        return []
    diff = dpu["median_success_rate"] - dp["median_success_rate"]
    paper_dp, paper_dpu = PAPER_RESULTS["kl+dp"], PAPER_RESULTS["kl+dp-u"]
    paper_diff = paper_dpu.success_mid - paper_dp.success_mid
    verdict = _no_verdict(int(min(dp["students"], dpu["students"]))) or (
        "agrees." if abs(diff - paper_diff) <= AGREEMENT_POINTS else "disagrees."
    )
    return [
        f"Paper: unsupervised DP comes close to supervised DP ({paper_dpu.success_text} vs "
        f"{paper_dp.success_text}, {paper_diff:+.1f} points). Here **{dpu['method']}** reaches "
        f"{dpu['median_success_rate']:.1f}% against {dp['median_success_rate']:.1f}% ({diff:+.1f} points) and a "
        f"mean Δ of {dpu['mean_delta']:+.2f} pp against {dp['mean_delta']:+.2f} pp "
        f"({sample(int(min(dp['students'], dpu['students'])))}): {verdict}"
    ]


def mcl_safe_but_small(ev: Evidence) -> list[str]:
    """Paper: MCL is safe but gains little."""
    mcl, dp = ev.by_name.get("xekl+mcl"), ev.by_name.get("kl+dp")
    if mcl is None:
        return []
    safe = mcl["significant_harm_rate"] <= SAFE_HARM_RATE
    small = dp is None or mcl["mean_delta"] <= dp["mean_delta"]
    verdict = _no_verdict(int(mcl["students"])) or (
        "agrees." if safe and small else "disagrees." if not safe and not small else "partly agrees."
    )
    return [
        f"Paper: MCL is safe but gains little. Here **{mcl['method']}** significantly harms "
        f"{mcl['significant_harm_rate']:.0f}% of its runs, with a mean Δ of {mcl['mean_delta']:+.2f} pp"
        + (f" (DP: {dp['mean_delta']:+.2f} pp)" if dp is not None else "")
        + f" ({sample(int(mcl['students']), int(mcl['runs']))}): {verdict}"
    ]


def paper_ranking(ev: Evidence) -> list[str]:
    """The paper's methods ranked by median success rate, here and in the paper."""
    ranked = [ev.by_name[m] for m in PAPER_ORDER if m in ev.by_name]
    if len(ranked) < 3:
        return []
    ours = sorted(ranked, key=lambda r: -r["median_success_rate"])
    concordant = discordant = total = 0
    for i in range(len(ranked)):
        for j in range(i + 1, len(ranked)):
            a, b = ranked[i]["median_success_rate"], ranked[j]["median_success_rate"]
            concordant += a > b
            discordant += a < b
            total += 1
    students = int(min(r["students"] for r in ranked))
    few = too_few(students)
    tally = (few + "; " if few else "") + (
        f"{concordant} of {total} method pairs in the paper's order, {discordant} reversed, "
        f"{total - concordant - discordant} tied; {sample(students)}"
    )
    return [
        "Ranking by median success rate, paper: "
        + " > ".join(r["method"] for r in ranked)
        + "; this study: "
        + " > ".join(r["method"] for r in ours)
        + f" ({tally})."
    ]


def larger_students_receive_more(ev: Evidence) -> list[str]:
    """Paper: larger students receive more (rank correlation of size and mean delta under DP)."""
    dp, corr = ev.by_name.get("kl+dp"), ev.summary.size_correlation
    if dp is None or corr.empty:
        return []
    corr = corr.set_index("label" if "label" in corr else "method")
    if dp["method"] not in corr.index or pd.isna(corr.loc[dp["method"], "delta_size_spearman"]):
        return []
    rho, students = float(corr.loc[dp["method"], "delta_size_spearman"]), int(corr.loc[dp["method"], "students"])
    verdict = _no_verdict(students) or (
        "agrees." if rho > TREND_RHO else "disagrees." if rho < -TREND_RHO else "no clear trend."
    )
    return [
        f"Paper: larger students receive more. Here the rank correlation of student size and mean Δ under "
        f"**{dp['method']}** is {rho:+.2f} ({sample(students)}): {verdict}"
    ]


CLAIMS: list[Callable[[Evidence], list[str]]] = [
    paper_success_rates,
    control_plateau,
    against_control,
    gain_taken,
    against_self,
    kl_needs_stronger_teachers,
    dp_gains_both_ways,
    dp_is_safer,
    unsupervised_dp_close,
    mcl_safe_but_small,
    paper_ranking,
    larger_students_receive_more,
]
"""The report's findings, in the order they are written."""


def findings(summary: StudySummary) -> list[str]:
    """Plain-language sentences, generated from the numbers, on where the study agrees with the paper:
    the sentences of every claim in `CLAIMS`, each with its sample size."""
    if summary.by_method.empty:
        return ["The study has no finished runs yet."]
    ev = Evidence.of(summary)
    return [sentence for claim in CLAIMS for sentence in claim(ev)]


# ---------------------------------------------------------------------------------------------
# The opening verdict


def _listing(items: list[str]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def what_teaches(ev: Evidence) -> str:
    """Sentence 1: the methods that do significantly better than their paired no-teacher control."""
    controls = {CONTROL_METHOD, SELF_CONTROL}
    judged: list[tuple[str, pd.Series]] = []
    for r in ev.rows():
        paired = paired_control(ev.summary, r["method"]) if ev.engine.get(r["method"]) not in controls else None
        if paired is not None:
            judged.append((r["method"], paired))
    if not judged:
        return (
            "What teaches: no method was paired with a no-teacher control (`xe` or `self`), so this study cannot tell."
        )
    enough = [(m, c) for m, c in judged if not too_few(int(c["students"]))]
    if not enough:
        fewest = min(int(c["students"]) for _, c in judged)
        return f"What teaches: {too_few(fewest)} against the no-teacher controls."
    better = [
        f"**{m}** ({int(c['students_better'])} of {int(c['students'])} students better than `{c['control']}`, "
        f"p = {c['p_better_than_control']:.2g})"
        for m, c in enough
        if c["p_better_than_control"] < SIGNIFICANCE
    ]
    if better:
        return f"What teaches beyond the same training without a teacher: {_listing(better)}."
    n = min(int(c["students"]) for _, c in enough)
    return (
        f"What teaches: no method does significantly better than its no-teacher control (p < {SIGNIFICANCE:g}; "
        f"{sample(n)} or more per method)."
    )


def what_is_safe(ev: Evidence) -> str:
    """Sentence 2: the methods that significantly harm at most `SAFE_HARM_RATE`% of their runs."""
    rows = [r for r in ev.rows() if r["runs"] > 0]
    enough = [r for r in rows if not too_few(int(r["students"]))]
    if not enough:
        return f"What is safe: {too_few(min(int(r['students']) for r in rows))}." if rows else "What is safe: no runs."

    def cell(r):
        return f"**{r['method']}** ({r['significant_harm_rate']:.0f}% of {int(r['runs'])} runs)"

    safe = [cell(r) for r in enough if r["significant_harm_rate"] <= SAFE_HARM_RATE]
    unsafe = [cell(r) for r in enough if r["significant_harm_rate"] > SAFE_HARM_RATE]
    text = f"Safe (significant harm, p < {SIGNIFICANCE:g}, in at most {SAFE_HARM_RATE:g}% of runs): " + (
        _listing(safe) if safe else "no method"
    )
    return text + (f"; not safe: {_listing(unsafe)}." if unsafe else ".")


def gain_taken_summary(ev: Evidence) -> str:
    """Sentence 3: how much of the available gain (the student–teacher ensemble's Δ) the methods took."""
    rows = [r for r in ev.rows() if not pd.isna(r.get("pooled_efficiency", float("nan")))]
    if not rows:
        return "How much of the available gain was taken: not measured (no run has a teacher and an ensemble Δ)."
    rows.sort(key=lambda r: -r["pooled_efficiency"])
    budgets = data_and_budget(ev.summary.runs) if "label" in ev.summary.runs.columns else {}
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(budgets.get(r["method"], ""), []).append(
            f"**{r['method']}** {round(r['pooled_efficiency'])}% (of {r['mean_ensemble_delta']:+.2f} pp; "
            f"{sample(int(r['students']), int(r['runs']))})"
        )
    if len(groups) == 1:
        taken = "; ".join(next(iter(groups.values())))
        return f"Of the gain a student–teacher ensemble offers, the methods took: {taken}."
    return (
        "Of the gain a student–teacher ensemble offers, the methods took (ranked only among methods of the same "
        "data and budget; across them the shares are not a method comparison): "
        + "; ".join(f"on {budget}: {', '.join(cells)}" for budget, cells in groups.items())
        + "."
    )


def verdict(summary: StudySummary) -> list[str]:
    """The three sentences a report opens with: what teaches, what is safe, how much of the gain was taken."""
    if summary.by_method.empty:
        return ["The study has no finished runs yet."]
    ev = Evidence.of(summary)
    return [what_teaches(ev), what_is_safe(ev), gain_taken_summary(ev)]


__all__ = [
    "ABOUT_ZERO",
    "AGREEMENT_POINTS",
    "CLAIMS",
    "CONTROL_MOVED_RATE",
    "CONTROL_PLATEAU",
    "MAJORITY",
    "MIN_STUDENTS",
    "PAPER_ORDER",
    "PAPER_RESULTS",
    "SAFER_MARGIN",
    "SAFE_HARM_RATE",
    "TREND_RHO",
    "Evidence",
    "PaperResult",
    "engine_methods",
    "findings",
    "paired_control",
    "sample",
    "too_few",
    "verdict",
]
