"""The report renders: files exist, PNGs are real images, the HTML references only what exists, and
the sentences follow the numbers.

The study here is synthetic (rows written straight into a store, no training), built so that the
expected verdicts are known: `kl` harms from weaker teachers and helps from much stronger ones,
`kl+dp` gains a little everywhere without significant harm, `xe` stays flat.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from anyteach.report.aggregate import summarize
from anyteach.report.document import PAPER_RESULTS, findings, headline_table, write_report
from anyteach.report.findings import MIN_STUDENTS, verdict
from anyteach.study.driver import ModelEntry, RunSpec
from anyteach.study.store import StudyStore, run_row

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _final(delta: float, strength: float, significant_harm: bool, significant_gain: bool) -> dict:
    student_acc_before = 80.0  # counts below are of an eval split of 100,000 samples (1 sample = 0.001 pp)
    gain = max(delta, 0.0) + 1.0
    loss = gain - delta
    return {
        "student_acc": student_acc_before + delta,
        "student_acc_before": student_acc_before,
        "teacher_acc": student_acc_before + strength,
        "transfer_delta": delta,
        "knowledge_gain": gain,
        "knowledge_loss": loss,
        "transfer_rate": 10.0,
        "gain_count": round(gain * 1000),
        "loss_count": round(loss * 1000),
        "p_gain": 0.01 if significant_gain else 0.5,
        "p_loss": 0.01 if significant_harm else 0.5,
    }


def make_study(study_dir: Path, n_models: int = 6) -> None:
    """6 models (3 families, growing size), 30 ordered pairs, 4 methods, deterministic numbers."""
    families = ["cnn", "mlp", "transformer"]
    models = {f"m{i}": ModelEntry(f"m{i}", f"model{i}", families[i % 3], 1000 * (i + 1)) for i in range(n_models)}
    names = {ref: m.name for ref, m in models.items()}
    accuracy = {f"m{i}": 80.0 + 2.5 * i for i in range(n_models)}
    rng = np.random.default_rng(0)
    spec = {
        "name": "synthetic",
        "data": "mnist1d",
        "seeds": [0],
        "recipe": {"epochs": 1},
        "methods": [{"name": m, "label": m, "options": {}} for m in ("kl", "kl+dp", "kl+dp-u", "xe")],
    }
    with StudyStore(study_dir) as store:
        store.set_meta("spec", json.dumps(spec))
        store.add_models([{**m.__dict__} for m in models.values()])
        for s in models:
            for t in models:
                if s == t:
                    continue
                strength = accuracy[t] - accuracy[s]
                per_method = {
                    "kl": (0.4 * strength - 1.0, strength < 0, strength > 3),
                    "kl+dp": (0.2 + 0.02 * strength + 0.01 * rng.random(), False, strength > 3),
                    "kl+dp-u": (0.1 + 0.01 * strength, False, False),
                }
                for method, (delta, harm, gain) in per_method.items():
                    run = RunSpec(method, method, s, t, 0, "{}", "mnist1d")
                    outcome = {
                        "final": _final(delta, strength, harm, gain),
                        "run_dir": "",
                        "seconds": 1.0,
                        "complementary_knowledge": 3.0 + 0.1 * abs(strength),
                    }
                    history = [{"epoch": 0, "transfer_delta": 0.0}, {"epoch": 1, "transfer_delta": delta}]
                    assert store.add_run(run_row(run, outcome, names, models), history)
            run = RunSpec("xe", "xe", s, None, 0, "{}", "mnist1d")
            outcome = {
                "final": _final(0.05 if s in ("m0", "m2") else -0.05, 0.0, False, False),
                "run_dir": "",
                "seconds": 1.0,
            }
            assert store.add_run(run_row(run, outcome, names, models), [{"epoch": 0}, {"epoch": 1}])


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("synthetic-study")
    make_study(path)
    return path


@pytest.fixture(scope="module")
def files(study_dir):
    return write_report(study_dir)


def test_report_files_exist_and_figures_are_pngs(files):
    assert files.markdown.exists() and files.html.exists()
    names = {p.name for p in files.figures}
    assert {
        "success_rate.png",
        "delta_by_bucket.png",
        "gain_vs_loss.png",
        "delta_vs_size.png",
        "complementarity_vs_gap.png",
        "delta_over_epochs.png",
    } <= names
    for path in files.figures:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, path


def test_html_is_self_contained_and_markdown_links_exist(study_dir, files):
    html = files.html.read_text()
    references = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert references, "the HTML embeds the figures"
    for ref in references:
        assert ref.startswith("data:image/png;base64,") or (study_dir / ref).exists(), ref[:80]
    assert html.count("<img") == len(files.figures)
    markdown = files.markdown.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == len(files.figures)
    for link in links:
        assert (study_dir / link).is_file(), link


def test_headline_table_sits_next_to_the_paper(study_dir, files):
    summary = summarize(study_dir)
    table = headline_table(summary).set_index("method")
    assert table.loc["kl+dp", "paper success"] == "92.5%"
    assert table.loc["kl", "paper mean Δ (pp)"] == "-0.30"
    assert table.loc["xe", "paper success"] == "–"
    assert table.loc["kl+dp", "median success [IQR]"].startswith("100.0%")
    markdown = files.markdown.read_text()
    for paper in PAPER_RESULTS["kl"], PAPER_RESULTS["kl+dp"], PAPER_RESULTS["kl+dp-u"]:
        assert paper.success_text in markdown


def test_findings_follow_the_numbers(study_dir):
    sentences = findings(summarize(study_dir))
    text = "\n".join(sentences)
    # kl+dp succeeds on every pair: agrees with the paper's 92.5%
    dp = next(s for s in sentences if s.startswith("**kl+dp** (KL + DP)"))
    assert "median success rate 100.0%" in dp and "agrees with the paper's 92.5%" in dp
    # kl: Δ = 0.4·strength − 1 > 0 only for strength > 2.5: harms weak teachers, helps strong ones
    kl_claim = next(s for s in sentences if s.startswith("Paper: plain KL"))
    assert kl_claim.endswith("agrees.")
    dp_both = next(s for s in sentences if s.startswith("Paper: DP gains"))
    assert dp_both.endswith("agrees.")
    safety = next(s for s in sentences if s.startswith("DP's point"))
    assert "agrees (DP is much safer)" in safety
    control = next(s for s in sentences if s.startswith("The **xe** control"))
    assert "plateau" in control
    assert "**kl+dp** does significantly better than the control, paired by student" in text  # 6 of 6 students
    assert any(s.startswith("Ranking by median success rate") for s in sentences)


def test_every_verdict_states_its_sample_size(study_dir):
    for sentence in findings(summarize(study_dir)):
        assert re.search(r"n=\d+ students?", sentence), sentence


def test_the_report_opens_with_a_three_sentence_verdict(files):
    html = files.html.read_text()
    assert html.index("<strong>Verdict.</strong>") < html.index("<table")
    opening = re.search(r"<strong>Verdict.</strong>(.*?)</div>", html).group(1)
    assert "What teaches beyond the same training without a teacher: <strong>kl+dp</strong> (6 of 6 students" in opening
    assert "not safe: <strong>kl</strong> (50% of 30 runs)" in opening  # kl harms every run with a weaker teacher
    assert "How much of the available gain was taken" in opening


def test_below_the_minimum_no_verdict_is_given(tmp_path):
    make_study(tmp_path, n_models=3)  # 3 students < MIN_STUDENTS
    assert MIN_STUDENTS > 3
    summary = summarize(tmp_path)
    sentences = findings(summary)
    assert sentences and all(re.search(r"too few students to tell \(n=[23]\)", s) for s in sentences), sentences
    assert not any(
        word in s
        for s in sentences
        for word in ("agrees", "does significantly", "not significantly", "plateau:", "trend")
    )
    opening = verdict(summary)
    assert len(opening) == 3
    assert opening[0] == "What teaches: too few students to tell (n=3) against the no-teacher controls."
    assert opening[1] == "What is safe: too few students to tell (n=3)."


def test_report_of_a_missing_study_is_a_user_error(tmp_path):
    from anyteach import AnyteachError

    with pytest.raises(AnyteachError, match="not a study directory"):
        write_report(tmp_path / "nothing")


def _renderer():
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "render_report.py"
    spec = importlib.util.spec_from_file_location("render_report", script)
    render_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_report)
    if render_report.find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return render_report


def test_the_first_screen_shows_the_verdict_and_the_figure(files):
    """At 1400 x 900, before any scrolling, the reader sees the verdict and the whole opening figure."""
    facts = _renderer().page_facts(files.html, width=1400, screen=900)
    assert facts["broken_images"] == 0
    assert 0 < facts["verdict_bottom"] <= 900, facts
    assert 0 < facts["figure_bottom"] <= 900, facts


def test_the_report_opens_with_the_beyond_control_figure_then_the_table(study_dir, files):
    html = files.html.read_text()
    assert html.index('<div class="lead">') < html.index("<strong>Verdict.</strong>") < html.index("<table")
    assert (study_dir / "figures" / "beyond_control.png").is_file()
    markdown = files.markdown.read_text()
    assert markdown.index("**Verdict.**") < markdown.index("figures/beyond_control.png") < markdown.index("| method |")
    # the findings under headings, after the headline table
    assert (
        markdown.index("## Headline")
        < markdown.index("## Findings")
        < markdown.index("### Against the no-teacher controls")
    )
    assert "### Against the paper" in markdown


def test_the_figure_intervals_follow_the_per_student_differences(study_dir):
    from anyteach.report.document import paired_runs, student_families
    from anyteach.report.figures import beyond_control_intervals, t_quantile

    summary = summarize(study_dir)
    paired = paired_runs(summary)
    assert set(paired["label"]) == {"kl", "kl+dp", "kl+dp-u"} and set(paired["control"]) == {"xe"}
    assert len(paired) == 90  # every teacher run of the three methods has its student's xe run
    table = beyond_control_intervals(paired, student_families(summary.runs))
    row = table[(table["method"] == "kl+dp") & (table["group"] == "all students")].iloc[0]
    per_student = paired[paired["label"] == "kl+dp"].groupby("student")["delta_beyond"].mean().to_numpy()
    assert row["students"] == 6 and row["mean"] == pytest.approx(per_student.mean())
    half = t_quantile(5) * per_student.std(ddof=1) / np.sqrt(6)
    assert (row["low"], row["high"]) == pytest.approx((per_student.mean() - half, per_student.mean() + half))
    assert set(table["group"]) == {"all students", "cnn", "mlp", "transformer"}


def test_every_run_is_in_the_run_table_with_formatted_numbers(study_dir, files):
    markdown = files.markdown.read_text()
    section = markdown.split("## Every run", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| model")]
    assert len(rows) == 96  # 90 teacher runs and 6 controls
    control_rows = [r for r in rows if r.split(" | ")[2] == "xe"]
    assert len(control_rows) == 6 and all(r.split(" | ")[4] == "–" for r in control_rows)
    one = next(r for r in rows if r.startswith("| model0 | model2 | kl |"))
    assert one.split(" | ")[3:6] == ["+1.00", "+0.95", "xe"]  # Δ 0.4·5 − 1; the control gained 0.05


def test_no_table_holds_a_raw_float_or_nan(files):
    """Every number in every table is formatted: no `0.123456789`, no `nan`."""
    markdown = files.markdown.read_text()
    table_lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert table_lines
    for line in table_lines:
        assert not re.search(r"\d\.\d{4,}", line), line
        assert not re.search(r"\bnan\b", line, re.IGNORECASE), line


def test_a_browser_shows_the_figures_and_tables(files, tmp_path):
    """The HTML as a person sees it: headless Chromium loads it, every embedded figure decodes, the
    tables have rows, and the screenshot is the whole page (skipped without Chromium)."""
    render_report = _renderer()
    facts = render_report.page_facts(files.html)
    assert facts["images"] == len(files.figures) and facts["broken_images"] == 0
    assert facts["tables"] >= 4  # headline, two by-bucket tables, by student family
    png = render_report.render(files.html, tmp_path / "report.png")
    from PIL import Image

    with Image.open(png) as image:
        assert image.width == 1200 and image.height >= facts["height"] > 3000


def test_gain_shares_are_ranked_only_within_the_same_data_and_budget(tmp_path):
    """Issue 16 item 5: a method on 100,000 fresh samples for 2 epochs and one on the train split for 1 epoch
    are not ranked against each other by their share of the available gain."""
    models = {f"m{i}": ModelEntry(f"m{i}", f"model{i}", "mlp", 1000) for i in range(MIN_STUDENTS)}
    names = {ref: m.name for ref, m in models.items()}
    runs = {
        "kl+dp": ("mnist1d", '{"epochs": 1}', 0.1),
        "pl+ens+wise": ("mnist1d:fresh=1000", '{"epochs": 2}', 0.5),
        "kl": ("mnist1d", '{"epochs": 1}', 0.2),
    }
    with StudyStore(tmp_path) as store:
        store.set_meta(
            "spec",
            json.dumps(
                {
                    "name": "budgets",
                    "data": "mnist1d",
                    "seeds": [0],
                    "recipe": {},
                    "methods": [{"name": m, "label": m, "options": {}} for m in runs],
                }
            ),
        )
        store.add_models([{**m.__dict__} for m in models.values()])
        for s in models:
            t = next(m for m in models if m != s)
            for method, (data, options, delta) in runs.items():
                final = {
                    **_final(delta, 1.0, False, False),
                    "ensemble_delta": 2.0,
                    "ensemble_acc": 82.0,
                    "transfer_efficiency": 50.0 * delta,
                }
                outcome = {"final": final, "run_dir": "", "seconds": 1.0}
                assert store.add_run(
                    run_row(RunSpec(method, method, s, t, 0, options, data), outcome, names, models), [{"epoch": 0}]
                )
    taken = verdict(summarize(tmp_path))[2]
    assert "ranked only among methods of the same data and budget" in taken
    assert re.search(r"on `mnist1d`, 1 epoch, batch \d+: \*\*kl\*\* 10% .*\*\*kl\+dp\*\* 5%", taken), taken
    assert re.search(r"on `mnist1d:fresh=1000`, 2 epochs, batch \d+: \*\*pl\+ens\+wise\*\* 25%", taken), taken


def test_prose_columns_align_left_and_numbers_right():
    import pandas as pd

    from anyteach.report.document import Report

    report = Report("t")
    report.table(
        pd.DataFrame(
            {
                "method": ["a", "b"],
                "runs": [24, 9],
                "rho": ["+0.85", "–"],
                "forecast": ["Δ beyond self ≈ -0.04 +1.0·ln(1 + gain)", "not re-fitted"],
            }
        )
    )
    markdown = report.markdown(Path("."))
    assert "|---|---:|---:|---|" in markdown
    html = report.html()
    assert '<th class="prose">forecast</th>' in html and "<th>runs</th>" in html


def test_a_failed_re_render_leaves_no_old_report(tmp_path):
    """A report that cannot be built removes the earlier one: a stale report never stands for the study."""
    make_study(tmp_path)
    first = write_report(tmp_path)
    assert first.html.exists() and first.markdown.exists()

    def broken(report, summary):
        raise RuntimeError("a section failed")

    with pytest.raises(RuntimeError, match="a section failed"):
        write_report(tmp_path, sections=[broken])
    assert not first.html.exists() and not first.markdown.exists()
    again = write_report(tmp_path)  # and a good render writes it again
    assert again.html.exists()


def test_a_method_without_labels_is_paired_with_the_stronger_of_its_controls(tmp_path):
    """`pl+ens+wise` runs are paired per student with the stronger of `self` and `self+xe+wise`; the opening
    figure shows the teacher's method only, and the run table every run."""
    from anyteach.report.document import paired_runs, run_table, student_families
    from anyteach.report.figures import beyond_control_intervals

    models = {f"m{i}": ModelEntry(f"m{i}", f"model{i}", "mlp", 1000) for i in range(MIN_STUDENTS)}
    names = {ref: m.name for ref, m in models.items()}
    controls = {"self": lambda i: 0.1 * i, "self+xe+wise": lambda i: 0.2}  # self stronger from student 3 on
    with StudyStore(tmp_path) as store:
        store.set_meta("spec", json.dumps({"name": "teaching", "data": "mnist1d", "seeds": [0], "methods": []}))
        store.add_models([{**m.__dict__} for m in models.values()])
        for i, s in enumerate(models):
            teacher = next(m for m in models if m != s)
            runs = [("pl+ens+wise", teacher, 1.0)] + [(c, None, delta(i)) for c, delta in controls.items()]
            for method, t, delta in runs:
                spec = RunSpec(method, method, s, t, 0, '{"epochs": 2}', "mnist1d:fresh=1000")
                outcome = {
                    "final": _final(delta, 1.0, False, False),
                    "run_dir": str(tmp_path / f"{s}-{method}"),
                    "seconds": 1.0,
                }
                assert store.add_run(run_row(spec, outcome, names, models), [{"epoch": 0}])
    summary = summarize(tmp_path)
    paired = paired_runs(summary)
    taught = paired[paired["label"] == "pl+ens+wise"].set_index("student")
    assert len(taught) == MIN_STUDENTS
    for i, s in enumerate(models):
        stronger = max(controls, key=lambda c: round(controls[c](i) * 1000))
        assert taught.loc[s, "control"] == stronger
        assert taught.loc[s, "delta_beyond"] == pytest.approx(1.0 - controls[stronger](i))
    intervals = beyond_control_intervals(paired[paired["teacher"] != ""], student_families(summary.runs))
    assert set(intervals["method"]) == {"pl+ens+wise"} and list(intervals["group"]) == ["all students"]
    table = run_table(summary, paired, tmp_path)
    assert len(table) == 3 * MIN_STUDENTS
    assert set(table["file"]) >= {f"`{s}-pl+ens+wise`" for s in models}  # relative to the study directory
