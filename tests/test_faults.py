"""Faults survived, by injection: a transfer killed (SIGKILL) during an epoch, during its checkpoint
write and during the student export resumes to bitwise the same result; a study whose worker process
dies finishes every run; a killed zoo build resumes without retraining what it had saved; a full disk
(a file-size limit) fails the run with one line and keeps the earlier checkpoint; a diverged run is
recorded by a study, which goes on, and is retried only when asked."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from anyteach import AnyteachError, transfer
from anyteach.core.errors import AnyteachWarning, CorruptCheckpoint
from anyteach.study.driver import run_study

from .conftest import TINY_DATA

REPO = Path(__file__).resolve().parents[1]
OPTIONS = {"epochs": 3, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3}


THREADS = (1, 2, 4)
"""Torch thread counts each fault is injected at: the killed run, its resume and the uninterrupted run it is
compared with all use the same count (a run on two threads adds its floats in another order than on one)."""


@contextlib.contextmanager
def _threads(n: int):
    """This process computes with `n` torch threads inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_killed(script: str, *args: str, threads: int | None = None) -> subprocess.CompletedProcess:
    """Run `script` (Python) in a fresh process that is expected to kill itself with SIGKILL (with `threads`
    torch threads; default: the machine's)."""
    env = os.environ.copy()
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        script = f"import torch; torch.set_num_threads({threads})\n" + textwrap.dedent(script)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc


def _transfer_script(patch: str) -> str:
    return f"""
        import json, os, signal, sys
        import anyteach, anyteach.training.trainer, anyteach.core.io
        from anyteach import transfer
        transfer_module = sys.modules["anyteach.training.transfer"]  # `anyteach.training.transfer` is the function
        def die():
            os.kill(os.getpid(), signal.SIGKILL)
        {textwrap.indent(textwrap.dedent(patch), " " * 8).strip()}
        student, teacher, data, out = sys.argv[1:5]
        transfer(student, teacher, data, "kl+dp", out, progress=False, **json.loads(sys.argv[5]))
    """


PATCHES = {
    # the third optimiser step of the second epoch (each epoch has 11 steps of 128 on 1,500 samples)
    "during an epoch": """
        from anyteach.training.trainer import SilentReporter
        steps = [0]
        def step(self):
            steps[0] += 1
            if steps[0] == 14:
                die()
        SilentReporter.step = step
    """,
    # the second checkpoint: its temporary file is half written when the process dies
    "during the checkpoint write": """
        saves = [0]
        original = anyteach.training.trainer.torch_save
        def torch_save(path, obj):
            saves[0] += 1
            if saves[0] == 2:
                with anyteach.core.io.atomic_path(path) as tmp:
                    tmp.write_bytes(b"half a checkpoint")
                    die()
            original(path, obj)
        anyteach.training.trainer.torch_save = torch_save
    """,
    # the student's weights are written, its sidecar and final.json are not
    "during the student export": """
        def save_model(model, path, **extra):
            anyteach.core.io.save_tensors(path, model.net.state_dict())
            die()
        transfer_module.save_model = save_model
    """,
}


def _untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("seconds")}


def _history(run_dir: Path) -> list[dict]:
    return [_untimed(json.loads(line)) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _final(run_dir: Path) -> dict:
    return _untimed(json.loads((run_dir / "final.json").read_text()))


@pytest.fixture(scope="module")
def uninterrupted_at(tiny_zoo, tmp_path_factory):
    """The uninterrupted run with n torch threads, made once per n."""
    runs: dict[int, Path] = {}

    def run(threads: int) -> Path:
        if threads not in runs:
            out = tmp_path_factory.mktemp("faults") / f"full-{threads}"
            with _threads(threads):
                transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], TINY_DATA, "kl+dp", out, progress=False, **OPTIONS)
            runs[threads] = out
        return runs[threads]

    return run


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_at):
    return uninterrupted_at(1)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("point", list(PATCHES))
def test_a_transfer_killed_resumes_to_the_same_result(point, threads, uninterrupted_at, tiny_zoo, tmp_path):
    uninterrupted = uninterrupted_at(threads)
    out = tmp_path / "run"
    _run_killed(
        _transfer_script(PATCHES[point]),
        tiny_zoo["mlp"],
        tiny_zoo["gru_chunk4"],
        TINY_DATA,
        str(out),
        json.dumps(OPTIONS),
        threads=threads,
    )
    assert not (out / "final.json").exists()
    with _threads(threads), warnings.catch_warnings():
        warnings.simplefilter("error", AnyteachWarning)  # the same arithmetic: no warning that it differs
        resumed = transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], TINY_DATA, "kl+dp", out, progress=False, **OPTIONS)
    assert resumed.finished
    expected, got = load_file(uninterrupted / "student.safetensors"), load_file(out / "student.safetensors")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert _history(out) == _history(uninterrupted)
    assert _final(out) == _final(uninterrupted)
    assert not list(out.glob(".*.tmp")) and not (out / "checkpoint.pt").exists()


def test_a_resume_with_other_arithmetic_says_it_will_not_be_bitwise_identical(tiny_zoo, tmp_path):
    out = tmp_path / "run"
    args = (tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], TINY_DATA, "kl+dp", out)
    with _threads(1):
        transfer(*args, progress=False, stop_after_epoch=1, **{**OPTIONS, "keep_checkpoints": True})
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert json.loads(checkpoint["arithmetic"])["threads"] == 1
    assert json.loads(checkpoint["arithmetic"])["dtype"] == "float32"
    with _threads(2), pytest.warns(AnyteachWarning) as caught:
        resumed = transfer(*args, progress=False, **OPTIONS)
    assert resumed.finished
    (message,) = [str(w.message) for w in caught]
    assert "torch threads 2 (the checkpoint was written with 1)" in message and "not be bitwise identical" in message
    assert "\n" not in message


def test_a_corrupt_checkpoint_is_reported_and_restart_starts_over(uninterrupted, tiny_zoo, tmp_path):
    out = tmp_path / "run"
    transfer(
        tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], TINY_DATA, "kl+dp", out, progress=False, stop_after_epoch=1, **OPTIONS
    )
    (out / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(CorruptCheckpoint, match="--restart"):
        transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], TINY_DATA, "kl+dp", out, progress=False, **OPTIONS)
    again = transfer(
        tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], TINY_DATA, "kl+dp", out, progress=False, restart=True, **OPTIONS
    )
    assert _untimed(again.final) == _final(uninterrupted)


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_fails_with_one_line_and_keeps_the_checkpoint(uninterrupted, tiny_zoo, tmp_path):
    out = tmp_path / "run"
    transfer(
        tiny_zoo["mlp"],
        tiny_zoo["gru_chunk4"],
        TINY_DATA,
        "kl+dp",
        out,
        progress=False,
        stop_after_epoch=1,
        **{**OPTIONS, "keep_checkpoints": True},
    )
    checkpoint = (out / "checkpoint.pt").read_bytes()
    assert len(checkpoint) > 100_000
    args = [
        sys.executable,
        "-m",
        "anyteach",
        "transfer",
        "--student",
        tiny_zoo["mlp"],
        "--teacher",
        tiny_zoo["gru_chunk4"],
        "--data",
        TINY_DATA,
        "--method",
        "kl+dp",
        "--out",
        str(out),
        "--quiet",
        "--epochs",
        "3",
        "--batch-size",
        "128",
        "--optimizer",
        "adamw",
        "--lr",
        "1e-3",
        "--keep-checkpoints",
    ]
    proc = subprocess.run(
        args, capture_output=True, text=True, env=os.environ.copy(), timeout=300, preexec_fn=_limit_file_size(50_000)
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and "checkpoint.pt" in lines[0], proc.stderr
    assert (out / "checkpoint.pt").read_bytes() == checkpoint and not list(out.glob(".*.tmp"))
    resumed = transfer(
        tiny_zoo["mlp"],
        tiny_zoo["gru_chunk4"],
        TINY_DATA,
        "kl+dp",
        out,
        progress=False,
        **{**OPTIONS, "keep_checkpoints": True},
    )
    assert _untimed(resumed.final) == _final(uninterrupted)


def _die_once(task):
    """A run function whose worker process dies the first time it meets the first task."""
    marker = Path(task.run_dir) / "died-once"
    if task.run.seed == 0 and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)
    return {"task": task, "seed": task.run.seed}


def test_a_dead_worker_process_does_not_lose_the_study(tmp_path):
    from anyteach.study.driver import RunSpec
    from anyteach.study.executors import LocalProcessExecutor, RunTask

    tasks = [RunTask(RunSpec("kl", "kl", "s", "t", seed, "{}", "d"), str(tmp_path / f"r{seed}")) for seed in range(4)]
    with LocalProcessExecutor(2) as pool:
        outcomes = list(pool.run(tasks, _die_once))
    assert sorted(o["seed"] for o in outcomes) == [0, 1, 2, 3] and not any(o.get("error") for o in outcomes)


def test_a_study_records_a_diverged_run_goes_on_and_retries_it_only_when_asked(tiny_zoo, tmp_path):
    spec = {
        "models": [tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]],
        "data": TINY_DATA,
        "pairs": {"random": 1},
        "methods": [{"name": "kl", "options": {"lr": 1e6, "optimizer": "sgd"}}, "kl+dp"],
        "recipe": {"epochs": 1, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3},
    }
    first = run_study(spec, tmp_path, progress=False)
    assert first.finished == 1 and len(first.failed) == 1 and "diverged" in first.failed[0][1]
    again = run_study(spec, tmp_path, progress=False)
    assert again.finished == 0 and again.held_back == [first.failed[0][0]] and not again.failed
    from anyteach.report.aggregate import summarize

    summary = summarize(tmp_path)
    assert summary.failed_counts() == {"diverged": 1} and "1 failed (1 diverged)" in summary.status_line()
    records = {r["method"]: r for r in summary.to_records()}
    assert records["kl"] == {"method": "kl", "runs": 0, "failed": {"diverged": 1}} and records["kl+dp"]["failed"] == {}
    retried = run_study(spec, tmp_path, progress=False, retry_failed=True)
    assert len(retried.failed) == 1 and not retried.held_back  # the same lr diverges again, as it should
    runs = [d for d in (tmp_path / "runs" / "kl").iterdir()]
    assert len(runs) == 1 and not (runs[0] / "student.safetensors").exists()


def test_a_killed_zoo_build_resumes_without_retraining(tmp_path):
    script = """
        import os, signal, sys
        import anyteach.zoo.build as build
        from anyteach.zoo import build_zoo, get_zoo
        original, saved = build.save_model, [0]
        def save_model(model, path):
            original(model, path)
            saved[0] += 1
            if saved[0] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        build.save_model = save_model
        build_zoo(get_zoo("mnist1d", data=sys.argv[1], members=["mlp_narrow", "mlp", "cnn_small_sgd"], epochs=1),
                  workers=1)
    """
    env_cache = os.environ["ANYTEACH_CACHE"]
    os.environ["ANYTEACH_CACHE"] = str(tmp_path / "cache")
    try:
        from anyteach.zoo import build_zoo, get_zoo

        zoo = get_zoo("mnist1d", data=TINY_DATA, members=["mlp_narrow", "mlp", "cnn_small_sgd"], epochs=1)
        _run_killed(script, TINY_DATA)
        built = {m: zoo.path(m).stat().st_mtime_ns for m in zoo.names if zoo.path(m).exists()}
        assert len(built) == 2 and len(zoo.missing()) == 1
        rows = build_zoo(zoo, workers=1)
        assert len(rows) == 3 and not zoo.missing()
        assert all(zoo.path(m).stat().st_mtime_ns == t for m, t in built.items())  # not retrained
    finally:
        os.environ["ANYTEACH_CACHE"] = env_cache


def test_a_transfer_refuses_a_second_process_on_the_same_run(uninterrupted, tiny_zoo, tmp_path, monkeypatch):
    from anyteach.core.io import exclusive_lock

    monkeypatch.setattr(sys.modules["anyteach.training.transfer"], "RUN_LOCK_WAIT", 0.3)
    out = tmp_path / "run"
    out.mkdir()
    with exclusive_lock(out / ".lock", "busy"):
        with pytest.raises(AnyteachError, match="another anyteach process is running a run"):
            transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], TINY_DATA, "kl+dp", out, progress=False, **OPTIONS)


def test_a_full_disk_stops_a_study_and_keeps_its_store(tiny_zoo, tmp_path):
    spec = {
        "models": [tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]],
        "data": TINY_DATA,
        "pairs": {"random": 1},
        "methods": ["kl+dp"],
        "recipe": {"epochs": 1, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3},
    }
    assert run_study(spec, tmp_path, progress=False).finished == 1
    (tmp_path / "more.yaml").write_text(json.dumps({**spec, "methods": ["kl+dp", "kl"]}))
    args = [sys.executable, "-m", "anyteach", "study", str(tmp_path / "more.yaml"), "--out", str(tmp_path)]
    proc = subprocess.run(
        args, capture_output=True, text=True, env=os.environ.copy(), timeout=300, preexec_fn=_limit_file_size(50_000)
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot write" in proc.stderr.strip().splitlines()[-1]
    from anyteach.report.aggregate import summarize

    assert len(summarize(tmp_path).runs) == 1  # the store is readable and holds the finished run


def test_a_corrupt_checkpoint_fails_one_run_of_a_study_and_is_restarted_when_asked(tiny_zoo, tmp_path):
    from anyteach.study.driver import load_study_spec, plan_study

    spec = {
        "models": [tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]],
        "data": TINY_DATA,
        "pairs": {"random": 2},
        "methods": ["kl+dp"],
        "recipe": {"epochs": 1, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3},
    }
    plan = plan_study(load_study_spec(spec))
    broken = tmp_path / "runs" / plan.runs[0].directory_name(plan.names)
    transfer(
        plan.runs[0].student,
        plan.runs[0].teacher,
        TINY_DATA,
        "kl+dp",
        broken,
        progress=False,
        stop_after_epoch=1,
        seed=0,
        **{**spec["recipe"], "epochs": 2},
    )
    (broken / "config.json").write_text((broken / "config.json").read_text().replace('"epochs": 2', '"epochs": 1'))
    (broken / "checkpoint.pt").write_bytes(b"garbage")
    first = run_study(spec, tmp_path, progress=False)
    assert first.finished == 1 and len(first.failed) == 1 and "corrupt" in first.failed[0][1]
    assert run_study(spec, tmp_path, progress=False).held_back == [plan.runs[0].key]
    retried = run_study(spec, tmp_path, progress=False, retry_failed=True)
    assert retried.finished == 1 and not retried.failed and retried.complete


def test_summary_and_report_never_write_the_store(tiny_zoo, tmp_path):
    from typer.testing import CliRunner

    from anyteach.cli import app

    spec = {
        "models": [tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]],
        "data": TINY_DATA,
        "pairs": {"random": 1},
        "methods": ["kl+dp"],
        "recipe": {"epochs": 1, "batch_size": 128},
    }
    run_study(spec, tmp_path, progress=False)
    store = (tmp_path / "study.sqlite").read_bytes()
    files = {p.name for p in tmp_path.iterdir()}
    assert CliRunner().invoke(app, ["summary", str(tmp_path), "--json"]).exit_code == 0
    assert (tmp_path / "study.sqlite").read_bytes() == store and {p.name for p in tmp_path.iterdir()} == files


def test_a_finished_run_repairs_what_a_kill_or_a_user_took_away(uninterrupted, tiny_zoo, tmp_path):
    out, args = tmp_path / "run", (tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], TINY_DATA, "kl+dp")
    kept = {**OPTIONS, "keep_checkpoints": True}
    transfer(*args, out, progress=False, stop_after_epoch=2, **kept)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text(lines[0] + "\n")  # killed after the checkpoint, before the metrics rows
    transfer(*args, out, progress=False, **kept)
    assert _history(out) == _history(uninterrupted)
    (out / "student.safetensors").unlink()  # a finished run whose student was deleted: exported again
    transfer(*args, out, progress=False, **kept)
    assert (out / "student.safetensors").exists()
    sidecar = json.loads((out / "student.json").read_text())
    assert "plateau_delta" not in sidecar["extra"] and sidecar["extra"]["transfer"]["method"] == "kl+dp"
    (out / "student.safetensors").unlink()
    (out / "checkpoint.pt").unlink()
    with pytest.raises(AnyteachError, match="lost its student.safetensors"):
        transfer(*args, out, progress=False, **kept)
