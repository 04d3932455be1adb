"""The demo: its study definition is valid and covers what the issue asks, and `run_demo` wires the
complementarity analysis, the study and the report together (on the tiny zoo, not the real one)."""

from __future__ import annotations

import json

from anyteach.demo import DEMO_STUDY, demo_study, run_demo
from anyteach.study.driver import load_study_spec

from .conftest import TINY_DATA

REQUIRED_METHODS = {"kl", "xekl", "xekl+mcl", "kl+dp", "kl+dp-u", "xe"}


def test_demo_study_is_a_valid_balanced_study_of_the_required_methods():
    raw = demo_study(workers=7)
    assert raw["workers"] == 7 and DEMO_STUDY["workers"] != 7  # a copy: the definition itself is untouched
    raw["models"] = ["zoo:mnist1d/mlp", "zoo:mnist1d/gru"]  # validation only: no zoo needed
    spec = load_study_spec(raw)
    assert {m.name for m in spec.methods} >= REQUIRED_METHODS
    assert spec.pairs.random >= 24 and spec.pairs.balanced
    # one recipe for the paper's methods; only MCL keeps the paper's own higher learning rate
    paper = [m for m in spec.methods if m.name in REQUIRED_METHODS]
    assert all(not m.options and m.data is None for m in paper if m.name != "xekl+mcl")
    # the teaching preset and its no-teacher control get the same data and the same budget
    teaching, *controls = (
        next(m for m in spec.methods if m.name == name) for name in ("pl+ens+wise", "self", "self+xe+wise")
    )
    assert all(teaching.data == c.data and teaching.options == c.options for c in controls)
    assert "fresh=" in teaching.data and "calib=" in teaching.data


def test_run_demo_writes_analysis_study_and_report(tiny_zoo, tmp_path):
    study = {
        "models": list(tiny_zoo.values()),
        "data": TINY_DATA,
        "pairs": {"random": 3, "seed": 0},
        "methods": ["kl", "kl+dp", "xe"],
        "recipe": {"epochs": 1, "batch_size": 256},
        "workers": 1,
    }
    result = run_demo(tmp_path / "demo", study, progress=False)
    assert result.complementarity.num_models == len(tiny_zoo)
    assert (tmp_path / "demo" / "complementarity" / "pairs.csv").stat().st_size > 0
    assert json.loads((tmp_path / "demo" / "complementarity" / "zoo.json").read_text())
    assert result.report_html.is_file() and result.report_markdown.is_file()
    assert all(p.is_file() and p.stat().st_size > 1000 for p in result.figures)
    runs = result.summary.runs
    assert len(runs) == 3 * 2 + runs["student"].nunique()  # kl and kl+dp per pair, the xe control per student
    assert set(runs["label"]) == {"kl", "kl+dp", "xe"}
    again = run_demo(tmp_path / "demo", study, progress=False)  # resumes: nothing left to run
    assert len(again.summary.runs) == len(runs)


def test_glyphs_demo_study_has_the_methods_controls_and_teaching_preset():
    raw = demo_study(workers=1, zoo="glyphs")
    raw["models"] = ["zoo:glyphs/resnet10t_w8", "zoo:glyphs/levit_d64"]  # validation only: no zoo needed
    spec = load_study_spec(raw)
    names = {m.name for m in spec.methods}
    assert {"kl", "kl+dp", "xe", "self", "pl+ens+wise"} <= names and spec.data.startswith("glyphs")
    teaching, control = (next(m for m in spec.methods if m.name == name) for name in ("pl+ens+wise", "self"))
    assert teaching.data == control.data and teaching.options == control.options and "fresh=" in teaching.data
    assert spec.pairs.balanced
