"""Teachers ranked before training (issue 17): signals from cached calib predictions, the forecaster's
fit / save / load / re-fit from a finished study, `pairs: {recommended: k}` planning, and the report's
"what makes a good teacher and student" section, on the `tiny_zoo` fixture (real models, real runs)."""

from __future__ import annotations

import json
import math
import re
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from anyteach.analysis.forecast import (
    Forecaster,
    fit_forecast,
    pair_signals,
    rank_rows,
    rank_teachers,
    recommended_pairs,
    shipped_forecaster,
)
from anyteach.core.errors import AnyteachError

from .conftest import TINY_DATA

CALIB_DATA = TINY_DATA + ",calib=500"
RECIPE = {"epochs": 1, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3}


def test_signals_come_from_the_calib_split_and_agree_with_the_pair_metrics(tiny_zoo):
    from anyteach import load_dataset, positive_flips, predict

    refs = list(tiny_zoo.values())
    table = pair_signals(refs, refs, CALIB_DATA)
    assert len(table) == len(refs) * (len(refs) - 1)  # every ordered pair of different models
    data = load_dataset(CALIB_DATA)
    calib = {r: predict(r, data, "calib") for r in refs}
    evals = {r: predict(r, data, "eval") for r in refs}
    for row in table.itertuples():
        s, t = calib[row.student], calib[row.teacher]
        assert row.student_acc == pytest.approx(s.accuracy, abs=1e-4)
        assert row.complementary_knowledge == pytest.approx(positive_flips(s.predicted, t.predicted, s.labels))
        # w = 0 (the student alone) is a candidate of the ens choice, so the ensemble never loses on calib
        assert row.available_gain >= -1e-6 and 0.0 <= row.teacher_weight <= 1.0
        assert row.bucket in ("much weaker", "weaker", "equal", "stronger", "much stronger")
        assert 0.0 <= row.student_ece <= 100.0
        confidence = s.probabilities().max(1).values.mean().item()
        assert row.student_overconfidence == pytest.approx(100 * confidence - s.accuracy, abs=1e-3)
    # not the eval split: accuracies there differ for at least one model
    assert any(abs(calib[r].accuracy - evals[r].accuracy) > 1e-6 for r in refs)

    with pytest.raises(AnyteachError, match="no calib split"):
        pair_signals(refs[:1], refs, TINY_DATA)


def test_fit_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "student": np.repeat(["a", "b", "c"], 5),
            "available_gain": rng.uniform(0, 10, 15),
            "complementary_knowledge": rng.uniform(0, 12, 15),
        }
    )
    realised = 0.1 + 0.2 * table["available_gain"] - 0.05 * table["complementary_knowledge"]
    two = ("available_gain", "complementary_knowledge")
    fit = fit_forecast(table, realised, method="m", control="self", use=two)
    assert fit.coef == pytest.approx((0.2, -0.05)) and fit.intercept == pytest.approx(0.1)
    assert fit.half_width == pytest.approx(0.0, abs=1e-9) and fit.runs == 15 and fit.students == 3
    noisy = fit_forecast(table, realised + rng.normal(0, 0.3, 15), method="m", control="self", use=two)
    assert 0.2 < noisy.half_width / 1.96 < 0.6  # the residual spread of the noise

    path = Forecaster({"m": noisy}, "test").save(tmp_path / "f.json")
    loaded = Forecaster.load(path)
    assert loaded.get("m") == noisy
    np.testing.assert_allclose(loaded.get("m").predict(table), noisy.predict(table))

    flat = fit_forecast(table, realised, method="m", control="self", use=())  # nothing ranks: the mean
    np.testing.assert_allclose(flat.predict(table), realised.mean())
    assert flat.top_signal(table) == ["none"] * 15 and "no signal ranks" in flat.sentence()

    with pytest.raises(AnyteachError, match="too few"):
        fit_forecast(table.head(3), realised.head(3), method="m", control="self", use=two)
    with pytest.raises(AnyteachError, match="no forecast for method 'x'"):
        loaded.get("x")
    (tmp_path / "bad.json").write_text(json.dumps({"methods": {"m": {"method": "m"}}}))
    with pytest.raises(AnyteachError, match="not a forecaster file"):
        Forecaster.load(tmp_path / "bad.json")


def test_derived_signals_are_computed_from_the_signal_columns():
    from anyteach.analysis.forecast import DEFAULT_SIGNALS, overconfidence, signal_values

    table = pd.DataFrame(
        {
            "student": ["a", "a", "b", "b"],
            "available_gain": [-0.5, 0.0, math.e - 1, 3.0],
            "student_params": [100, 100, 10_000, 10_000],
        }
    )
    values = signal_values(table, ("log_available_gain", "student_log_size", "log_available_gain_x_student_log_size"))
    np.testing.assert_allclose(values[:, 0], [0.0, 0.0, 1.0, math.log(4.0)])  # a negative gain offers nothing
    np.testing.assert_allclose(values[:, 1], [2.0, 2.0, 4.0, 4.0])
    np.testing.assert_allclose(values[:, 2], values[:, 0] * values[:, 1])
    with pytest.raises(AnyteachError, match="unknown signals"):
        signal_values(table, ("shoe_size",))
    with pytest.raises(AnyteachError, match="needs the column 'complementary_knowledge'"):
        signal_values(table, ("complementary_knowledge",))

    # a line in log(1 + gain) whose slope grows with the student's size is recovered exactly ...
    rng = np.random.default_rng(1)
    runs = pd.DataFrame(
        {
            "student": np.repeat(["s1", "s2", "s3"], 6),
            "available_gain": rng.uniform(0, 30, 18),
            "student_params": np.repeat([3_000, 30_000, 300_000], 6),
        }
    )
    x = signal_values(runs, DEFAULT_SIGNALS)
    realised = -0.1 + 0.3 * x[:, 0] + 0.05 * x[:, 1]
    fit = fit_forecast(runs, realised, method="m", control="self")  # the default form
    assert fit.signals == DEFAULT_SIGNALS and fit.coef == pytest.approx((0.3, 0.05))
    # ... and survives the file, so a saved forecaster predicts the same
    again = Forecaster.from_dict(json.loads(json.dumps(Forecaster({"m": fit}).as_dict()))).get("m")
    np.testing.assert_allclose(again.predict(runs), realised, atol=1e-9)
    assert "ln(1 + available gain) × log10 student parameters" in fit.sentence()
    # a student far larger than any it was fitted on (a timm model after an MNIST-1D fit) is flagged
    assert not again.outside(runs).any()
    assert set(again.ranges) == {"available_gain", "student_params"}  # the sources, not their logs
    assert again.ranges["student_params"] == (3_000, 300_000)
    bigger = runs.head(2).assign(student_params=25_000_000)
    assert list(again.outside(bigger)) == [True, True]
    assert list(rank_rows(bigger, again)["extrapolated"]) == [True, True]
    assert again.extrapolation_note(bigger) == "student params 25,000,000 (fitted on 3,000–300,000)"
    assert again.extrapolation_note(runs) == ""

    # equal forecasts: more complementary knowledge first, then the more accurate teacher
    tied = pd.DataFrame(
        {
            "student": ["s"] * 3,
            "teacher": ["t1", "t2", "t3"],
            "available_gain": [0.24, 0.24, 0.24],
            "student_params": [10_000] * 3,
            "complementary_knowledge": [1.0, 2.0, 2.0],
            "teacher_acc": [99.0, 90.0, 95.0],
        }
    )
    ranked = rank_rows(tied, again)
    assert list(ranked["teacher"]) == ["t3", "t2", "t1"] and list(ranked["rank"]) == [1, 2, 3]

    # over-confidence: mean max-probability minus accuracy, in pp
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]]))
    labels = torch.tensor([0, 1, 1, 0])  # 3 of 4 right, mean confidence 0.75
    assert overconfidence(logits, labels) == pytest.approx(100 * (0.75 - 0.75), abs=1e-5)
    assert overconfidence(logits, torch.tensor([1, 1, 0, 1])) == pytest.approx(100 * (0.75 - 0.0), abs=1e-5)


def test_the_shipped_forecaster_covers_both_methods():
    shipped = shipped_forecaster()
    assert {"pl+ens+wise", "kl+dp"} <= set(shipped.methods)
    assert shipped.get("pl+ens+wise").control == "self" and shipped.get("kl+dp").control == "xe"
    assert all(f.runs >= 10 for f in shipped.methods.values())
    # a study label speaks through its own forecast, else its method's (teacher: best runs are labelled .best)
    from anyteach.report.teacher_choice import forecast_key

    assert forecast_key(shipped, "pl+ens+wise.best", pd.DataFrame({"method": ["pl+ens+wise"]})) == "pl+ens+wise"
    assert forecast_key(shipped, "kl+dp", pd.DataFrame()) == "kl+dp"
    assert forecast_key(shipped, "mine", pd.DataFrame({"method": ["kl"]})) is None


def test_rank_teachers_orders_by_forecast(tiny_zoo, tmp_path):
    student = tiny_zoo["mlp"]
    forecast = fit_forecast(
        pd.DataFrame({"student": ["s"] * 4, "available_gain": [0.0, 1.0, 2.0, 3.0]}),
        [0.0, 1.0, 2.0, 3.0],
        method="m",
        control="xe",
        use=("available_gain",),
    )
    import anyteach

    ranking = anyteach.rank_teachers(
        student, list(tiny_zoo.values()), CALIB_DATA, method="m", forecaster=Forecaster({"m": forecast})
    )  # the public API, as the README shows
    assert anyteach.rank_teachers is rank_teachers
    t = ranking.table
    assert list(t["rank"]) == [1, 2, 3] and student not in set(t["teacher"])
    assert t["forecast"].is_monotonic_decreasing
    np.testing.assert_allclose(t["forecast"], t["available_gain"])  # this forecaster is the available gain
    assert (t["forecast_high"] - t["forecast_low"]).round(9).nunique() == 1
    assert set(t["top_signal"]) == {"available_gain"}
    as_json = json.loads(json.dumps(ranking.as_dict()))
    assert as_json["split"] == "calib" and len(as_json["teachers"]) == 3
    from anyteach.analysis.forecast import ranking_figure

    assert ranking_figure(ranking, tmp_path / "teachers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a perfect-fit line has a zero-width interval: every teacher with a positive gain is beyond it
    positive = int((t["available_gain"] > 0).sum())
    assert (
        as_json["verdict"].startswith(f"{positive} of 3 teachers are forecast to beat xe")
        if positive
        else as_json["verdict"].startswith("No teacher")
    )
    # a flat forecast of nothing: every interval includes 0, and the verdict says so
    flat = fit_forecast(pd.DataFrame({"student": ["s"] * 4}), [-0.1, 0.1, -0.2, 0.2], method="m", control="xe", use=())
    nothing = rank_teachers(
        student, list(tiny_zoo.values()), CALIB_DATA, method="m", forecaster=Forecaster({"m": flat})
    )
    assert (
        nothing.verdict().startswith("No teacher is forecast to beat xe")
        and "expect little from m" in nothing.verdict()
    )

    with pytest.raises(AnyteachError, match="no forecast for method"):
        rank_teachers(
            student, list(tiny_zoo.values()), CALIB_DATA, method="nope", forecaster=Forecaster({"m": forecast})
        )


def test_recommended_pairs_plan(tiny_zoo):
    from anyteach.study.driver import load_study_spec, plan_study

    refs = list(tiny_zoo.values())
    spec = load_study_spec(
        {
            "models": refs,
            "data": CALIB_DATA,
            "methods": ["kl+dp", "xe"],
            "recipe": RECIPE,
            "pairs": {"recommended": 1, "seed": 3, "students": [refs[0], refs[1]]},
        }
    )
    plan = plan_study(spec)
    shipped = shipped_forecaster()
    for student in refs[:2]:
        ranked = rank_teachers(student, refs, CALIB_DATA, method="kl+dp", forecaster=shipped).table
        planned = [t.ref for s, t in plan.pairs if s.ref == student]
        assert planned[0] == ranked["teacher"].iloc[0]  # its best-forecast teacher first
        assert 1 <= len(planned) <= 2  # ... and a random draw of one more (possibly the same)
    again = recommended_pairs(refs[:2], refs, 1, CALIB_DATA, method="kl+dp", seed=3)
    assert [(s.ref, t.ref) for s, t in plan.pairs] == again.ordered()  # deterministic
    assert sum(r.label == "xe" for r in plan.runs) == 2  # controls once per student

    with pytest.raises(AnyteachError, match="exclude each other"):
        load_study_spec(
            {"models": refs, "data": CALIB_DATA, "methods": ["kl+dp"], "pairs": {"recommended": 1, "random": 2}}
        )
    no_calib = load_study_spec(
        {"models": refs, "data": TINY_DATA, "methods": ["kl+dp"], "recipe": RECIPE, "pairs": {"recommended": 1}}
    )
    with pytest.raises(AnyteachError, match="calib split"):
        plan_study(no_calib)


def test_a_method_with_teacher_best_runs_once_per_student_with_its_best_forecast_teacher(tiny_zoo):
    from anyteach.study.driver import load_study_spec, plan_study

    refs = list(tiny_zoo.values())
    spec = load_study_spec(
        {
            "models": refs,
            "data": CALIB_DATA,
            "recipe": RECIPE,
            "pairs": {"random": 3, "seed": 1},
            "methods": ["kl", {"name": "pl+ens+wise", "label": "pl+ens+wise.best", "teacher": "best"}, "self"],
        }
    )
    plan = plan_study(spec)
    students = list(dict.fromkeys(s.ref for s, _ in plan.pairs))
    best = [r for r in plan.runs if r.label == "pl+ens+wise.best"]
    assert [r.student for r in best] == students  # one run per student of the study, in study order
    shipped = shipped_forecaster()
    for run in best:
        ranked = rank_teachers(run.student, refs, CALIB_DATA, method="pl+ens+wise", forecaster=shipped).table
        assert run.teacher == ranked["teacher"].iloc[0] != run.student
    assert sum(r.label == "kl" for r in plan.runs) == 3 and sum(r.label == "self" for r in plan.runs) == len(students)
    assert load_study_spec(spec.to_dict()).methods[1].teacher == "best"  # study.yaml keeps it
    with pytest.raises(AnyteachError, match="not one of best"):
        load_study_spec({"models": refs, "data": CALIB_DATA, "methods": [{"name": "kl", "teacher": "worst"}]})
    with pytest.raises(AnyteachError, match="uses no teacher"):
        load_study_spec({"models": refs, "data": CALIB_DATA, "methods": [{"name": "xe", "teacher": "best"}]})
    no_calib = load_study_spec(
        {"models": refs, "data": TINY_DATA, "recipe": RECIPE, "methods": [{"name": "kl", "teacher": "best"}]}
    )
    with pytest.raises(AnyteachError, match="calib split"):
        plan_study(no_calib)


@pytest.fixture(scope="module")
def calib_study(tiny_zoo, tmp_path_factory):
    """kl+dp and its xe control, every teacher of two students, on data with a calib split."""
    from anyteach.study.driver import run_study

    refs = list(tiny_zoo.values())
    study_dir = tmp_path_factory.mktemp("teachers-study")
    run_study(
        {
            "models": refs,
            "data": CALIB_DATA,
            "methods": ["kl+dp", "xe"],
            "recipe": RECIPE,
            "pairs": {"students": [refs[1], refs[3]]},
        },
        study_dir,
        progress=False,
    )
    return study_dir


def test_refit_from_a_finished_study(calib_study, tiny_zoo, tmp_path, capsys):
    from anyteach.cli import main
    from anyteach.report.teacher_choice import beyond_control, fit_from_study, study_runs

    paired = beyond_control(study_runs(calib_study))
    assert len(paired) == 6 and set(paired["control"]) == {"xe"}
    runs = study_runs(calib_study)
    one = paired.iloc[0]
    control = runs[(runs["method"] == "xe") & (runs["student"] == one["student"])].iloc[0]
    assert one["net_beyond"] == (one["gain_count"] - one["loss_count"]) - (
        control["gain_count"] - control["loss_count"]
    )
    fitted = fit_from_study(calib_study, CALIB_DATA, base=shipped_forecaster())
    assert fitted.get("kl+dp").runs == 6 and fitted.get("kl+dp").fitted_on == calib_study.name
    assert fitted.get("pl+ens+wise") == shipped_forecaster().get("pl+ens+wise")  # kept from the base

    old = sys.argv
    sys.argv = [
        "anyteach",
        "teachers",
        "mlp",
        "--zoo",
        ",".join(tiny_zoo.values()),
        "--data",
        CALIB_DATA,
        "--method",
        "kl+dp",
        "--fit",
        str(calib_study),
        "--json",
    ]
    code = 0
    try:
        main()  # returns on success; a failure would exit non-zero
    except SystemExit as exit_info:
        code = exit_info.code
    finally:
        sys.argv = old
    assert code in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "kl+dp" and len(out["teachers"]) == 3
    assert Forecaster.load(calib_study / "forecaster.json").get("kl+dp") == fitted.get("kl+dp")


def test_report_of_a_study_with_controls_and_recommended_pairs(tiny_zoo, tmp_path, capsys):
    """`anyteach report` on a study of `pairs: {recommended: 1}` with a control compares the arms that ran
    (it once crashed there, leaving the old report in place)."""
    from anyteach.analysis.forecast import recommended_pairs
    from anyteach.cli import main
    from anyteach.study.driver import run_study

    refs = list(tiny_zoo.values())
    study_dir = tmp_path / "recommended"
    spec = {
        "models": refs,
        "data": CALIB_DATA,
        "methods": ["kl+dp", "xe"],
        "recipe": RECIPE,
        "pairs": {"recommended": 1, "seed": 2, "students": [refs[0], refs[2]]},
    }
    run_study(spec, study_dir, progress=False)
    (study_dir / "report.html").write_text("an old report")
    old = sys.argv
    sys.argv = ["anyteach", "report", str(study_dir)]
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code
    finally:
        sys.argv = old
    assert code in (0, None), capsys.readouterr().err
    text = (study_dir / "report.md").read_text()
    assert "### Recommended pairs against a random draw" in text
    assert "an old report" not in (study_dir / "report.html").read_text()
    chosen = recommended_pairs(refs[:3:2], refs, 1, CALIB_DATA, method="kl+dp", seed=2)
    section = text.split("### Recommended pairs against a random draw", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| kl+dp |")]
    assert [r.split(" | ")[1] for r in rows] == ["recommended", "random draw"]
    assert rows[0].split(" | ")[2] == str(len(chosen.recommended))  # one run per student in each arm
    for line in text.splitlines():  # every table cell formatted: no raw float, no nan correlation
        if line.startswith("|"):
            assert not re.search(r"\d\.\d{4,}", line) and not re.search(r"\bnan\b", line, re.IGNORECASE), line


def test_report_says_what_makes_a_good_teacher(calib_study):
    from anyteach.report.document import write_report
    from anyteach.report.teacher_choice import property_correlations, resolvable, spearman

    files = write_report(calib_study)
    text = files.markdown.read_text()
    assert "## What makes a good teacher and student" in text
    # the shipped forecast checked on this study's runs, and re-fitted on them beside the report
    assert "### The teacher forecast on this study" in text
    refitted = Forecaster.load(files.markdown.parent / "forecaster.json")
    assert refitted.get("kl+dp").runs == 6 and refitted.get("kl+dp").fitted_on == calib_study.name
    assert refitted.get("kl+dp").signals == shipped_forecaster().get("kl+dp").signals
    assert refitted.get("pl+ens+wise") == shipped_forecaster().get("pl+ens+wise")  # kept for a method not run
    row = next(line for line in text.splitlines() if line.startswith("| `kl+dp` |"))
    assert refitted.get("kl+dp").sentence().split(": ", 1)[1] in row
    assert "too small to tell" in text  # 6 runs: no correlation is beyond chance
    assert (calib_study / "figures" / "teacher_properties.png").exists()
    assert spearman([1, 2, 3, 4], [2, 4, 6, 9]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert not resolvable(0.9, 4) and resolvable(0.9, 12)
    frame = pd.DataFrame(
        {
            "label": ["m"] * 12,
            "student": ["a", "b"] * 6,
            "delta_beyond": np.arange(12.0),
            "available_gain": np.arange(12.0),
            "teacher_acc": np.zeros(12),
        }
    )
    table = property_correlations(frame).set_index("property")
    assert table.loc["available gain", "rho"] == pytest.approx(1.0) and table.loc["available gain", "resolved"]
    assert np.isnan(table.loc["teacher accuracy", "rho"])  # a constant says nothing


def test_the_teachers_table_never_lists_the_student_under_another_reference(tiny_zoo, tmp_path):
    """The student's file copied under another name (what a user's own list of candidates often holds):
    the same content identity, left out of the candidates. Through the CLI, piped."""
    import shutil
    import subprocess

    copy = tmp_path / "my_student.safetensors"
    shutil.copyfile(tiny_zoo["mlp"], copy)
    shutil.copyfile(tiny_zoo["mlp"].replace(".safetensors", ".json"), copy.with_suffix(".json"))
    candidates = [str(copy), tiny_zoo["gru_chunk4"], tiny_zoo["cnn_small_sgd"]]
    proc = subprocess.run(
        [sys.executable, "-m", "anyteach", "teachers", tiny_zoo["mlp"], "--zoo", ",".join(candidates)]
        + ["--data", CALIB_DATA, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    ranked = [row["teacher"] for row in json.loads(proc.stdout)["teachers"]]
    assert sorted(ranked) == sorted(candidates[1:])  # not the copy of the student
    proc = subprocess.run(
        [sys.executable, "-m", "anyteach", "teachers", tiny_zoo["mlp"], "--zoo", str(copy), "--data", CALIB_DATA],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()  # after a progress line per model whose predictions are ready
    assert [line for line in lines if not line.lstrip().startswith("predictions: ")] == [
        f"error: no candidate teacher: every model given is the student {tiny_zoo['mlp']} itself"
    ]


def test_a_list_of_models_keeps_a_reference_whose_arguments_hold_commas():
    from anyteach.analysis.forecast import resolve_models

    refs = "timm:resnet10t@a.safetensors?stem_width=8&channels=[8,16,32,64],zoo:glyphs/levit_d64, b.safetensors"
    assert resolve_models(refs) == [
        "timm:resnet10t@a.safetensors?stem_width=8&channels=[8,16,32,64]",
        "zoo:glyphs/levit_d64",
        "b.safetensors",
    ]
