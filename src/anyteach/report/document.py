"""The study report: `report.md` and a self-contained `report.html`, with the study's PNG figures.

The report opens with a picture: each method's Δ beyond its no-teacher control (mean over students, a 95%
interval per student group), beside a verdict of three sentences (`findings.verdict`); then the headline
table (this study next to the paper, Roth et al., ICLR 2024; docs/concepts/transfer-without-forgetting.md),
the findings grouped under headings, the detailed tables and figures, and every run in one table. The
content is built once as a list of blocks (headings, paragraphs, tables, figures) and rendered twice:
Markdown referencing the PNGs in `figures/`, and HTML with the same PNGs embedded as base64 data URIs, so
the HTML file can be mailed on its own. Every number in a table is formatted text: no raw float, no `nan`.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from ..analysis.metrics import BUCKETS
from ..core.errors import AnyteachError
from ..core.io import write_text
from ..study.store import StudyStore
from . import findings as claims
from .aggregate import PAIRED_RUN_COLUMNS, SIGNIFICANCE, StudySummary, against_control, against_own_controls, summarize
from .findings import PAPER_RESULTS, PaperResult, engine_methods, findings, paired_control, verdict
from .teacher_choice import teacher_section

FIGURE_DIR = "figures"


# ---------------------------------------------------------------------------------------------
# Blocks


@dataclass
class Block:
    kind: str  # heading | text | list | table | figure | lead
    content: Any
    level: int = 2
    caption: str = ""
    aside: str = ""  # a lead block's text, shown beside its figure


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

    def lead(self, text: str, path: Path | None, caption: str) -> None:
        """The opening: `text` beside the figure at `path` (side by side in HTML, so a first screen shows
        both), or the text alone when there is no figure."""
        if path is None:
            self.text(text)
        else:
            self.blocks.append(Block("lead", path, caption=caption, aside=text))

    def markdown(self, base: Path) -> str:
        lines = [f"# {markdown_escape(self.title)}", ""]
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
            elif b.kind in ("figure", "lead"):
                rel = Path(b.content).relative_to(base).as_posix()
                lines += [b.aside, ""] if b.aside else []
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
            elif b.kind in ("figure", "lead"):
                data = base64.b64encode(Path(b.content).read_bytes()).decode()
                figure = (
                    f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>"
                )
                if b.kind == "lead":
                    figure = f'<div class="lead"><div class="verdict">{_inline_html(b.aside)}</div>{figure}</div>'
                parts.append(figure)
        body = "\n".join(parts)
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1320px; margin: 1em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }}
h1 {{ margin: 0.3em 0 0.4em; font-size: 1.6em; }}
.lead {{ display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }}
.lead .verdict {{ flex: 1 1 440px; font-size: 0.98em; background: #f6f8fa; border-left: 4px solid #4a7;
                  padding: 0.6em 1em; }}
.lead figure {{ flex: 1.4 1 560px; margin: 0; }} .lead img {{ max-height: 72vh; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child, .prose {{ text-align: left; }}
caption {{ caption-side: bottom; font-style: italic; font-size: 0.85em; padding-top: 0.3em; }}
figure {{ margin: 1.2em 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-style: italic; font-size: 0.9em; }}
code {{ background: #f5f5f5; padding: 0 0.2em; }}
</style></head>
<body>
{body}
</body></html>
"""


def _prose_columns(frame: pd.DataFrame) -> list[bool]:
    """Per column, whether it holds text rather than numbers (a cell of four words or more, or one that does
    not start like a number): left-aligned, unlike numbers."""

    def text(cell: str) -> bool:
        return cell.count(" ") >= 3 or (cell not in ("–", "") and not re.match(r"[-+−]?[\d.]", cell))

    return [i == 0 or any(text(_cell(v)) for v in frame.iloc[:, i]) for i in range(frame.shape[1])]


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    cols = [str(c) for c in frame.columns]
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---" if prose else "---:" for prose in _prose_columns(frame)) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines


def _html_table(frame: pd.DataFrame, caption: str) -> str:
    left = [' class="prose"' if prose else "" for prose in _prose_columns(frame)]
    head = "".join(f"<th{a}>{html.escape(str(c))}</th>" for a, c in zip(left, frame.columns))
    body = "".join(
        "<tr>" + "".join(f"<td{a}>{_inline_html(_cell(v))}</td>" for a, v in zip(left, row)) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    cap = f"<caption>{_inline_html(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline_html(text: str) -> str:
    """Escape, then turn Markdown's **bold** and `code` into HTML."""
    import re

    out = html.escape(str(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![*\w])\*([^*\s][^*]*?)\*(?![*\w])", r"<em>\1</em>", out)
    out = re.sub(r"`(.+?)`", r"<code>\1</code>", out)
    return out


def _cell(value: Any) -> str:
    """A table cell as text: missing values and NaN as "–", floats to two decimals (a table should format
    its numbers with their unit; this keeps a forgotten one readable)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}%"


def _pp(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:+.{digits}f}"


# ---------------------------------------------------------------------------------------------
# Tables


def headline_table(summary: StudySummary) -> pd.DataFrame:
    """Per method: this study's headline numbers, the paper's, and the difference to the `xe` control."""
    engine = engine_methods(summary)
    rows = []
    for _, r in summary.by_method.iterrows():
        paper = PAPER_RESULTS.get(engine.get(r["method"], ""))
        vs_control = "–"
        c = paired_control(summary, r["method"])
        if c is not None:
            vs_control = (
                f"{c['mean_delta_vs_control']:+.2f} vs {c['control']} ({int(c['students_better'])}/"
                f"{int(c['students'])}, p={c['p_better_than_control']:.2g})"
            )
        rows.append(
            {
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
                if paper
                else "–",
                "Δ vs control, paired (students better, p)": vs_control,
            }
        )
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
        maxconf = (
            (part["ensemble_maxconf_acc"] - part["student_acc_before"]).mean()
            if "ensemble_maxconf_acc" in part
            else float("nan")
        )
        paired = paired_control(summary, r["method"])
        rows.append(
            {
                "method": r["method"],
                "runs": len(part),
                "available gain (pp)": _pp(r["mean_ensemble_delta"]),
                "runs with gain to take": _pct(100.0 * float((part["ensemble_delta"] > 0).mean()), 0),
                "pooled efficiency": _pct(r["pooled_efficiency"]),
                "median efficiency": _pct(r["median_efficiency"]),
                "per-student median efficiency": _pct(r["student_median_efficiency"]),
                **_beyond_control_cells(r, paired),
                "max-confidence ensemble Δ (pp)": _pp(maxconf),
            }
        )
    return pd.DataFrame(rows)


def _beyond_control_cells(row: pd.Series, paired: pd.Series | None) -> dict[str, str]:
    """The efficiency cells beyond the paired control and against the reachable gain."""

    def value(series: Any, key: str) -> float:
        return float("nan") if series is None else float(series.get(key, float("nan")))

    return {
        "pooled efficiency beyond control": _pct(value(paired, "pooled_efficiency_vs_control")),
        "per-student median beyond control": _pct(value(paired, "student_median_efficiency_vs_control")),
        "reachable gain (pp)": _pp(value(row, "mean_reachable_delta")),
        "efficiency of reachable": _pct(value(row, "pooled_reachable_efficiency")),
        "beyond control, of reachable": _pct(value(paired, "pooled_reachable_efficiency_vs_control")),
    }


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
    return _bucket_cells(
        summary, lambda r: f"{r['pooled_success_rate']:.0f}% / {r['mean_delta']:+.2f} (n={int(r['runs'])})"
    )


def harm_table(summary: StudySummary) -> pd.DataFrame:
    """Methods x buckets: `significant gain / significant harm rate` in each cell."""
    return _bucket_cells(summary, lambda r: f"{r['significant_gain_rate']:.0f}% / {r['significant_harm_rate']:.0f}%")


def family_table(summary: StudySummary) -> pd.DataFrame:
    frame = summary.by_family
    if frame.empty:
        return frame
    return pd.DataFrame(
        {
            "method": frame["method"],
            "student family": frame["family"],
            "runs": frame["runs"].astype(int),
            "students": frame["students"].astype(int),
            "median success": frame["median_success_rate"].map(_pct),
            "mean Δ (pp)": frame["mean_delta"].map(_pp),
            "sig. harm": frame["significant_harm_rate"].map(_pct),
        }
    )


# ---------------------------------------------------------------------------------------------
# Writing


@dataclass
class ReportFiles:
    """The files `write_report` wrote."""

    markdown: Path
    html: Path
    figures: list[Path]


@dataclass
class StudyRecord:
    """What the report reads from a study's store besides the aggregates.

    Attributes:
        name: the study's name (its definition's, else the directory's).
        spec: the study definition as stored.
        history: metrics rows over the epochs of every run (for the curves).
        failures: runs that failed and have not finished since.
        stale: stored runs of an earlier definition, left out.
        planned: runs the definition plans (0 when unknown).
    """

    name: str
    spec: dict[str, Any]
    history: Any
    failures: Any
    stale: int
    planned: int
    study_dir: Path | None = None

    @classmethod
    def read(cls, study_dir: Path) -> StudyRecord:
        with StudyStore(study_dir, create=False) as store:
            spec_text = store.meta("spec")
            spec = json.loads(spec_text) if spec_text else {}
            return cls(
                spec.get("name", study_dir.name),
                spec,
                store.history(),
                store.failures(),
                store.stale_runs(),
                store.planned(),
                study_dir,
            )


def write_report(
    study_dir: str | Path,
    summary: StudySummary | None = None,
    out: str | Path | None = None,
    sections: Sequence[Callable[[Report, StudySummary], None]] = (),
) -> ReportFiles:
    """Write `report.md`, `report.html` and `figures/*.png` (into the study directory by default).

    Args:
        study_dir: a study directory (holding `study.sqlite`); only read, so it may be read-only.
        summary: the study's aggregates (default: `summarize(study_dir)`).
        out: where the report and its figures go (default: the study directory, when writable).
        sections: extra sections, each called with the report and the summary after the findings
            (e.g. `crosscheck.crosscheck_section`).

    Returns:
        The paths written.

    A report that cannot be built leaves no report behind: the earlier `report.md` and `report.html` of
    `out` are removed before the error is raised, so a stale report never stands for the current study.

    Raises:
        AnyteachError: `study_dir` holds no study store.
        RunFailed: the study has no finished run (nothing to report).
    """
    study_dir = Path(study_dir)
    summary = summary if summary is not None else summarize(study_dir)
    summary.require_runs(study_dir)
    out_dir = report_dir(study_dir, out)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    try:
        report = build_report(summary, StudyRecord.read(study_dir), out_dir / FIGURE_DIR, sections)
        markdown, page = report.markdown(out_dir), report.html()
    except BaseException:
        # an earlier report must not pass for this study's current state: it goes, whatever failed
        md_path.unlink(missing_ok=True)
        html_path.unlink(missing_ok=True)
        raise
    write_text(md_path, markdown)  # each written to a temporary file, then renamed
    write_text(html_path, page)
    return ReportFiles(md_path, html_path, [Path(b.content) for b in report.blocks if b.kind in ("figure", "lead")])


def study_description(summary: StudySummary, record: StudyRecord) -> str:
    """The paragraph under the verdict: what ran (runs, pairs, models, methods, seeds, data, recipe, and
    each method's own data or recipe where it differs), how long, and what is missing (failed runs, an
    incomplete study, stale runs)."""
    runs, spec, failures, planned, stale = summary.runs, record.spec, record.failures, record.planned, record.stale
    own = method_setups(spec)
    pairs = runs[runs["teacher"] != ""].drop_duplicates(["student", "teacher"]) if len(runs) else runs
    n_models = len((set(runs["student"]) | set(runs["teacher"])) - {""}) if len(runs) else 0
    return (
        f"{len(runs)} finished runs: {len(pairs)} ordered (student, teacher) pairs over {n_models} models, "
        f"methods {', '.join(_code(m) for m in summary.methods) or '–'}, seeds "
        f"{', '.join(str(s) for s in spec.get('seeds', [])) or '–'}, data {_code(spec.get('data', '?'))} "
        f"(metrics on its eval split). Shared recipe: {_code(json.dumps(spec.get('recipe', {}), sort_keys=True))}. "
        + (
            "Methods that ran otherwise: "
            + "; ".join(f"{_code(label)} on {setup}" for label, setup in own.items())
            + ". "
            if own
            else ""
        )
        + f"Total run time {runs['seconds'].sum() / 60 if len(runs) else 0:.1f} min; written "
        f"{time.strftime('%Y-%m-%d %H:%M')}."
        + (
            f" **{len(failures)} runs failed** ({summary.status_line()}; the store's `failures` table has the "
            "reasons): re-running the study retries crashed runs, `--retry-failed` also diverged ones."
            if len(failures)
            else ""
        )
        + (
            f" **The study is incomplete: {len(runs)} of {planned} planned runs have finished**; re-run it to resume."
            if planned and len(runs) < planned
            else ""
        )
        + (f" {stale} stored runs of an earlier definition of this study are left out." if stale else "")
    )


def build_report(
    summary: StudySummary,
    record: StudyRecord,
    fig_dir: Path,
    sections: Sequence[Callable[[Report, StudySummary], None]] = (),
) -> Report:
    """The report's blocks: the verdict, what ran, the tables with their captions, the findings (and
    any extra `sections`, each called with the report and the summary) and the figures (drawn into
    `fig_dir`)."""
    from . import figures as figs

    engine = engine_methods(summary)
    paper_success = {label: PAPER_RESULTS[name].success_mid for label, name in engine.items() if name in PAPER_RESULTS}
    report = Report(f"Transfer study: {record.name}")
    paired = paired_runs(summary)
    taught = paired[paired["teacher"].fillna("").astype(bool)] if len(paired) else paired  # controls: not in it
    intervals = figs.beyond_control_intervals(taught, student_families(summary.runs))
    controls = {
        str(label): ", ".join(dict.fromkeys(part["control"])) for label, part in taught.groupby("label", sort=False)
    }
    report.lead(
        "**Verdict.** " + " ".join(verdict(summary)),  # what teaches, what is safe, how much gain was taken
        figs.beyond_control(intervals, controls, fig_dir / "beyond_control.png"),
        "Δ beyond the no-teacher control: per method, each student's mean Δ minus its control's (same data and "
        "budget), averaged over students, with a 95% t-interval; black: all students, colours: student families.",
    )
    own = method_setups(record.spec)

    report.heading("Headline: this study next to the paper")
    headline = headline_table(summary)
    if own and len(headline):  # a method's own data or recipe, beside its numbers
        headline.insert(1, "ran on", [own.get(label, "the study's data and recipe") for label in headline["method"]])
    report.table(
        headline,
        "Median success rate over students (success: Δ > 0 strictly), its IQR, pooled success over all runs, "
        "mean transfer delta, mean knowledge gain / loss (% of eval samples), significant gain / harm "
        f"(one-sided exact McNemar, p < {SIGNIFICANCE:g}, % of runs). Paper: ImageNet, 20 students × 20 teachers "
        "(Roth et al., ICLR 2024). Last column: each run's Δ minus the Δ of its student's control run on "
        "the same data with the same budget (`xe`, the labels alone; for a method that uses no labels, "
        "`self`), averaged (pp); how many students gain more than from the control alone; one-sided "
        "sign test over students that they do.",
    )
    report.text(study_description(summary, record))
    report.heading("Findings")
    for heading, sentences in grouped_findings(summary):
        report.heading(heading, 3)
        report.bullets(sentences)
    for section in sections:
        section(report, summary)

    available = available_table(summary)
    if not available.empty:
        report.heading("How much was there to take")
        report.text(
            "The *available gain* of a run is the Δ of a student–teacher ensemble (the two models' "
            "probabilities averaged, no training) over the student: what the teacher knows that the "
            "student could use. The *transfer efficiency* is the run's Δ as a share of it, where it is "
            "positive. A small Δ with a small available gain means there was little to learn; a small Δ "
            "with a large one means the method left the knowledge where it was."
        )
        report.table(
            available,
            "Per method: mean available gain over its runs (pp), the share of runs with "
            "something to take (available gain > 0), pooled efficiency (ΣΔ / Σ available "
            "gain over those runs, %), median efficiency over runs and the median over "
            "students of each student's pooled efficiency (%); the same beyond the paired "
            "no-teacher control (Σ(Δ − Δ_control) / Σ available gain); the reachable gain "
            "min(ensemble, the student's capacity ceiling) − S0 where ceilings are known "
            "(`ceilings.json` of the study) and the efficiency against it; and the paper-style "
            "max-confidence ensemble's mean Δ (pp).",
        )
        report.figure(
            figs.delta_vs_available(summary, fig_dir / "delta_vs_available.png"),
            "Transfer Δ vs available gain, one point per run; on the dashed line a run took all of it.",
        )

    report.heading("By teacher strength")
    report.table(
        bucket_table(summary),
        "Pooled success rate / mean Δ (pp) (number of runs) per teacher-strength bucket, acc(T) − acc(S0) in pp.",
    )
    report.table(
        harm_table(summary), f"Significant gain / significant harm rate per bucket (% of runs, p < {SIGNIFICANCE:g})."
    )
    report.figure(
        figs.delta_by_bucket(summary, fig_dir / "delta_by_bucket.png"),
        "Mean transfer delta per teacher-strength bucket and method (± standard error over runs).",
    )

    report.heading("Figures")
    report.figure(
        figs.success_rate_boxplot(summary, fig_dir / "success_rate.png", paper_success),
        "Success rate per student, per method (paper Fig. 4a); diamonds: the paper's median on ImageNet.",
    )
    report.figure(
        figs.gain_vs_loss(summary, fig_dir / "gain_vs_loss.png"),
        "Knowledge gain vs knowledge loss per run; above the diagonal the student improved.",
    )
    report.figure(
        figs.delta_vs_size(summary, fig_dir / "delta_vs_size.png"),
        "Mean transfer delta of each student vs its parameter count, per method and student family.",
    )
    report.figure(
        figs.complementarity_vs_gap(summary, fig_dir / "complementarity_vs_gap.png"),
        "Complementary knowledge (positive flips S0→T, % of eval samples) vs accuracy gap, one point per pair.",
    )
    report.figure(
        figs.delta_over_epochs(record.history, summary.methods, fig_dir / "delta_over_epochs.png"),
        "Mean transfer delta over the epochs of transfer.",
    )

    fam = family_table(summary)
    if not fam.empty:
        report.heading("By student family")
        report.table(fam)
    if not summary.size_correlation.empty:
        corr = summary.size_correlation
        report.text(
            "Rank correlation (Spearman) of student parameter count and mean Δ: "
            + "; ".join(
                f"{_code(r.method)} "
                + (
                    UNDEFINED
                    if pd.isna(r.delta_size_spearman)
                    else f"{r.delta_size_spearman:+.2f} (n={r.students} students)"
                )
                for r in corr.itertuples()
            )
            + "."
        )
    teacher_section(report, summary, record.spec, fig_dir)  # what makes a good teacher and student (teacher_analysis)
    report.heading("Every run")
    report.table(
        run_table(summary, paired, record.study_dir),
        "One row per finished run: Δ (pp) on the eval split, Δ beyond the no-teacher control it is paired with "
        "(– for the controls themselves and for runs without a control of the same data and budget), and the run's "
        "directory (relative to the study).",
    )
    return report


FINDING_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Against the no-teacher controls", ("control_plateau", "against_control", "against_self")),
    ("How much of the available gain was taken", ("gain_taken",)),
    (
        "Against the paper",
        (
            "paper_success_rates",
            "kl_needs_stronger_teachers",
            "dp_gains_both_ways",
            "dp_is_safer",
            "unsupervised_dp_close",
            "mcl_safe_but_small",
            "paper_ranking",
        ),
    ),
    ("Which students receive more", ("larger_students_receive_more",)),
)
"""The report's headings over the findings (`findings.CLAIMS`, by function name); a claim not named here
is written under "More findings"."""


def grouped_findings(summary: StudySummary) -> list[tuple[str, list[str]]]:
    """The findings' sentences under their headings (`FINDING_GROUPS`), in order, leaving out empty groups."""
    if summary.by_method.empty:
        return [("Findings", findings(summary))]
    evidence = claims.Evidence.of(summary)
    by_name = {claim.__name__: claim for claim in claims.CLAIMS}
    named = {name for _, names in FINDING_GROUPS for name in names}
    groups = [(heading, [by_name[n] for n in names if n in by_name]) for heading, names in FINDING_GROUPS]
    groups.append(("More findings", [c for c in claims.CLAIMS if c.__name__ not in named]))
    out = []
    for heading, members in groups:
        sentences = [sentence for claim in members for sentence in claim(evidence)]
        if sentences:
            out.append((heading, sentences))
    return out


def paired_runs(summary: StudySummary) -> pd.DataFrame:
    """Every run paired with the no-teacher control its method is compared with in the headline
    (`findings.paired_control`: `xe` where the study has it for the method, else the stronger of the
    controls of a method that uses no labels): `aggregate.PAIRED_RUN_COLUMNS`."""
    runs = summary.runs
    columns = list(PAIRED_RUN_COLUMNS)
    if runs.empty:
        return pd.DataFrame(columns=columns)
    parts: list[pd.DataFrame] = []
    for table, per_run in (
        (summary.vs_control, lambda: against_control(runs, per_run=True)),
        (summary.vs_self, lambda: against_own_controls(runs, per_run=True)),
    ):
        if len(table) == 0:
            continue
        taken = set().union(*(set(p["label"]) for p in parts)) if parts else set()
        labels = set(table["method"]) - taken
        rows = per_run()
        parts.append(rows[rows["label"].isin(labels)])
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def student_families(runs: pd.DataFrame) -> dict[str, str]:
    """Student reference -> family, from the runs."""
    if runs.empty or "student_family" not in runs.columns:
        return {}
    first = runs.drop_duplicates("student")
    return {
        str(s): str(f) if isinstance(f, str) else "unknown" for s, f in zip(first["student"], first["student_family"])
    }


def run_table(summary: StudySummary, paired: pd.DataFrame, study_dir: Path | None = None) -> pd.DataFrame:
    """One row per finished run: student, teacher, method, Δ, Δ beyond its paired control, run directory."""
    runs = summary.runs
    columns = ["student", "teacher", "method", "Δ (pp)", "Δ beyond control (pp)", "control", "file"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    beyond = {
        (r.label, r.student, r.teacher, r.seed): (r.delta_beyond, r.control) for r in paired.itertuples(index=False)
    }
    rows = []
    for r in runs.itertuples(index=False):
        teacher = getattr(r, "teacher", "") or ""
        delta, control = beyond.get((r.label, r.student, teacher, getattr(r, "seed", 0)), (float("nan"), ""))
        rows.append(
            {
                "student": getattr(r, "student_name", None) or r.student,
                "teacher": (getattr(r, "teacher_name", None) or teacher) or "–",
                "method": r.label,
                "Δ (pp)": _pp(r.transfer_delta),
                "Δ beyond control (pp)": _pp(delta),
                "control": control or "–",
                "file": _code(_relative(getattr(r, "run_dir", "") or "", study_dir))
                if getattr(r, "run_dir", "")
                else "–",
            }
        )
    order = {m: i for i, m in enumerate(summary.methods)}
    return (
        pd.DataFrame(rows, columns=columns)
        .sort_values(
            ["method", "student", "teacher"], key=lambda c: c.map(order) if c.name == "method" else c, kind="stable"
        )
        .reset_index(drop=True)
    )


def _relative(path: str, base: Path | None) -> str:
    """`path` relative to `base` when it lies inside it, else as stored."""
    if base is None:
        return path
    try:
        return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
    except (ValueError, OSError):
        return path


UNDEFINED = "undefined (too few students)"
"""What the report writes for a statistic that the study's runs cannot define (a correlation over
fewer than three students, a spread over one)."""


def report_dir(study_dir: Path, out: str | Path | None) -> Path:
    """Where the report goes: `out`, else the study directory when it is writable.

    Raises:
        AnyteachError: no `out` and a read-only study directory, or an `out` that is a file.
    """
    if out is None:
        if not os.access(study_dir, os.W_OK):
            raise AnyteachError(
                f"the study directory {study_dir} is read-only; give --out DIR for the report (out=... in Python)"
            )
        return study_dir
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise AnyteachError(f"report directory {out} is a file; choose a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def markdown_escape(text: str) -> str:
    """`text` as literal Markdown text (a study name may hold `*`, `#`, `[`, `|`, `<`, ...)."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|~])", r"\\\1", str(text))


def _code(text: Any) -> str:
    """`text` as a Markdown code span, whatever backticks it holds."""
    text = str(text).replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def method_setups(spec: Mapping[str, Any]) -> dict[str, str]:
    """Method label -> its own data and options, for the methods whose runs differ from the study's
    data or shared recipe (a method with `data:` or `options:` of its own)."""
    out = {}
    for m in spec.get("methods", []):
        if not isinstance(m, Mapping):
            continue
        parts = []
        if m.get("data") and m["data"] != spec.get("data"):
            parts.append(f"data {_code(m['data'])}")
        recipe = spec.get("recipe") or {}
        changed = {k: v for k, v in (m.get("options") or {}).items() if recipe.get(k, object()) != v}
        if changed:
            parts.append(", ".join(f"{k} {v}" for k, v in sorted(changed.items())))
        if parts:
            out[str(m.get("label") or m.get("name"))] = "; ".join(parts)
    return out


def headline_text(summary: StudySummary) -> str:
    """The headline table as Markdown (what `anyteach demo` prints at the end)."""
    return "\n".join(_markdown_table(headline_table(summary)))


__all__ = [
    "PAPER_RESULTS",
    "PaperResult",
    "ReportFiles",
    "bucket_table",
    "headline_table",
    "headline_text",
    "write_report",
]
