"""Studies: definition and validation, pair sampling, the store's resume and no-duplicate
guarantees (a study killed mid-way in a subprocess, then re-run), and a tiny study end to end
through the in-process, local-process and Ray executors on the `tiny_zoo` fixture (real transfers,
1 epoch): every executor must store the same numbers for the same run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anyteach import AnyteachError
from anyteach.study.driver import (
    BUCKETS,
    ModelEntry,
    PairSpec,
    build_study_spec,
    load_study_spec,
    plan_study,
    run_study,
    sample_pairs,
    strength_bucket,
    teacher_strength,
)

from .conftest import TINY_DATA

REPO = Path(__file__).resolve().parents[1]
RECIPE = {"epochs": 1, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3}


def tiny_spec(tiny_zoo, **extra) -> dict:
    spec = {"models": list(tiny_zoo.values()), "data": TINY_DATA, "methods": ["kl", "kl+dp", "xe"], "recipe": RECIPE}
    spec.update(extra)
    return spec


def store_rows(study_dir: Path) -> list[dict]:
    conn = sqlite3.connect(f"file:{study_dir / 'study.sqlite'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY run_key")]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Definition


def test_bucket_edges_follow_the_paper():
    assert strength_bucket(-3.0) == "much weaker"
    assert strength_bucket(-2.999) == "weaker"
    assert strength_bucket(-1.0) == "weaker"
    assert strength_bucket(1.0) == "equal"
    assert strength_bucket(84.2 - 83.2) == "equal"  # 1.0000000000000142 in floating point
    assert strength_bucket(3.0) == "stronger"
    assert strength_bucket(3.2) == "much stronger"
    assert teacher_strength(84.2, 83.2) == 1.0


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"models": "mnist1d", "methods": ["kl"], "pair": 3}, "'pair'"),
        ({"models": "mnist1d", "methods": ["kl"], "pairs": {"randm": 3}}, "'pairs.randm'"),
        ({"models": "mnist1d", "methods": ["kl"], "pairs": {"random": 0}}, "'pairs.random' must be >= 1"),
        ({"models": "mnist1d", "methods": ["kl"], "pairs": {"balanced": True}}, "'pairs.balanced' needs"),
        ({"models": "mnist1d", "methods": ["kl"], "seeds": [0, 0]}, "'seeds'"),
        ({"models": "mnist1d", "methods": ["kl"], "workers": 0}, "'workers' must be >= 1"),
        ({"models": "mnist1d", "methods": ["kl"], "executor": "slurm"}, "'executor'"),
        ({"models": "mnist1d", "methods": ["kl"], "address": "auto"}, "'address'"),
        ({"models": "mnist1d", "methods": ["kl"], "resources": {"gpus": 1}}, "'resources.gpus'"),
        ({"models": "mnist1d", "methods": ["kll"]}, "unknown method 'kll'"),
        ({"models": "mnist1d", "methods": [{"name": "kl", "options": {"alpha": 2.0}}]}, "'methods[0].options'"),
        ({"models": "mnist1d", "methods": [{"name": "kl", "option": {}}]}, "'methods[0].option'"),
        ({"models": "mnist1d", "methods": ["kl", "kl"]}, "label 'kl' is used twice"),
        ({"models": "mnist1d", "methods": ["kl"], "recipe": {"epoch": 3}}, "'recipe.epoch': unknown option"),
        ({"models": "mnist1d", "methods": ["kl"], "recipe": {"epochs": -1}}, "'recipe'"),
        ({"models": "mnist1d", "methods": ["kl"], "recipe": {"seed": 3}}, "'recipe.seed'"),
        ({"models": ["a.safetensors", "b.safetensors"], "methods": ["kl"]}, "'data' is missing"),
        ({"models": "zoo:nozoo", "methods": ["kl"]}, "unknown zoo"),
        ({"methods": ["kl"]}, "'models' is missing"),
        ({"models": "mnist1d"}, "'methods' is missing"),
    ],
)
def test_bad_definitions_name_the_key(raw, message):
    with pytest.raises(AnyteachError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_study_spec(raw)


def test_definition_from_yaml_and_flags(tmp_path):
    (tmp_path / "zoo.yaml").write_text(
        "models: mnist1d\npairs: {random: 24, seed: 0, balanced: true}\n"
        "methods: [kl, xekl, {name: xekl+mcl, options: {lr: 1.0e-2}}, kl+dp, kl+dp-u, xe]\n"
        "recipe: {epochs: 3, lr: 3.0e-4}\n"
    )
    spec = load_study_spec(tmp_path / "zoo.yaml")
    assert len(spec.models) == 11 and spec.models[0].startswith("zoo:mnist1d/")
    assert spec.data == "mnist1d" and spec.pairs == PairSpec(random=24, seed=0, balanced=True)
    assert [m.label for m in spec.methods] == ["kl", "xekl", "xekl+mcl", "kl+dp", "kl+dp-u", "xe"]
    assert spec.methods[2].options == {"lr": 0.01}
    assert spec.recipe["lr"] == 3e-4  # YAML 1.1 reads 3.0e-4 as a float; 1e-3 style strings are coerced too

    path = tmp_path / "s.yaml"
    path.write_text("models: mnist1d\nmethods: [kl]\nrecipe: {lr: 1e-3}\npairs: 5\n")
    spec = build_study_spec(
        path, pairs=7, pair_seed=3, methods=["kl", "kl+dp"], recipe={"epochs": 2}, workers=2, resources={"num_gpus": 1}
    )
    assert spec.recipe == {"lr": 1e-3, "epochs": 2}
    assert spec.pairs == PairSpec(random=7, seed=3)
    assert [m.name for m in spec.methods] == ["kl", "kl+dp"] and spec.workers == 2
    assert spec.resources == {"num_gpus": 1}
    assert load_study_spec(spec.to_dict()) == spec  # study.yaml round-trips

    (tmp_path / "bad.yaml").write_text("models: [unclosed\n")
    with pytest.raises(AnyteachError, match="not valid YAML"):
        load_study_spec(tmp_path / "bad.yaml")


def _entries(accuracies: dict[str, float]) -> list[ModelEntry]:
    return [ModelEntry(f"ref/{n}", n, "mlp", 10, acc) for n, acc in accuracies.items()]


def test_pair_sampling_all_random_and_balanced():
    # accuracies chosen so that every bucket has candidate pairs
    models = _entries({"a": 80.0, "b": 80.5, "c": 82.0, "d": 86.0, "e": 90.0, "f": 70.0})
    everything = sample_pairs(models, PairSpec())
    assert len(everything) == 30 and all(s.ref != t.ref for s, t in everything)

    drawn = sample_pairs(models, PairSpec(random=10, seed=1))
    assert len(drawn) == 10 and len(set(drawn)) == 10
    assert drawn == sample_pairs(models, PairSpec(random=10, seed=1))
    assert drawn != sample_pairs(models, PairSpec(random=10, seed=2))

    balanced = sample_pairs(models, PairSpec(random=10, seed=0, balanced=True))
    buckets = [strength_bucket(teacher_strength(t.eval_acc, s.eval_acc)) for s, t in balanced]
    assert sorted(buckets.count(b) for b in BUCKETS) == [2, 2, 2, 2, 2]
    # a study cut short still covers every bucket: the first five pairs are one of each
    assert set(buckets[:5]) == set(BUCKETS)

    named = sample_pairs(models, PairSpec(students=("a",), teachers=("b", "ref/c")))
    assert [(s.name, t.name) for s, t in named] == [("a", "b"), ("a", "c")]
    with pytest.raises(AnyteachError, match="'pairs.random': asked for 31 pairs"):
        sample_pairs(models, PairSpec(random=31))
    with pytest.raises(AnyteachError, match="'pairs.students': 'z' is not one of"):
        sample_pairs(models, PairSpec(students=("z",)))


def test_listed_pairs_and_teachers_are_the_same_whatever_the_accuracies(tiny_zoo):
    listed = PairSpec(list=(("a", "b"), ("ref/c", "a"), ("b", "f")))
    one = sample_pairs(_entries({"a": 80.0, "b": 83.0, "c": 82.0, "f": 70.0}), listed)
    # the same zoo trained on another CPU: b - a moves across the 3 pp bucket edge, c and a swap places
    other = sample_pairs(_entries({"a": 80.0, "b": 82.99, "c": 79.9, "f": 70.1}), listed)
    assert [(s.name, t.name) for s, t in one] == [("a", "b"), ("c", "a"), ("b", "f")]
    assert [(s.ref, t.ref) for s, t in one] == [(s.ref, t.ref) for s, t in other]
    with pytest.raises(AnyteachError, match=r"'pairs.list\[0\]': 'z' is not one of"):
        sample_pairs(_entries({"a": 80.0, "b": 83.0}), PairSpec(list=(("z", "a"),)))

    raw = tiny_spec(tiny_zoo, methods=["xe", {"name": "kl", "label": "kl.chosen", "teacher": {"mlp": "gru_chunk4"}}])
    raw["pairs"] = {"list": [["mlp", "cnn_small_sgd"], ["mlp_narrow", "mlp"]]}
    spec = load_study_spec(raw)
    assert spec.pairs.list == (("mlp", "cnn_small_sgd"), ("mlp_narrow", "mlp"))
    assert spec.methods[1].teacher == (("mlp", "gru_chunk4"),)
    assert load_study_spec(spec.to_dict()) == spec  # study.yaml round-trips
    plan = plan_study(spec)
    names = plan.names
    assert [(names[s.ref], names[t.ref]) for s, t in plan.pairs] == [("mlp", "cnn_small_sgd"), ("mlp_narrow", "mlp")]
    chosen = [(names[r.student], names[r.teacher]) for r in plan.runs if r.label == "kl.chosen"]
    assert chosen == [("mlp", "gru_chunk4")]
    assert sorted(names[r.student] for r in plan.runs if r.label == "xe") == ["mlp", "mlp_narrow"]


@pytest.mark.parametrize(
    "pairs, teacher, message",
    [
        ({"list": [["mlp", "mlp"]]}, None, "cannot be its own teacher"),
        ({"list": [["mlp", "gru_chunk4"], ["mlp", "gru_chunk4"]]}, None, "listed twice"),
        ({"list": [["mlp"]]}, None, "must be a \\[student, teacher\\] pair"),
        ({"list": [["mlp", "gru_chunk4"]], "random": 3}, None, "excludes pairs.random"),
        ({"list": []}, None, "non-empty list"),
        ({"random": 2}, {"mlp": "mlp"}, "cannot be its own teacher"),
        ({"random": 2}, "worst", "'worst' is not one of best"),
    ],
)
def test_bad_pair_lists_and_teacher_mappings_name_the_key(tiny_zoo, pairs, teacher, message):
    method = {"name": "kl", **({"teacher": teacher} if teacher is not None else {})}
    raw = {**tiny_spec(tiny_zoo, methods=[method]), "pairs": pairs}
    with pytest.raises(AnyteachError, match=message):
        load_study_spec(raw)


def test_plan_runs_controls_once_per_student_and_merges_options(tiny_zoo):
    spec = load_study_spec(
        tiny_spec(
            tiny_zoo,
            methods=["kl", {"name": "kl+dp", "options": {"temperature": 2.0}}, "xe"],
            recipe={**RECIPE, "temperature": 1.5},
            seeds=[0, 1],
        )
    )
    plan = plan_study(spec)
    assert len(plan.pairs) == 12
    by_method = {m: [r for r in plan.runs if r.label == m] for m in ("kl", "kl+dp", "xe")}
    assert len(by_method["kl"]) == 24 and len(by_method["kl+dp"]) == 24
    assert len(by_method["xe"]) == 8 and all(r.teacher is None for r in by_method["xe"])  # 4 students x 2 seeds
    assert len({r.key for r in plan.runs}) == len(plan.runs)
    assert by_method["kl"][0].option_dict["temperature"] == 1.5  # the recipe's method option ...
    assert by_method["kl+dp"][0].option_dict["temperature"] == 2.0  # ... a method's own wins ...
    assert "temperature" not in by_method["xe"][0].option_dict  # ... and xe, which has none, gets none


# ---------------------------------------------------------------------------------------------
# A tiny study, end to end


@pytest.fixture(scope="module")
def tiny_study(tiny_zoo, tmp_path_factory):
    """The reference: a tiny study run in-process (12 pairs x kl, kl+dp + 4 xe controls)."""
    study_dir = tmp_path_factory.mktemp("tiny-study")
    outcome = run_study(tiny_spec(tiny_zoo), study_dir, progress=False)
    return study_dir, outcome


def test_tiny_study_in_process(tiny_study, tiny_zoo):
    from anyteach.study.executors import complementary_knowledge
    from anyteach.study.store import StudyStore

    study_dir, outcome = tiny_study
    assert outcome.total == 28 and outcome.finished == 28 and outcome.skipped == 0 and not outcome.failed
    rows = store_rows(study_dir)
    assert len(rows) == 28
    assert (study_dir / "study.yaml").exists()
    names = {path: name for name, path in tiny_zoo.items()}
    for row in rows:
        assert row["student_name"] == names[row["student"]]
        assert row["transfer_delta"] == pytest.approx(row["knowledge_gain"] - row["knowledge_loss"])
        assert Path(row["run_dir"], "final.json").exists()
        if row["method"] == "xe":
            assert row["teacher"] == "" and row["bucket"] is None and row["complementary_knowledge"] is None
        else:
            strength = row["teacher_acc"] - row["student_acc_before"]
            assert row["teacher_strength"] == pytest.approx(strength)
            assert row["bucket"] == strength_bucket(strength)
            assert row["teacher_family"] in ("mlp", "cnn", "rnn") and row["student_params"] > 0
    row = next(r for r in rows if r["method"] == "kl+dp")
    assert row["complementary_knowledge"] == pytest.approx(
        complementary_knowledge(row["student"], row["teacher"], TINY_DATA)
    )
    with StudyStore(study_dir, create=False) as store:
        history = store.history()
    assert len(history) == 2 * 28 and set(history["epoch"]) == {0, 1}  # epoch 0 = before transfer

    again = run_study(tiny_spec(tiny_zoo), study_dir, progress=False)
    assert again.skipped == 28 and again.finished == 0
    assert store_rows(study_dir) == rows


def test_one_driver_per_study(tiny_study, tiny_zoo):
    fcntl = pytest.importorskip("fcntl")
    study_dir = tiny_study[0]
    with open(study_dir / ".driver.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as if another driver were running
        with pytest.raises(AnyteachError, match="another `anyteach study` is running"):
            run_study(tiny_spec(tiny_zoo), study_dir, progress=False)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    assert run_study(tiny_spec(tiny_zoo), study_dir, progress=False).skipped == 28


def test_a_changed_definition_reuses_rows_and_summarizes_only_its_own(tiny_study, tiny_zoo, tmp_path):
    import shutil

    from anyteach.report.aggregate import summarize
    from anyteach.study.store import StudyStore

    study_dir = tmp_path / "copy"
    shutil.copytree(tiny_study[0], study_dir)
    narrower = run_study(tiny_spec(tiny_zoo, methods=["kl"]), study_dir, progress=False)
    assert narrower.total == 12 and narrower.skipped == 12 and narrower.finished == 0
    assert summarize(study_dir).methods == ["kl"]
    with StudyStore(study_dir, create=False) as store:
        assert store.stale_runs() == 16 and len(store.runs(current=False)) == 28
    assert "16 stored runs of an earlier definition" in write_report_text(study_dir)
    run_study(tiny_spec(tiny_zoo), study_dir, progress=False)
    assert summarize(study_dir).methods == ["kl", "kl+dp", "xe"]


def write_report_text(study_dir: Path) -> str:
    from anyteach.report.document import write_report

    return write_report(study_dir).markdown.read_text()


def _by_key(study_dir: Path) -> dict[str, tuple]:
    return {r["run_key"]: (r["student_acc"], r["knowledge_gain"], r["knowledge_loss"]) for r in store_rows(study_dir)}


def _small_spec(tiny_zoo) -> dict:
    return tiny_spec(tiny_zoo, pairs={"random": 3, "seed": 0}, methods=["kl+dp", "xe"])


def test_ray_executor_gives_the_same_rows(tiny_study, tiny_zoo, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'anyteach[cluster]')")
    reference = _by_key(tiny_study[0])
    outcome = run_study(_small_spec(tiny_zoo), tmp_path, executor="ray", workers=2, progress=False)
    assert outcome.complete and not outcome.failed
    rows = _by_key(tmp_path)
    assert len(rows) == outcome.total
    for key, values in rows.items():
        assert values == pytest.approx(reference[key])


def test_killed_study_resumes_without_duplicates(tiny_study, tiny_zoo, tmp_path):
    """Run the tiny study with 2 local worker processes in a subprocess, kill the driver (SIGKILL)
    once a few runs are stored, re-run it in-process, and compare the rows with the reference."""
    reference = {r["run_key"]: r for r in store_rows(tiny_study[0])}
    spec = tiny_spec(tiny_zoo)
    study_dir = tmp_path / "study"
    script = (
        "import json, sys; from anyteach.study.driver import run_study; "
        "run_study(json.loads(sys.argv[1]), sys.argv[2], workers=2, progress=False)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(spec), str(study_dir)], env=env)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if len(store_rows(study_dir)) >= 3:
                    break
            except sqlite3.OperationalError:  # no store or no tables yet
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the study finished (or failed) before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {r["run_key"]: r for r in store_rows(study_dir)}
    assert 3 <= len(before) < 28

    outcome = run_study(spec, study_dir, progress=False)
    assert outcome.total == 28 and outcome.skipped == len(before) and outcome.complete
    after = store_rows(study_dir)
    assert len(after) == 28 == len({r["run_key"] for r in after})
    assert len({(r["label"], r["student"], r["teacher"], r["seed"]) for r in after}) == 28
    metrics = (
        "student_acc",
        "student_acc_before",
        "teacher_acc",
        "knowledge_gain",
        "knowledge_loss",
        "gain_count",
        "loss_count",
    )
    for row in after:
        if row["run_key"] in before:
            assert row == before[row["run_key"]], "a stored run is never re-run or rewritten"
        # worker processes, in-process runs and resumed runs all give the reference's numbers
        assert {m: row[m] for m in metrics} == pytest.approx({m: reference[row["run_key"]][m] for m in metrics})
    conn = sqlite3.connect(study_dir / "study.sqlite")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 28 * 2  # epochs 0 and 1
        assert (
            conn.execute(
                "SELECT COUNT(*) FROM history h LEFT JOIN runs r USING (run_key) WHERE r.run_key IS NULL"
            ).fetchone()[0]
            == 0
        )
    finally:
        conn.close()


def test_cli_study_summary_report(tiny_study, tiny_zoo, tmp_path, capsys):
    from anyteach.cli import main

    def cli(*args: str) -> int:
        old = sys.argv
        sys.argv = ["anyteach", *args]
        try:
            main()
            return 0
        except SystemExit as e:
            return int(e.code or 0)
        finally:
            sys.argv = old

    study_dir, _ = tiny_study
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(json.dumps(tiny_spec(tiny_zoo)))  # JSON is YAML
    assert cli("study", str(spec_path), "--out", str(study_dir), "--workers", "1") == 0  # all 28 runs are done
    capsys.readouterr()
    assert cli("summary", str(study_dir), "--json") == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in records] == ["kl", "kl+dp", "xe"]
    assert {
        "runs",
        "median_success_rate",
        "pooled_success_rate",
        "mean_delta",
        "mean_gain",
        "mean_loss",
        "significant_gain_rate",
        "significant_harm_rate",
        "by_bucket",
    } <= set(records[0])
    assert sum(r["runs"] for r in records) == 28
    assert cli("report", str(study_dir)) == 0
    assert "| kl+dp |" in capsys.readouterr().out
    assert (study_dir / "report.html").exists() and (study_dir / "figures" / "success_rate.png").exists()

    assert cli("study", "--out", str(tmp_path / "x"), "--models", "a,b", "--methods", "kl") == 2
    assert "'data' is missing" in capsys.readouterr().err
    assert cli("summary", str(tmp_path / "nothing")) == 2


def test_a_method_may_bring_its_own_transfer_data_but_not_its_own_evaluation(tiny_zoo):
    half = TINY_DATA + ",fraction=0.5"
    spec = load_study_spec(
        tiny_spec(
            tiny_zoo,
            methods=["kl", {"name": "xe", "label": "xe-half", "data": half}, {"name": "kl+dp", "data": half}],
            pairs=2,
        )
    )
    plan = plan_study(spec)
    assert {r.label: r.data for r in plan.runs} == {"kl": TINY_DATA, "xe-half": half, "kl+dp": half}
    assert load_study_spec(spec.to_dict()) == spec
    with pytest.raises(AnyteachError, match=r"'methods\[1\].data'.*does not share the eval split"):
        load_study_spec(tiny_spec(tiny_zoo, methods=["kl", {"name": "xe", "data": "mnist1d:size=2000,eval=400"}]))
