"""Aggregation against values computed by hand on a small hand-made runs table.

The table: method `kl` with three students (two runs each, one per teacher) and the teacher-free
control `xe` (one run per student). Every expected number below is worked out in the comments.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from anyteach.report.aggregate import (
    METRIC_COLUMNS,
    against_control,
    aggregate,
    order_methods,
    per_student,
    size_correlation,
    summarize_runs,
)
from anyteach.study.driver import BUCKETS

COLUMNS = [
    "label",
    "method",
    "student",
    "teacher",
    "transfer_delta",
    "knowledge_gain",
    "knowledge_loss",
    "p_gain",
    "p_loss",
    "teacher_strength",
    "bucket",
    "student_family",
    "student_params",
    "transfer_rate",
]
ROWS = [
    # label, method, student, teacher, Δ, gain, loss, p_gain, p_loss, strength, bucket, family, params, rate
    ("kl", "kl", "s1", "t1", 1.0, 2.0, 1.0, 0.01, 0.90, 2.0, "stronger", "cnn", 1000, 10.0),
    ("kl", "kl", "s1", "t2", -0.5, 0.5, 1.0, 0.80, 0.04, -2.0, "weaker", "cnn", 1000, 20.0),
    ("kl", "kl", "s2", "t1", 0.0, 1.0, 1.0, 0.60, 0.60, 0.5, "equal", "mlp", 2000, 30.0),
    ("kl", "kl", "s2", "t3", 0.4, 0.6, 0.2, 0.20, 0.97, 5.0, "much stronger", "mlp", 2000, 40.0),
    ("kl", "kl", "s3", "t2", -2.0, 0.0, 2.0, 1.00, 0.001, -6.0, "much weaker", "cnn", 3000, 50.0),
    ("kl", "kl", "s3", "t3", -1.0, 1.0, 2.0, 0.90, 0.03, -4.0, "much weaker", "cnn", 3000, 60.0),
    ("xe", "xe", "s1", "", 0.1, 0.3, 0.2, 0.30, 0.50, None, None, "cnn", 1000, 0.0),
    ("xe", "xe", "s2", "", -0.1, 0.1, 0.2, 0.50, 0.30, None, None, "mlp", 2000, 0.0),
    ("xe", "xe", "s3", "", 0.2, 0.2, 0.0, 0.25, 1.00, None, None, "cnn", 3000, 0.0),
]


@pytest.fixture
def runs() -> pd.DataFrame:
    frame = pd.DataFrame(ROWS, columns=COLUMNS)
    frame["run_key"] = [f"r{i}" for i in range(len(frame))]
    return frame


def row_of(table: pd.DataFrame, **keys) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for k, v in keys.items():
        mask &= table[k] == v
    assert mask.sum() == 1, keys
    return table[mask].iloc[0]


def test_per_method_numbers_match_hand_computation(runs):
    table = aggregate(runs)
    assert list(table.columns) == ["label", *METRIC_COLUMNS]
    kl = row_of(table, label="kl")
    assert kl["runs"] == 6 and kl["students"] == 3
    # per-student success: s1 1/2 = 50, s2 1/2 = 50 (Δ = 0.0 is not a success), s3 0/2 = 0
    assert kl["median_success_rate"] == pytest.approx(50.0)
    assert kl["success_rate_q1"] == pytest.approx(25.0)  # linear quantile of [0, 50, 50]
    assert kl["success_rate_q3"] == pytest.approx(50.0)
    assert kl["success_rate_iqr"] == pytest.approx(25.0)
    assert kl["pooled_success_rate"] == pytest.approx(100 * 2 / 6)
    assert kl["mean_delta"] == pytest.approx(-2.1 / 6)  # (1 - 0.5 + 0 + 0.4 - 2 - 1) / 6
    assert kl["median_delta"] == pytest.approx(-0.25)  # sorted: -2, -1, -0.5, 0, 0.4, 1
    assert kl["student_mean_delta"] == pytest.approx((0.25 + 0.2 - 1.5) / 3)
    assert kl["mean_gain"] == pytest.approx(5.1 / 6)
    assert kl["mean_loss"] == pytest.approx(7.2 / 6)
    assert kl["mean_transfer_rate"] == pytest.approx(35.0)
    assert kl["significant_gain_rate"] == pytest.approx(100 / 6)  # p_gain 0.01 only
    assert kl["significant_harm_rate"] == pytest.approx(50.0)  # p_loss 0.04, 0.001, 0.03
    assert kl["mean_teacher_strength"] == pytest.approx((2 - 2 + 0.5 + 5 - 6 - 4) / 6)

    xe = row_of(table, label="xe")
    # per student: s1 100, s2 0, s3 100 -> median 100, quartiles 50 and 100
    assert xe["runs"] == 3
    assert (xe["median_success_rate"], xe["success_rate_q1"], xe["success_rate_q3"]) == (100.0, 50.0, 100.0)
    assert xe["pooled_success_rate"] == pytest.approx(200 / 3)
    assert xe["mean_delta"] == pytest.approx(0.2 / 3)
    assert xe["significant_gain_rate"] == 0.0 and xe["significant_harm_rate"] == 0.0
    assert math.isnan(xe["mean_teacher_strength"])


def test_per_bucket_and_family(runs):
    summary = summarize_runs(runs, methods=["xe", "kl"])
    assert summary.methods == ["xe", "kl"]
    assert list(summary.by_method["method"]) == ["xe", "kl"]

    buckets = summary.by_bucket
    assert list(buckets[buckets["method"] == "kl"]["bucket"]) == list(BUCKETS)
    much_weaker = row_of(buckets, method="kl", bucket="much weaker")
    assert much_weaker["runs"] == 2 and much_weaker["students"] == 1
    assert much_weaker["pooled_success_rate"] == 0.0
    assert much_weaker["mean_delta"] == pytest.approx(-1.5)
    assert much_weaker["significant_harm_rate"] == pytest.approx(100.0)
    assert row_of(buckets, method="kl", bucket="equal")["pooled_success_rate"] == 0.0  # Δ = 0 is no success
    assert row_of(buckets, method="kl", bucket="stronger")["median_success_rate"] == 100.0
    assert row_of(buckets, method="kl", bucket="much stronger")["mean_delta"] == pytest.approx(0.4)
    # the teacher-free control has no bucket: five empty rows
    xe_buckets = buckets[buckets["method"] == "xe"]
    assert len(xe_buckets) == 5 and (xe_buckets["runs"] == 0).all()

    cnn = row_of(summary.by_family, method="kl", family="cnn")
    assert cnn["runs"] == 4 and cnn["median_success_rate"] == pytest.approx(25.0)  # s1 50, s3 0
    assert cnn["mean_delta"] == pytest.approx((1 - 0.5 - 2 - 1) / 4)
    mlp = row_of(summary.by_family, method="kl", family="mlp")
    assert mlp["runs"] == 2 and mlp["mean_delta"] == pytest.approx(0.2)


def test_per_student_and_size_correlation(runs):
    students = per_student(runs)
    s3 = row_of(students, label="kl", student="s3")
    assert s3["runs"] == 2 and s3["success_rate"] == 0.0 and s3["mean_delta"] == pytest.approx(-1.5)
    assert s3["student_params"] == 3000 and s3["student_family"] == "cnn"
    corr = size_correlation(runs).set_index("label")
    # kl: params 1000, 2000, 3000 against mean Δ 0.25, 0.2, -1.5: perfectly anti-monotone
    assert corr.loc["kl", "delta_size_spearman"] == pytest.approx(-1.0)
    # xe: 0.1, -0.1, 0.2 -> ranks 2, 1, 3 against 1, 2, 3: rho = 0.5
    assert corr.loc["xe", "delta_size_spearman"] == pytest.approx(0.5)


def test_json_records_have_the_documented_keys(runs):
    records = json.loads(summarize_runs(runs).to_json())
    assert [r["method"] for r in records] == ["kl", "xe"]
    required = {
        "method",
        "runs",
        "median_success_rate",
        "pooled_success_rate",
        "mean_delta",
        "mean_gain",
        "mean_loss",
        "significant_gain_rate",
        "significant_harm_rate",
        "by_bucket",
    }
    for record in records:
        assert required <= set(record)
        assert [b["bucket"] for b in record["by_bucket"]] == list(BUCKETS)
        for bucket in record["by_bucket"]:
            assert {"runs", "median_success_rate", "mean_delta", "significant_harm_rate"} <= set(bucket)
    kl = records[0]
    assert kl["significant_harm_rate"] == pytest.approx(50.0)
    assert kl["by_bucket"][0]["mean_delta"] == pytest.approx(-1.5)
    assert records[1]["by_bucket"][0]["runs"] == 0 and records[1]["by_bucket"][0]["mean_delta"] is None


def test_methods_against_the_control_paired_by_student(runs):
    table = against_control(runs)
    assert list(table["label"]) == ["kl"]  # the control is not compared with itself
    kl = row_of(table, label="kl")
    # differences to the student's control: s1 (0.1): 0.9, -0.6; s2 (-0.1): 0.1, 0.5; s3 (0.2): -2.2, -1.2
    assert kl["paired_runs"] == 6 and kl["students"] == 3
    assert kl["beats_control_rate"] == pytest.approx(50.0)  # 0.9, 0.1, 0.5
    assert kl["mean_delta_vs_control"] == pytest.approx(-2.5 / 6)
    # per-student means 0.15, 0.3, -1.7: two better, one worse; sign test over 3 students
    assert (kl["students_better"], kl["students_worse"]) == (2, 1)
    assert kl["p_better_than_control"] == pytest.approx(4 / 8)  # P(X >= 2), X ~ Bin(3, 1/2)
    assert kl["p_worse_than_control"] == pytest.approx(7 / 8)  # P(X >= 1)
    record = json.loads(summarize_runs(runs).to_json())[0]
    assert record["vs_control"]["mean_delta_vs_control"] == pytest.approx(-2.5 / 6)
    assert against_control(runs[runs["label"] == "kl"]).empty  # no control runs: nothing to pair with


def test_order_and_empty_tables():
    assert order_methods(["b", "a", "c", "a"], ["c", "a", "zzz"]) == ["c", "a", "b"]
    empty = pd.DataFrame(columns=COLUMNS + ["run_key"])
    assert aggregate(empty).empty
    summary = summarize_runs(empty)
    assert summary.to_records() == [] and summary.methods == []


def test_missing_columns_are_a_clear_error(runs):
    with pytest.raises(ValueError, match="p_loss"):
        aggregate(runs.drop(columns="p_loss"))


def test_each_run_is_paired_with_a_control_of_its_own_budget():
    # per student: an xe control at 2 epochs (Δ 0.0) and one at 8 epochs with a cosine schedule (Δ 0.5);
    # `long` runs 8 epochs with cosine (pairs with the 8-epoch control), `short` 2 epochs (the 2-epoch one)
    rows, long_recipe = [], json.dumps({"epochs": 8, "lr_schedule": "cosine"})
    for k, student in enumerate(["s1", "s2", "s3"]):
        rows += [
            ("xe", "xe", student, "", 0.0, json.dumps({"epochs": 2})),
            ("xe-8", "xe", student, "", 0.5, long_recipe),
            ("long", "kl+dp", student, "t", 0.5 + 0.1 * (k + 1), long_recipe),
            ("short", "kl+dp", student, "t", 0.2, json.dumps({"epochs": 2})),
            ("odd", "kl+dp", student, "t", 0.9, json.dumps({"epochs": 5})),
        ]  # no control of 5 epochs
    frame = pd.DataFrame(rows, columns=["label", "method", "student", "teacher", "transfer_delta", "options"])
    frame = frame.assign(knowledge_gain=1.0, knowledge_loss=0.5, p_gain=0.5, p_loss=0.5, seed=0, data="d")
    table = against_control(frame).set_index("label")
    assert table.loc["long", "mean_delta_vs_control"] == pytest.approx(0.2)  # (0.1 + 0.2 + 0.3) / 3
    assert table.loc["long", "control"] == "xe-8" and table.loc["long", "students_better"] == 3
    assert table.loc["short", "mean_delta_vs_control"] == pytest.approx(0.2) and table.loc["short", "control"] == "xe"
    assert "odd" not in table.index  # nothing of its budget to compare with
    long_only = frame[frame["label"] != "xe-8"]
    assert "long" not in against_control(long_only)["label"].tolist()  # never paired across budgets


def test_ties_are_ties_not_wins():
    # a method and its control that both gain exactly 3 of 5,000 eval samples: the float deltas differ in
    # the last bits (as stored by the demo), the flip counts do not, so the run is neither better nor a win
    rows = []
    for student, (method_delta, control_delta) in {
        "s1": (0.0600000000000005, 0.05999999999999961),
        "s2": (0.0600000000000005, 0.05999999999999961),
    }.items():
        rows += [("xe", student, "", control_delta, 5, 2), ("kl+dp", student, "t", method_delta, 4, 1)]
    frame = pd.DataFrame(rows, columns=["label", "student", "teacher", "transfer_delta", "gain_count", "loss_count"])
    frame = frame.assign(knowledge_gain=0.1, knowledge_loss=0.04, p_gain=0.5, p_loss=0.5)
    kl = row_of(against_control(frame), label="kl+dp")
    assert (kl["students_better"], kl["students_worse"]) == (0, 0)
    assert kl["beats_control_rate"] == 0.0 and kl["p_better_than_control"] == 1.0
    # success is a net gain in samples: a run whose float delta is 1e-15 but whose counts cancel is no success
    noisy = frame.assign(transfer_delta=1e-15, gain_count=2, loss_count=2)
    assert aggregate(noisy)["pooled_success_rate"].eq(0.0).all()
    # without counts the delta is compared to 1e-6 pp, which still absorbs float noise
    assert aggregate(noisy.drop(columns=["gain_count", "loss_count"]))["pooled_success_rate"].eq(0.0).all()
    assert (
        row_of(against_control(frame.drop(columns=["gain_count", "loss_count"])), label="kl+dp")["students_better"] == 0
    )


def test_a_run_is_paired_with_the_stronger_of_several_controls_and_its_efficiency_beyond_it():
    # per student: two no-teacher controls of the same data and budget; the method is paired per run with
    # whichever gained more samples (s1: self+xe+wise, s2: self), never with a weaker one
    rows = []
    for student, (self_delta, xe_delta, method_delta) in {"s1": (0.0, 0.4, 1.0), "s2": (0.2, -0.2, 0.1)}.items():
        rows += [
            ("self", student, "", self_delta, math.nan, math.nan),
            ("self+xe+wise", student, "", xe_delta, math.nan, math.nan),
            ("pl+ens+wise", student, "t", method_delta, 2.0, 98.0),
        ]
    frame = pd.DataFrame(
        rows, columns=["label", "student", "teacher", "transfer_delta", "ensemble_delta", "ensemble_acc"]
    )
    frame = frame.assign(
        knowledge_gain=1.0,
        knowledge_loss=0.5,
        p_gain=0.5,
        p_loss=0.5,
        student_acc_before=96.0,
        ceiling_acc=frame["student"].map({"s1": 97.0, "s2": 99.0}),
    )
    table = against_control(frame, ("self", "self+xe+wise")).set_index("label")
    method = table.loc["pl+ens+wise"]
    assert method["mean_delta_vs_control"] == pytest.approx((0.6 - 0.1) / 2)
    assert (method["students_better"], method["students_worse"]) == (1, 1)
    assert set(method["control"].split(", ")) == {"self+xe+wise", "self"}
    assert method["pooled_efficiency_vs_control"] == pytest.approx(100 * 0.5 / 4.0)  # Σ(Δ − Δc) / Σ ensemble Δ
    assert method["student_median_efficiency_vs_control"] == pytest.approx((30.0 - 5.0) / 2)
    # reachable: s1 min(98, 97) − 96 = 1, s2 min(98, 99) − 96 = 2
    assert method["pooled_reachable_efficiency_vs_control"] == pytest.approx(100 * 0.5 / 3.0)
    assert table.loc["self", "control"] == "self+xe+wise"  # a control is never its own control
    only_self = against_control(frame[frame["label"] != "self+xe+wise"], ("self", "self+xe+wise")).set_index("label")
    assert only_self.loc["pl+ens+wise", "mean_delta_vs_control"] == pytest.approx((1.0 - 0.1) / 2)
    assert "self" not in only_self.index  # nothing else to compare it with
    by_method = aggregate(frame).set_index("label").loc["pl+ens+wise"]
    assert by_method["pooled_efficiency"] == pytest.approx(100 * 1.1 / 4.0)
    assert by_method["student_median_efficiency"] == pytest.approx((50.0 + 5.0) / 2)
    assert by_method["pooled_reachable_efficiency"] == pytest.approx(100 * 1.1 / 3.0)
    assert by_method["mean_reachable_delta"] == pytest.approx(1.5)


def test_a_method_that_names_its_controls_is_paired_with_them_only():
    # pl+ens+xetrain+wise also spends the train labels: its fair control is self+xetrain+wise (the same labels,
    # no teacher), never the weaker self / self+xe+wise, even where one of those gained more
    from anyteach.methods import METHODS
    from anyteach.report.aggregate import against_own_controls

    assert METHODS["pl+ens+xetrain+wise"].controls == ("self+xetrain+wise",)
    rows = []
    for student, (self_delta, train_delta, method_delta) in {"s1": (0.9, 0.3, 0.8), "s2": (0.0, 0.5, 0.4)}.items():
        rows += [
            ("self", student, "", self_delta),
            ("self+xetrain+wise", student, "", train_delta),
            ("pl+ens+xetrain+wise", student, "t", method_delta),
            ("pl+ens+wise", student, "t", 0.5),
        ]
    frame = pd.DataFrame(rows, columns=["label", "student", "teacher", "transfer_delta"])
    frame = frame.assign(knowledge_gain=1.0, knowledge_loss=0.5, p_gain=0.5, p_loss=0.5)
    table = against_own_controls(frame).set_index("label")
    labelled = table.loc["pl+ens+xetrain+wise"]
    assert labelled["control"] == "self+xetrain+wise"
    assert labelled["mean_delta_vs_control"] == pytest.approx(((0.8 - 0.3) + (0.4 - 0.5)) / 2)
    assert (labelled["students_better"], labelled["students_worse"]) == (1, 1)
    assert table.loc["pl+ens+wise", "control"] == "self"  # the default pairing is unchanged
    assert table.loc["pl+ens+wise", "mean_delta_vs_control"] == pytest.approx(((0.5 - 0.9) + (0.5 - 0.0)) / 2)


def test_a_run_with_nothing_reachable_counts_as_zero_in_every_reachable_number():
    from anyteach.report.aggregate import reachable_gain

    # s1: the ensemble (98) is above S0 (96) but the ceiling (95) is below it: nothing reachable, 0 not "left out";
    # s2: min(98, 99) − 96 = 2; s3: no ceiling known, so no reachable gain at all (NaN)
    frame = pd.DataFrame(
        {
            "label": "pl+ens+wise",
            "student": ["s1", "s2", "s3"],
            "transfer_delta": [0.5, 1.0, 3.0],
            "ensemble_acc": 98.0,
            "student_acc_before": 96.0,
            "ceiling_acc": [95.0, 99.0, math.nan],
            "ensemble_delta": 2.0,
        }
    ).assign(knowledge_gain=1.0, knowledge_loss=0.5, p_gain=0.5, p_loss=0.5)
    assert reachable_gain(frame).tolist()[:2] == [0.0, 2.0] and math.isnan(reachable_gain(frame)[2])
    row = aggregate(frame).iloc[0]
    assert row["mean_reachable_delta"] == pytest.approx(1.0)  # (0 + 2) / 2, s3 unknown
    assert row["pooled_reachable_efficiency"] == pytest.approx(100 * (0.5 + 1.0) / 2.0)  # the same two runs


def test_a_method_with_its_own_recipe_is_paired_on_that_recipe_or_says_it_is_not():
    from anyteach.report.document import headline_table

    paper_recipe = json.dumps({"epochs": 2, "lr": 3e-4, "optimizer": "adamw"})
    mcl_recipe = json.dumps({"epochs": 2, "lr": 1e-2, "optimizer": "adamw"})
    rows = []
    for student in ("s1", "s2", "s3"):
        rows += [("xe", "xe", student, "", 0.0, paper_recipe), ("xekl+mcl", "xekl+mcl", student, "t", 0.1, mcl_recipe)]
    frame = pd.DataFrame(rows, columns=["label", "method", "student", "teacher", "transfer_delta", "options"])
    frame = frame.assign(knowledge_gain=1.0, knowledge_loss=0.5, p_gain=0.5, p_loss=0.5, seed=0, data="d")
    mcl = row_of(against_control(frame), label="xekl+mcl")
    assert mcl["control"] == "xe" and mcl["recipe_differs"] == "lr 0.01 vs 0.0003"
    cell = headline_table(summarize_runs(frame)).set_index("method").loc["xekl+mcl"].iloc[-1]
    assert "not paired on the recipe: lr 0.01 vs 0.0003" in cell
    # with a control of its own recipe in the study (even a weaker one), that is its control
    same = pd.DataFrame(
        [("xe.lr1e-2", "xe", s, "", -1.0, mcl_recipe) for s in ("s1", "s2", "s3")],
        columns=["label", "method", "student", "teacher", "transfer_delta", "options"],
    ).assign(knowledge_gain=1.0, knowledge_loss=0.5, p_gain=0.5, p_loss=0.5, seed=0, data="d")
    paired = row_of(against_control(pd.concat([frame, same], ignore_index=True)), label="xekl+mcl")
    assert paired["control"] == "xe.lr1e-2" and paired["recipe_differs"] == ""
    assert paired["mean_delta_vs_control"] == pytest.approx(1.1)
    # an lr left to the preset's rule is compared as the lr the run used: base lr x batch 256 / 256
    default = frame.assign(options=json.dumps({"epochs": 2, "optimizer": "adamw"}))
    assert row_of(against_control(default), label="xekl+mcl")["recipe_differs"] == "lr 0.01 vs 0.0001"
