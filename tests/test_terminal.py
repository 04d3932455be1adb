"""What a person sees in the terminal: names from users' files shown, never obeyed; Ctrl-C and SIGTERM of
`transfer` and `study` end in one line saying how to resume; `teachers` says which forecaster ranked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from anyteach import build_classifier, save_model
from anyteach.core.terminal import SafeConsole, visible

from .conftest import TINY_DATA
from .test_errors import run_cli


def test_control_characters_are_written_out_and_bad_markup_is_text():
    assert visible("a\x1b[31mb\x07c\td\ne") == "a\\x1b[31mb\\x07c\td\ne"
    console = SafeConsole(force_terminal=True, width=200, record=True)
    console.print("evil\x1b[2J name x[/b] [bold]kept[/bold]", highlight=False)
    shown = console.export_text()
    assert "\x1b" not in shown and "evil\\x1b[2J name x[/b] [bold]kept[/bold]" in shown  # bad markup: all literal
    console = SafeConsole(force_terminal=True, width=200, record=True)
    console.print("[bold]good[/bold] markup")
    assert console.export_text().strip() == "good markup"


def test_a_model_name_with_an_escape_sequence_is_shown_not_obeyed(tmp_path, capsys):
    name = "evil\x1b]0;pwned\x07\x1b[2J[/red]"
    save_model(build_classifier("mlp", name=name, width=8, depth=1), tmp_path / "evil.safetensors")
    code, out, err = run_cli(["info", str(tmp_path / "evil.safetensors")], capsys)
    assert code == 0, err
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J[/red]" in out


def _popen(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "anyteach", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        start_new_session=True,  # its own process group: a signal to the group reaches its workers too
    )


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_transfer_says_in_one_line_how_to_resume(sig, code, tiny_zoo, tmp_path):
    out = tmp_path / "run"
    args = ["transfer", "--student", tiny_zoo["mlp"], "--teacher", tiny_zoo["gru_chunk4"], "--data", TINY_DATA]
    proc = _popen([*args, "--out", str(out), "--epochs", "1000", "--batch-size", "128", "--quiet"])
    metrics = out / "metrics.jsonl"
    _wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 2, proc)  # epoch 1 is saved
    os.kill(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr + stdout
    assert len(lines) == 1 and lines[0].startswith("interrupted")
    assert f"run the same command again to resume from the last finished epoch (run directory {out})" in lines[0]
    assert ("SIGTERM" in lines[0]) == (sig == signal.SIGTERM)
    assert (out / "checkpoint.pt").exists() and not (out / "final.json").exists()  # resumable, not finished


def test_an_interrupted_study_stops_its_workers_and_says_how_to_resume(tiny_zoo, tmp_path):
    spec = {
        "models": list(tiny_zoo.values()),
        "data": TINY_DATA,
        "methods": ["kl"],
        "pairs": 4,
        "recipe": {"epochs": 300, "batch_size": 128},
        "workers": 2,
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec))
    study = tmp_path / "study"
    proc = _popen(["study", str(tmp_path / "study.yaml"), "--out", str(study)])
    _wait_for(lambda: any(study.glob("runs/*/*/metrics.jsonl")), proc)  # the workers are training
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
    stdout, stderr = proc.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("resuming", "study"))]
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    assert lines[-1].startswith("interrupted: finished runs are in") and "run the same command again" in lines[-1]
    assert not [line for line in lines if "Error" in line or "error" in line]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # no worker outlives the driver
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("worker processes outlived the interrupted study")


def test_teachers_says_which_forecaster_ranked_and_writes_its_figure_where_told(tiny_zoo, tmp_path, capsys):
    models = f"{tiny_zoo['mlp']},{tiny_zoo['gru_chunk4']},{tiny_zoo['cnn_small_sgd']}"
    data = f"{TINY_DATA},calib=200"
    code, out, err = run_cli(
        ["teachers", tiny_zoo["mlp"], "--zoo", models, "--data", data, "--plots", str(tmp_path / "x.png")], capsys
    )
    assert code == 0, err
    assert (tmp_path / "x.png").is_file() and (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"
    assert "ranked by the shipped forecaster's forecast (fitted on all-teachers-seed0" in " ".join(out.split())
    # a study of kl+dp cannot re-fit the pl+ens+wise forecast: the shipped one ranks, and the line says so
    from anyteach.study.driver import run_study

    run_study(
        {
            "models": models.split(","),
            "data": data,
            "methods": ["kl+dp", "xe"],
            "recipe": {"epochs": 1, "batch_size": 128},
        },
        tmp_path / "study",
        progress=False,
    )
    code, out, err = run_cli(
        ["teachers", tiny_zoo["mlp"], "--zoo", models, "--data", data, "--fit", str(tmp_path / "study")], capsys
    )
    assert code == 0, err
    said = " ".join(out.split())
    assert f"{tmp_path / 'study'} has no run of pl+ens+wise paired with a control to re-fit it on" in said
    code, out, err = run_cli(
        ["teachers", tiny_zoo["mlp"], "--zoo", models, "--data", data, "--fit", str(tmp_path / "study")]
        + ["--method", "kl+dp"],
        capsys,
    )
    assert code == 0, err
    assert f"ranked by the forecast re-fitted on {tmp_path / 'study'}" in " ".join(out.split())
    assert json.loads((tmp_path / "study" / "forecaster.json").read_text())["methods"]["kl+dp"]


def test_a_plots_directory_is_never_named_like_a_file(tiny_zoo, tmp_path, capsys):
    args = ["flips", tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], "--data", TINY_DATA]
    code, out, err = run_cli([*args, "--plots", str(tmp_path / "figures.png")], capsys)
    assert code == 2 and "named like an image file" in err and not (tmp_path / "figures.png").exists()
    code, out, err = run_cli([*args, "--plots", str(tmp_path / "figures")], capsys)
    assert code == 0 and any(Path(tmp_path / "figures").glob("*.png"))
