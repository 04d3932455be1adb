"""The study report: `report.md` and a self-contained `report.html`, with the study's PNG figures.

The report puts this study's headline numbers (median success rate per method, with its IQR, the
pooled success rate, the mean transfer delta, knowledge gain and loss, and the significant gain /
harm rates) next to the paper's (PAPER.md section 4) and next to the `xe` control, then writes, from
the numbers alone, plain sentences on where the study agrees or disagrees with the paper. The
content is built once as a list of blocks (headings, paragraphs, tables, figures) and rendered twice:
Markdown referencing the PNGs in `figures/`, and HTML with the same PNGs embedded as base64 data URIs,
so the HTML file can be mailed on its own.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ._io import write_text
from .aggregate import SIGNIFICANCE, StudySummary, net_change, summarize
from .store import StudyStore
from .metrics import BUCKETS

FIGURE_DIR = "figures"
AGREEMENT_POINTS = 15.0
"""A median success rate within this many points of the paper's counts as agreeing with it."""
ABOUT_ZERO = 0.1
"""A mean delta within ±this many points counts as "about zero" when comparing signs."""
CONTROL_PLATEAU = 0.3
"""The `xe` control's mean delta within ±this many points: the zoo is at its plateau (issue 6)."""


@dataclass(frozen=True)
class PaperResult:
    """A headline row of the paper (PAPER.md section 4): median success rate (a range when the paper
    gives one) and the mean transfer delta per student, on ImageNet."""

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

CONTROL = "xe"


# ---------------------------------------------------------------------------------------------
# Blocks


@dataclass
class Block:
    kind: str  # heading | text | list | table | figure
    content: Any
    level: int = 2
    caption: str = ""


@dataclass
class Report:
    """A report as blocks, rendered to Markdown and HTML."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(Block("heading", text, level))

    def text(self, text: str) -> None:
        self.blocks.append(Block("text", text))

    def bullets(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(Block("list", list(items)))

    def table(self, frame: pd.DataFrame, caption: str = "") -> None:
        self.blocks.append(Block("table", frame, caption=caption))

    def figure(self, path: Path | None, caption: str) -> None:
        if path is not None:
            self.blocks.append(Block("figure", path, caption=caption))

    def markdown(self, base: Path) -> str:
        lines = [f"# {self.title}", ""]
        for b in self.blocks:
            if b.kind == "heading":
                lines += ["#" * b.level + " " + b.content, ""]
            elif b.kind == "text":
                lines += [b.content, ""]
            elif b.kind == "list":
                lines += [f"- {item}" for item in b.content] + [""]
            elif b.kind == "table":
                lines += _markdown_table(b.content) + [""]
                if b.caption:
                    lines += [f"*{b.caption}*", ""]
            elif b.kind == "figure":
                rel = Path(b.content).relative_to(base).as_posix()
                lines += [f"![{b.caption}]({rel})", "", f"*{b.caption}*", ""]
        return "\n".join(lines).rstrip() + "\n"

    def html(self) -> str:
        parts = [f"<h1>{_inline_html(self.title)}</h1>"]
        for b in self.blocks:
            if b.kind == "heading":
                parts.append(f"<h{b.level}>{_inline_html(b.content)}</h{b.level}>")
            elif b.kind == "text":
                parts.append(f"<p>{_inline_html(b.content)}</p>")
            elif b.kind == "list":
                parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.content) + "</ul>")
            elif b.kind == "table":
                parts.append(_html_table(b.content, b.caption))
            elif b.kind == "figure":
                data = base64.b64encode(Path(b.content).read_bytes()).decode()
                parts.append(f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                             f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>")
        body = "\n".join(parts)
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
caption {{ caption-side: bottom; font-style: italic; font-size: 0.85em; padding-top: 0.3em; }}
figure {{ margin: 1.2em 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-style: italic; font-size: 0.9em; }}
code {{ background: #f5f5f5; padding: 0 0.2em; }}
</style></head>
<body>
{body}
</body></html>
"""


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    cols = [str(c) for c in frame.columns]
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines


def _html_table(frame: pd.DataFrame, caption: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{_inline_html(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    cap = f"<caption>{_inline_html(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline_html(text: str) -> str:
    """Escape, then turn Markdown's **bold** and `code` into HTML."""
    import re

    out = html.escape(str(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return out


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return str(value)


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}%"


def _pp(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:+.{digits}f}"


# ---------------------------------------------------------------------------------------------
# Tables


def engine_methods(summary: StudySummary) -> dict[str, str]:
    """Method label -> engine method name, from the runs."""
    runs = summary.runs
    if runs.empty:
        return {}
    return dict(runs.drop_duplicates("label")[["label", "method"]].itertuples(index=False, name=None))


def headline_table(summary: StudySummary) -> pd.DataFrame:
    """Per method: this study's headline numbers, the paper's, and the difference to the `xe` control."""
    engine = engine_methods(summary)
    rows = []
    for _, r in summary.by_method.iterrows():
        paper = PAPER_RESULTS.get(engine.get(r["method"], ""))
        vs_control = "–"
        c = _paired_control(summary, r["method"])
        if c is not None:
            vs_control = (f"{c['mean_delta_vs_control']:+.2f} vs {c['control']} ({int(c['students_better'])}/"
                          f"{int(c['students'])}, p={c['p_better_than_control']:.2g})")
        rows.append({
            "method": r["method"],
            "runs": int(r["runs"]),
            "students": int(r["students"]),
            "median success [IQR]": f"{_pct(r['median_success_rate'])} [{_pct(r['success_rate_q1'], 0)}–"
                                    f"{_pct(r['success_rate_q3'], 0)}]",
            "pooled success": _pct(r["pooled_success_rate"]),
            "mean Δ (pp)": _pp(r["mean_delta"]),
            "gain / loss (%)": f"{r['mean_gain']:.2f} / {r['mean_loss']:.2f}",
            "sig. gain / harm": f"{_pct(r['significant_gain_rate'], 0)} / {_pct(r['significant_harm_rate'], 0)}",
            "paper success": paper.success_text if paper else "–",
            "paper mean Δ (pp)": (f"{paper.mean_delta:+.2f}" + (" (≈0)" if paper.note.startswith("≈0") else ""))
            if paper else "–",
            "Δ vs control, paired (students better, p)": vs_control,
        })
    return pd.DataFrame(rows)


def available_table(summary: StudySummary) -> pd.DataFrame:
    """Per method with a teacher: the gain available to its runs and the share of it they took."""
    runs = summary.runs
    if runs.empty or "ensemble_delta" not in runs or runs["ensemble_delta"].isna().all():
        return pd.DataFrame()
    rows = []
    for _, r in summary.by_method.iterrows():
        part = runs[(runs["label"] == r["method"]) & runs["ensemble_delta"].notna()]
        if part.empty:
            continue
        maxconf = (part["ensemble_maxconf_acc"] - part["student_acc_before"]).mean() \
            if "ensemble_maxconf_acc" in part else float("nan")
        paired = _paired_control(summary, r["method"])
        rows.append({"method": r["method"], "runs": len(part),
                     "available gain (pp)": _pp(r["mean_ensemble_delta"]),
                     "runs with gain to take": _pct(100.0 * float((part["ensemble_delta"] > 0).mean()), 0),
                     "pooled efficiency": _pct(r["pooled_efficiency"]),
                     "median efficiency": _pct(r["median_efficiency"]),
                     "per-student median efficiency": _pct(r["student_median_efficiency"]),
                     **_beyond_control_cells(r, paired),
                     "max-confidence ensemble Δ (pp)": _pp(maxconf)})
    return pd.DataFrame(rows)


def _beyond_control_cells(row: pd.Series, paired: pd.Series | None) -> dict[str, str]:
    """The efficiency cells beyond the paired control and against the reachable gain (issue 16)."""
    def value(series: Any, key: str) -> float:
        return float("nan") if series is None else float(series.get(key, float("nan")))

    return {"pooled efficiency beyond control": _pct(value(paired, "pooled_efficiency_vs_control")),
            "per-student median beyond control": _pct(value(paired, "student_median_efficiency_vs_control")),
            "reachable gain (pp)": _pp(value(row, "mean_reachable_delta")),
            "efficiency of reachable": _pct(value(row, "pooled_reachable_efficiency")),
            "beyond control, of reachable": _pct(value(paired, "pooled_reachable_efficiency_vs_control"))}


def _efficiency_details(row: pd.Series, paired: pd.Series | None) -> str:
    """`; per student ..., beyond its control ..., of the reachable gain ...`: the parts that are known."""
    parts = []
    if pd.notna(row.get("student_median_efficiency", float("nan"))):
        parts.append(f"per student (median) {round(row['student_median_efficiency'])}%")
    if paired is not None and pd.notna(paired.get("pooled_efficiency_vs_control", float("nan"))):
        parts.append(f"beyond its `{paired['control']}` control {round(paired['pooled_efficiency_vs_control'])}% "
                     f"pooled, {round(paired['student_median_efficiency_vs_control'])}% per student (median)")
    if pd.notna(row.get("pooled_reachable_efficiency", float("nan"))):
        parts.append(f"of the gain reachable within the students' capacity ceilings "
                     f"({row['mean_reachable_delta']:+.2f} pp on average) {round(row['pooled_reachable_efficiency'])}%")
    return "; " + "; ".join(parts) if parts else ""


def _verdict_word(paired: Any) -> str:
    """How a method compares with its paired control, by the one-sided sign tests."""
    if paired["p_better_than_control"] < SIGNIFICANCE:
        return "does significantly better than"
    if paired["p_worse_than_control"] < SIGNIFICANCE:
        return "does significantly worse than"
    return "is not significantly different from"


def _paired_control(summary: StudySummary, method: str) -> pd.Series | None:
    """A method's comparison with its control of the same data and budget: the `xe` control where
    the study has one for it, else the `self` control (the control of a method that uses no labels)."""
    for table in (summary.vs_control, summary.vs_self):
        if len(table) and method in set(table["method"]):
            return table[table["method"] == method].iloc[0]
    return None


def _bucket_cells(summary: StudySummary, cell) -> pd.DataFrame:
    """Methods x teacher-strength buckets, each cell `cell(row)` of the bucket's aggregate row."""
    rows = []
    for method in summary.methods:
        part = summary.by_bucket[summary.by_bucket["method"] == method].set_index("bucket")
        if part["runs"].sum() == 0:
            continue
        rows.append({"method": method, **{b: "–" if part.loc[b, "runs"] == 0 else cell(part.loc[b]) for b in BUCKETS}})
    return pd.DataFrame(rows, columns=["method", *BUCKETS])


def bucket_table(summary: StudySummary) -> pd.DataFrame:
    """Methods x teacher-strength buckets: `pooled success / mean Δ (runs)` in each cell."""
    return _bucket_cells(summary, lambda r: f"{r['pooled_success_rate']:.0f}% / {r['mean_delta']:+.2f} "
                                            f"(n={int(r['runs'])})")


def harm_table(summary: StudySummary) -> pd.DataFrame:
    """Methods x buckets: `significant gain / significant harm rate` in each cell."""
    return _bucket_cells(summary, lambda r: f"{r['significant_gain_rate']:.0f}% / {r['significant_harm_rate']:.0f}%")


def family_table(summary: StudySummary) -> pd.DataFrame:
    frame = summary.by_family
    if frame.empty:
        return frame
    return pd.DataFrame({
        "method": frame["method"], "student family": frame["family"], "runs": frame["runs"].astype(int),
        "students": frame["students"].astype(int), "median success": frame["median_success_rate"].map(_pct),
        "mean Δ (pp)": frame["mean_delta"].map(_pp), "sig. harm": frame["significant_harm_rate"].map(_pct)})


# ---------------------------------------------------------------------------------------------
# Findings in words


def _control_row(summary: StudySummary) -> pd.Series | None:
    engine = engine_methods(summary)
    for _, r in summary.by_method.iterrows():
        if engine.get(r["method"]) == CONTROL:
            return r
    return None


def _sign_word(delta: float) -> str:
    if delta > ABOUT_ZERO:
        return "positive"
    if delta < -ABOUT_ZERO:
        return "negative"
    return "about zero"


def _bucket_values(summary: StudySummary, method: str, buckets: Sequence[str]) -> dict[str, float] | None:
    """Pooled numbers of a method over a group of buckets (None without runs there)."""
    runs = summary.runs[(summary.runs["label"] == method) & summary.runs["bucket"].isin(list(buckets))]
    if runs.empty:
        return None
    return {"runs": len(runs), "success": 100.0 * float((net_change(runs) > 0).mean()),
            "delta": float(runs["transfer_delta"].mean()),
            "harm": 100.0 * float((runs["p_loss"] < SIGNIFICANCE).mean()),
            "gain": 100.0 * float((runs["p_gain"] < SIGNIFICANCE).mean())}


def findings(summary: StudySummary) -> list[str]:
    """Plain-language sentences, generated from the numbers, on where the study agrees with the paper.

    One sentence per method with a paper counterpart (median success rate and sign of the mean
    delta), one per method against the `xe` control, then the paper's qualitative claims (PAPER.md
    section 4) checked where the study has the runs to check them.
    """
    out: list[str] = []
    if summary.by_method.empty:
        return ["The study has no finished runs yet."]
    engine = engine_methods(summary)
    by_name = {engine.get(r["method"]): r for _, r in summary.by_method.iterrows()}

    for _, r in summary.by_method.iterrows():
        paper = PAPER_RESULTS.get(engine.get(r["method"], ""))
        if paper is None:
            continue
        ours = r["median_success_rate"]
        low, high = paper.success_low - AGREEMENT_POINTS, paper.success_high + AGREEMENT_POINTS
        if low <= ours <= high:
            verdict = f"agrees with the paper's {paper.success_text} (within {AGREEMENT_POINTS:g} points)"
        else:
            gap = ours - paper.success_high if ours > high else ours - paper.success_low
            verdict = (f"disagrees with the paper's {paper.success_text}: "
                       f"{abs(gap):.1f} points {'higher' if gap > 0 else 'lower'}")
        ours_sign, paper_sign = _sign_word(r["student_mean_delta"]), _sign_word(paper.mean_delta)
        sign = "the same sign" if ours_sign == paper_sign else "a different sign"
        out.append(f"**{r['method']}** ({paper.name}): median success rate {ours:.1f}% over {int(r['students'])} "
                   f"students {verdict}; its mean Δ per student is {r['student_mean_delta']:+.2f} pp "
                   f"({ours_sign}) against the paper's {paper.mean_delta:+.2f} pp ({paper_sign}): {sign}.")

    control = _control_row(summary)
    if control is not None:
        moved = max(control["significant_gain_rate"], control["significant_harm_rate"])
        if abs(control["mean_delta"]) <= ABOUT_ZERO and moved <= 10:
            verdict = "the students sit at their plateau: extra training alone does not move them."
        elif abs(control["mean_delta"]) <= CONTROL_PLATEAU:
            verdict = (f"within ±{CONTROL_PLATEAU:g} pp, yet extra training alone still moves some students "
                       f"(significant gain in {control['significant_gain_rate']:.0f}%, harm in "
                       f"{control['significant_harm_rate']:.0f}% of them): judge every method against the control, "
                       "not against zero.")
        else:
            verdict = ("extra training alone moves the students (beyond ±0.3 pp), so gains of the other methods are "
                       "not just knowledge transfer: judge every method against the control, not against zero.")
        out.append(f"The **{control['method']}** control (the same training budget on the labels, no teacher) "
                   f"has a median success rate of {control['median_success_rate']:.1f}% and a mean Δ of "
                   f"{control['mean_delta']:+.2f} pp: {verdict}")
        vs = summary.vs_control.set_index("method") if len(summary.vs_control) else pd.DataFrame()
        for _, r in summary.by_method.iterrows():
            if r["method"] == control["method"] or r["method"] not in vs.index:
                continue
            c = vs.loc[r["method"]]
            word = _verdict_word(c)
            which = f" (`{c['control']}`: the same data and budget)" if c.get("control") else ""
            out.append(f"**{r['method']}** {word} the control, paired by student{which}: Δ "
                       f"{c['mean_delta_vs_control']:+.2f} pp "
                       f"beyond the control on average, larger than the control's in {c['beats_control_rate']:.0f}% "
                       f"of {int(c['paired_runs'])} runs; {int(c['students_better'])} of {int(c['students'])} students "
                       f"better, {int(c['students_worse'])} worse (one-sided sign test over students: p = "
                       f"{c['p_better_than_control']:.3g} for better, {c['p_worse_than_control']:.3g} for worse).")

    for _, r in summary.by_method.iterrows():
        if pd.isna(r.get("pooled_efficiency", float("nan"))):
            continue
        out.append(f"**{r['method']}** took {round(r['pooled_efficiency'])}% of the gain available to its runs (a "
                   f"student–teacher ensemble gains {r['mean_ensemble_delta']:+.2f} pp over the student on "
                   f"average; median efficiency {round(r['median_efficiency'])}% over the runs with something to "
                   f"take){_efficiency_details(r, _paired_control(summary, r['method']))}.")

    controlled = set(summary.vs_control["method"]) if len(summary.vs_control) else set()
    for c in (summary.vs_self.to_dict("records") if len(summary.vs_self) else []):
        if c["method"] in controlled:
            continue
        out.append(f"**{c['method']}** {_verdict_word(c)} the `{c['control']}` control (the stronger per run of the "
                   "no-teacher controls of the same data and budget: `self`, self-distillation, and `self+xe+wise`, "
                   "which also fine-tunes on the calib labels), paired by student: "
                   f"Δ {c['mean_delta_vs_control']:+.2f} pp "
                   f"beyond it on average, larger in {c['beats_control_rate']:.0f}% of {int(c['paired_runs'])} runs; "
                   f"{int(c['students_better'])} of {int(c['students'])} students better, {int(c['students_worse'])} "
                   f"worse (one-sided sign test: p = {c['p_better_than_control']:.3g}).")

    weaker, stronger = ("much weaker", "weaker"), ("stronger", "much stronger")
    kl = by_name.get("kl")
    if kl is not None:
        weak, strong = _bucket_values(summary, kl["method"], weaker), _bucket_values(summary, kl["method"], stronger)
        if weak and strong:
            harms, helps = weak["delta"] < 0, strong["delta"] > 0
            verdict = ("agrees." if harms and helps else
                       "partly agrees: it harms from weaker teachers but does not help from stronger ones either."
                       if harms else "disagrees: it does not harm from weaker teachers.")
            out.append(f"Paper: plain KL helps only with clearly stronger teachers. Here **{kl['method']}** has a "
                       f"mean Δ of {weak['delta']:+.2f} pp from weaker teachers ({weak['harm']:.0f}% of those runs "
                       f"significantly harmed) and {strong['delta']:+.2f} pp from stronger ones: {verdict}")
    dp = by_name.get("kl+dp")
    if dp is not None:
        weak, strong = _bucket_values(summary, dp["method"], weaker), _bucket_values(summary, dp["method"], stronger)
        if weak and strong:
            agrees = weak["success"] > 50 and strong["success"] > 50
            out.append(f"Paper: DP gains from weaker *and* stronger teachers. Here **{dp['method']}** succeeds in "
                       f"{weak['success']:.0f}% of the runs with weaker teachers (mean Δ {weak['delta']:+.2f} pp) "
                       f"and {strong['success']:.0f}% with stronger ones (mean Δ {strong['delta']:+.2f} pp): "
                       + ("agrees." if agrees else
                          "partly agrees (gains from one side only)." if max(weak["success"], strong["success"]) > 50
                          else "disagrees."))
        if kl is not None:
            out.append(f"DP's point is transfer without forgetting: **{dp['method']}** significantly harms "
                       f"{dp['significant_harm_rate']:.0f}% of its runs, **{kl['method']}** "
                       f"{kl['significant_harm_rate']:.0f}%: "
                       + ("agrees (DP is much safer)." if dp["significant_harm_rate"] + 10 <= kl["significant_harm_rate"]
                          else "disagrees (DP is not clearly safer here)."))
        dpu = by_name.get("kl+dp-u")
        if dpu is not None:
            diff = dpu["median_success_rate"] - dp["median_success_rate"]
            paper_diff = PAPER_RESULTS["kl+dp-u"].success_mid - PAPER_RESULTS["kl+dp"].success_mid
            out.append(f"Paper: unsupervised DP comes close to supervised DP (82.5% vs 92.5%, {paper_diff:+.1f} "
                       f"points). Here **{dpu['method']}** reaches {dpu['median_success_rate']:.1f}% against "
                       f"{dp['median_success_rate']:.1f}% ({diff:+.1f} points) and a mean Δ of "
                       f"{dpu['mean_delta']:+.2f} pp against {dp['mean_delta']:+.2f} pp: "
                       + ("agrees." if abs(diff - paper_diff) <= AGREEMENT_POINTS else "disagrees."))
    mcl = by_name.get("xekl+mcl")
    if mcl is not None:
        safe = mcl["significant_harm_rate"] <= 10
        small = dp is None or mcl["mean_delta"] <= dp["mean_delta"]
        out.append(f"Paper: MCL is safe but gains little. Here **{mcl['method']}** significantly harms "
                   f"{mcl['significant_harm_rate']:.0f}% of its runs, with a mean Δ of {mcl['mean_delta']:+.2f} pp"
                   + (f" (DP: {dp['mean_delta']:+.2f} pp)" if dp is not None else "") + ": "
                   + ("agrees." if safe and small else "disagrees." if not safe and not small else "partly agrees."))

    ranked = [by_name[m] for m in PAPER_ORDER if m in by_name]
    if len(ranked) >= 3:
        ours = sorted(ranked, key=lambda r: -r["median_success_rate"])
        concordant = discordant = total = 0
        for i in range(len(ranked)):
            for j in range(i + 1, len(ranked)):
                a, b = ranked[i]["median_success_rate"], ranked[j]["median_success_rate"]
                concordant += a > b
                discordant += a < b
                total += 1
        out.append("Ranking by median success rate, paper: " + " > ".join(r["method"] for r in ranked)
                   + "; this study: " + " > ".join(r["method"] for r in ours)
                   + f" ({concordant} of {total} method pairs in the paper's order, {discordant} reversed, "
                   f"{total - concordant - discordant} tied).")
    if dp is not None and not summary.size_correlation.empty:
        corr = summary.size_correlation.set_index("method")
        if dp["method"] in corr.index and not pd.isna(corr.loc[dp["method"], "delta_size_spearman"]):
            rho = float(corr.loc[dp["method"], "delta_size_spearman"])
            out.append(f"Paper: larger students receive more. Here the rank correlation of student size and mean Δ "
                       f"under **{dp['method']}** is {rho:+.2f} over {int(corr.loc[dp['method'], 'students'])} students: "
                       + ("agrees." if rho > 0.2 else "disagrees." if rho < -0.2 else "no clear trend."))
    return out


# ---------------------------------------------------------------------------------------------
# Writing


@dataclass
class ReportFiles:
    """The files `write_report` wrote."""

    markdown: Path
    html: Path
    figures: list[Path]


def write_report(study_dir: str | Path, summary: StudySummary | None = None) -> ReportFiles:
    """Write `report.md`, `report.html` and `figures/*.png` into the study directory.

    Args:
        study_dir: a study directory (holding `study.sqlite`).
        summary: the study's aggregates (default: `summarize(study_dir)`).

    Returns:
        The paths written.

    Raises:
        AnyteachError: `study_dir` holds no study store.
        RunFailed: the study has no finished run (nothing to report).
    """
    from . import study_figures as figs

    study_dir = Path(study_dir)
    summary = summary if summary is not None else summarize(study_dir)
    summary.require_runs(study_dir)
    with StudyStore(study_dir, create=False) as store:
        history = store.history()
        spec_text = store.meta("spec")
        failures = store.failures()
        stale = store.stale_runs()
        planned = store.planned()
    spec = json.loads(spec_text) if spec_text else {}
    fig_dir = study_dir / FIGURE_DIR
    engine = engine_methods(summary)
    paper_success = {label: PAPER_RESULTS[name].success_mid for label, name in engine.items() if name in PAPER_RESULTS}

    report = Report(f"Transfer study: {spec.get('name', study_dir.name)}")
    runs = summary.runs
    pairs = runs[runs["teacher"] != ""].drop_duplicates(["student", "teacher"]) if len(runs) else runs
    n_models = len((set(runs["student"]) | set(runs["teacher"])) - {""}) if len(runs) else 0
    report.text(
        f"{len(runs)} finished runs: {len(pairs)} ordered (student, teacher) pairs over {n_models} models, "
        f"methods {', '.join(f'`{m}`' for m in summary.methods) or '–'}, seeds "
        f"{', '.join(str(s) for s in spec.get('seeds', [])) or '–'}, data `{spec.get('data', '?')}` "
        f"(metrics on its eval split). Shared recipe: `{json.dumps(spec.get('recipe', {}), sort_keys=True)}`. "
        f"Total run time {runs['seconds'].sum() / 60 if len(runs) else 0:.1f} min; written "
        f"{time.strftime('%Y-%m-%d %H:%M')}."
        + (f" **{len(failures)} runs failed** ({summary.status_line()}; the store's `failures` table has the "
           "reasons): re-running the study retries crashed runs, `--retry-failed` also diverged ones."
           if len(failures) else "")
        + (f" **The study is incomplete: {len(runs)} of {planned} planned runs have finished**; re-run it to resume."
           if planned and len(runs) < planned else "")
        + (f" {stale} stored runs of an earlier definition of this study are left out." if stale else ""))

    report.heading("Headline: this study next to the paper")
    report.table(headline_table(summary),
                 "Median success rate over students (success: Δ > 0 strictly), its IQR, pooled success over all runs, "
                 "mean transfer delta, mean knowledge gain / loss (% of eval samples), significant gain / harm "
                 "(one-sided exact McNemar, p < 0.05, % of runs). Paper: ImageNet, 20 students × 20 teachers "
                 "(PAPER.md section 4). Last column: each run's Δ minus the Δ of its student's control run on "
                 "the same data with the same budget (`xe`, the labels alone; for a method that uses no labels, "
                 "`self`), averaged (pp); how many students gain more than from the control alone; one-sided "
                 "sign test over students that they do.")
    report.heading("What agrees with the paper, and what does not", 3)
    report.bullets(findings(summary))

    available = available_table(summary)
    if not available.empty:
        report.heading("How much was there to take")
        report.text("The *available gain* of a run is the Δ of a student–teacher ensemble (the two models' "
                    "probabilities averaged, no training) over the student: what the teacher knows that the "
                    "student could use. The *transfer efficiency* is the run's Δ as a share of it, where it is "
                    "positive. A small Δ with a small available gain means there was little to learn; a small Δ "
                    "with a large one means the method left the knowledge where it was.")
        report.table(available, "Per method: mean available gain over its runs (pp), the share of runs with "
                                "something to take (available gain > 0), pooled efficiency (ΣΔ / Σ available "
                                "gain over those runs, %), median efficiency over runs and the median over "
                                "students of each student's pooled efficiency (%); the same beyond the paired "
                                "no-teacher control (Σ(Δ − Δ_control) / Σ available gain); the reachable gain "
                                "min(ensemble, the student's capacity ceiling) − S0 where ceilings are known "
                                "(`ceilings.json` of the study) and the efficiency against it; and the paper-style "
                                "max-confidence ensemble's mean Δ (pp).")
        report.figure(figs.delta_vs_available(summary, fig_dir / "delta_vs_available.png"),
                      "Transfer Δ vs available gain, one point per run; on the dashed line a run took all of it.")

    report.heading("By teacher strength")
    report.table(bucket_table(summary), "Pooled success rate / mean Δ (pp) (number of runs) per teacher-strength "
                                        "bucket, acc(T) − acc(S0) in pp.")
    report.table(harm_table(summary), "Significant gain / significant harm rate per bucket (% of runs, p < 0.05).")
    report.figure(figs.delta_by_bucket(summary, fig_dir / "delta_by_bucket.png"),
                  "Mean transfer delta per teacher-strength bucket and method (± standard error over runs).")

    report.heading("Figures")
    report.figure(figs.success_rate_boxplot(summary, fig_dir / "success_rate.png", paper_success),
                  "Success rate per student, per method (paper Fig. 4a); diamonds: the paper's median on ImageNet.")
    report.figure(figs.gain_vs_loss(summary, fig_dir / "gain_vs_loss.png"),
                  "Knowledge gain vs knowledge loss per run; above the diagonal the student improved.")
    report.figure(figs.delta_vs_size(summary, fig_dir / "delta_vs_size.png"),
                  "Mean transfer delta of each student vs its parameter count, per method and student family.")
    report.figure(figs.complementarity_vs_gap(summary, fig_dir / "complementarity_vs_gap.png"),
                  "Complementary knowledge (positive flips S0→T, % of eval samples) vs accuracy gap, one point per pair.")
    report.figure(figs.delta_over_epochs(history, summary.methods, fig_dir / "delta_over_epochs.png"),
                  "Mean transfer delta over the epochs of transfer.")

    fam = family_table(summary)
    if not fam.empty:
        report.heading("By student family")
        report.table(fam)
    if not summary.size_correlation.empty:
        corr = summary.size_correlation
        report.text("Rank correlation (Spearman) of student parameter count and mean Δ: " + "; ".join(
            f"`{r.method}` {r.delta_size_spearman:+.2f}" for r in corr.itertuples() if not pd.isna(r.delta_size_spearman))
            + ".")

    figures = [Path(b.content) for b in report.blocks if b.kind == "figure"]
    md_path, html_path = study_dir / "report.md", study_dir / "report.html"
    write_text(md_path, report.markdown(study_dir))
    write_text(html_path, report.html())
    return ReportFiles(md_path, html_path, figures)


def headline_text(summary: StudySummary) -> str:
    """The headline table as Markdown (what `anyteach demo` prints at the end)."""
    return "\n".join(_markdown_table(headline_table(summary)))


__all__ = ["PAPER_RESULTS", "PaperResult", "ReportFiles", "bucket_table", "findings", "headline_table",
           "headline_text", "write_report"]
