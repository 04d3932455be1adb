"""The demo: its study definition is valid and covers what the issue asks, and `run_demo` wires the
complementarity analysis, the study and the report together (on the tiny zoo, not the real one)."""

from __future__ import annotations

import json

from anyteach.demo import DEMO_PAIRS, DEMO_STUDY, DEMO_ZOO_SEED, demo_study, run_demo
from anyteach.study.driver import ModelEntry, load_study_spec, sample_pairs

from .conftest import TINY_DATA

REQUIRED_METHODS = {"kl", "xekl", "xekl+mcl", "kl+dp", "kl+dp-u", "xe"}


def test_demo_study_is_a_valid_study_of_the_required_methods():
    raw = demo_study(workers=7)
    assert raw["workers"] == 7 and DEMO_STUDY["workers"] != 7  # a copy: the definition itself is untouched
    spec = load_study_spec(raw)  # validation only: no zoo needed
    assert {m.name for m in spec.methods} >= REQUIRED_METHODS
    # one recipe for the paper's methods; only MCL keeps the paper's own higher learning rate
    paper = [m for m in spec.methods if m.name in REQUIRED_METHODS]
    assert all(not m.options and m.data is None for m in paper if m.name != "xekl+mcl")
    # the teaching preset and its no-teacher control get the same data and the same budget
    teaching, *controls = (
        next(m for m in spec.methods if m.name == name) for name in ("pl+ens+wise", "self", "self+xe+wise")
    )
    assert all(teaching.data == c.data and teaching.options == c.options for c in controls)
    assert "fresh=" in teaching.data and "calib=" in teaching.data


def test_the_demo_is_the_same_study_on_every_machine_and_on_a_zoo_nothing_was_chosen_on():
    spec = load_study_spec(demo_study())
    # the seed-3 zoo and its own data: recipes, forecaster and thresholds were developed on seeds 0, 1 and 2
    assert DEMO_ZOO_SEED not in (0, 1, 2)
    assert all(ref.startswith(f"zoo:mnist1d@{DEMO_ZOO_SEED}/") for ref in spec.models)
    assert spec.data == f"mnist1d:seed={DEMO_ZOO_SEED}"
    assert all(m.data is None or f"seed={DEMO_ZOO_SEED}," in m.data for m in spec.methods)
    # pairs and teachers named in the definition: no draw from measured accuracies, no forecast at run time
    assert not spec.pairs.balanced and spec.pairs.random is None and spec.pairs.recommended is None
    assert len(spec.pairs.list) == 24 and len(set(spec.pairs.list)) == 24
    students = {s for s, _ in spec.pairs.list}
    names = {ref.rsplit("/", 1)[1] for ref in spec.models}
    assert students == names  # every model is a student: 11 students for the sign tests
    best = next(m for m in spec.methods if m.label == "pl+ens+wise.best")
    assert isinstance(best.teacher, tuple) and {s for s, _ in best.teacher} == students
    # the same pairs, whatever accuracies another CPU trains: planning them measures none
    models = [ModelEntry(ref, ref.rsplit("/", 1)[1], "mlp", 1, None) for ref in spec.models]
    assert [(s.name, t.name) for s, t in sample_pairs(models, spec.pairs)] == [tuple(p) for p in DEMO_PAIRS]


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
