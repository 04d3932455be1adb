"""Whether the MNIST-1D conclusions hold on another study: each check follows the numbers.

The study is the synthetic one of `test_report` (rows written straight into a store): `kl` harms
from weaker teachers, `kl+dp` gains a little everywhere without harm (beyond the flat `xe` control
for every student), and there is no teaching preset, so its checks cannot be made.
"""

from __future__ import annotations

import numpy as np

from anyteach.report.aggregate import summarize
from anyteach.report.crosscheck import beating_controls, check_sentences, conclusion_checks, crosscheck_section
from anyteach.report.document import write_report

from .test_report import make_study


def test_each_conclusion_follows_the_numbers(tmp_path):
    make_study(tmp_path)
    summary = summarize(tmp_path)
    flips = np.array([[0.0, 2.0, 3.0], [1.5, 0.0, 0.5], [4.0, 0.2, 0.0]])
    checks = {c["key"]: c for c in conclusion_checks(summary, flips)}
    assert checks["complementary"]["holds"] is True and "min 0.2%" in checks["complementary"]["here"]
    assert checks["plateau"]["holds"] is True  # xe moves by +-0.05 pp
    assert checks["kl_forgets"]["holds"] is True and "100% of them significantly harmed" in checks["kl_forgets"]["here"]
    assert checks["dp_safe"]["holds"] is True and checks["dp_safe"]["here"].startswith("kl+dp 0%")
    # kl+dp beats the flat control for all 6 students (sign test p = 1/64): MNIST-1D's "not beyond xe" fails
    assert checks["dp_small"]["holds"] is False and "6/6 students" in checks["dp_small"]["here"]
    assert checks["teaching_beats_control"]["holds"] is None and checks["efficiency"]["holds"] is None
    assert "kl+dp" in beating_controls(summary) and "kl" not in beating_controls(summary)
    no_pairs = {c["key"]: c["holds"] for c in conclusion_checks(summary, np.zeros((3, 3)))}
    assert no_pairs["complementary"] is False
    sentences = check_sentences(list(checks.values()))
    assert len(sentences) == len(checks) and "**does not hold**" in sentences[4]


def test_the_section_goes_into_the_report(tmp_path):
    make_study(tmp_path)
    files = write_report(tmp_path, sections=[crosscheck_section(np.full((2, 2), 3.0), reference="MNIST-1D")])
    text = files.markdown.read_text()
    assert text.count("Do the MNIST-1D conclusions hold here?") == 1  # each extra section once
    assert "4 of 5 checked conclusions" in text and "Methods beating their control here" in text
