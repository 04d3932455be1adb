"""Progress in a log: `anyteach study` and `anyteach zoo build` run with stderr a pipe (a batch job,
`| tee`, CI) say first how much they will do, then one line per finished run or model with its
count, while they run (read from the pipe as it comes, not at exit), and draw no progress bar."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import TINY_DATA

RECIPE = ("--epochs", "1", "--batch-size", "128", "--optimizer", "adamw", "--lr", "1e-3")


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "anyteach", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def read_until(proc: subprocess.Popen, fragment: str) -> tuple[list[str], bool]:
    """stderr lines up to the first holding `fragment`, and whether the process was still running then."""
    lines = []
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))
        if fragment in line:
            return lines, proc.poll() is None
    raise AssertionError(f"{fragment!r} never came; stderr: {lines}")


def test_a_piped_study_says_how_many_runs_it_planned_then_a_line_per_run(tiny_zoo, tmp_path):
    models = ",".join(tiny_zoo[m] for m in ("mlp_narrow", "mlp", "gru_chunk4"))
    args = ["study", "--out", str(tmp_path / "study"), "--models", models, "--data", TINY_DATA]
    args += ["--methods", "kl", "--pairs", "3", "--workers", "1", *RECIPE]
    proc = start(args)
    first, running = read_until(proc, "runs planned")
    assert first[-1] == "study: 3 runs planned (3 to run)"
    assert running  # said before any run finished, not at exit
    rest = proc.stderr.read().splitlines()
    assert proc.wait(timeout=600) == 0, rest
    counted = [line for line in rest if line.lstrip().startswith("[")]
    assert [line.split("]")[0].strip() for line in counted] == ["[1/3", "[2/3", "[3/3"]
    assert all("Δ" in line and " <- " in line and " kl " in line for line in counted)
    assert not any("━" in line for line in first + rest)  # no bar drawn into a log
    proc = start(args)  # resumed: nothing left to run, and it says so first
    first, _ = read_until(proc, "runs planned")
    assert first[-1] == "study: 3 runs planned (3 already in the store, 0 to run)"
    assert proc.wait(timeout=600) == 0


def test_a_piped_zoo_build_says_how_many_models_it_trains_then_a_line_per_model(tiny_zoo, tmp_path, monkeypatch):
    """The MNIST-1D zoo with every member but the quickest already built (copies of a tiny model stand in
    for them, in a cache of the test's own): the build trains that one model."""
    from anyteach.zoo import get_zoo

    cache = tmp_path / "cache"
    monkeypatch.setenv("ANYTEACH_CACHE", str(cache))
    zoo = get_zoo("mnist1d")
    zoo.directory.mkdir(parents=True)
    for name in zoo.names[1:]:
        shutil.copyfile(tiny_zoo["mlp"], zoo.path(name))
        shutil.copyfile(Path(tiny_zoo["mlp"]).with_suffix(".json"), zoo.path(name).with_suffix(".json"))
    assert zoo.missing() == [zoo.names[0]] == ["mlp_narrow"]
    proc = start(["zoo", "build", "mnist1d", "--workers", "1"], env={"ANYTEACH_CACHE": str(cache)})
    first, running = read_until(proc, "models to train")
    n = len(zoo.names)
    assert first[-1] == f"zoo mnist1d (seed 0): 1 of {n} models to train ({n - 1} already built), 1 at a time"
    assert running
    rest = proc.stderr.read().splitlines()
    assert proc.wait(timeout=600) == 0, rest
    assert rest[0].lstrip().startswith("[1/1] mlp_narrow") and "eval" in rest[0]
    assert rest[1].startswith("built 1 models in ")
    assert not any("━" in line for line in first + rest)
    assert not zoo.missing()
