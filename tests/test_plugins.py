"""A user's own method, registered in their own module, reaches every place runs execute: the
driver, local worker processes, Ray tasks and the CLI (the study's `imports`, `--import`)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
import yaml

from anyteach import AnyteachError
from anyteach.methods import METHODS
from anyteach.study.driver import load_study_spec, run_study

from .conftest import TINY_DATA

PLUGIN = """
from anyteach.methods import MethodPreset, register_method

register_method(MethodPreset("plugin-kl-t2", "KL at temperature 2 (a user's preset)", "teacher", "kl",
                             defaults={"temperature": 2.0}))
"""


@pytest.fixture
def plugin_study(tiny_zoo, tmp_path):
    (tmp_path / "my_methods.py").write_text(PLUGIN)
    definition = {
        "models": list(tiny_zoo.values()),
        "data": TINY_DATA,
        "pairs": {"random": 2, "seed": 0},
        "methods": ["plugin-kl-t2"],
        "imports": ["my_methods.py"],
        "recipe": {"epochs": 1, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(definition))
    yield tmp_path / "study.yaml"
    METHODS.pop("plugin-kl-t2", None)
    for name in [m for m in sys.modules if m.startswith("anyteach_plugin_my_methods")]:
        del sys.modules[name]


def _rows(study_dir):
    conn = sqlite3.connect(study_dir / "study.sqlite")
    try:
        return sorted(conn.execute("SELECT run_key, method, student_acc, knowledge_gain FROM runs").fetchall())
    finally:
        conn.close()


def test_a_user_method_runs_in_local_worker_processes_and_on_ray(plugin_study, tmp_path):
    spec = load_study_spec(plugin_study)
    assert spec.imports == (str(tmp_path / "my_methods.py"),) and "plugin-kl-t2" in METHODS
    local = run_study(plugin_study, tmp_path / "local", workers=2, progress=False)
    assert local.complete and not local.failed and local.finished == 2
    rows = _rows(tmp_path / "local")
    assert [r[1] for r in rows] == ["plugin-kl-t2", "plugin-kl-t2"]
    pytest.importorskip("ray", reason="ray is not installed (pip install 'anyteach[cluster]')")
    ray = run_study(plugin_study, tmp_path / "ray", executor="ray", workers=2, progress=False)
    assert ray.complete and not ray.failed
    assert [r[:2] for r in _rows(tmp_path / "ray")] == [r[:2] for r in rows]
    assert [v for r in _rows(tmp_path / "ray") for v in r[2:]] == pytest.approx([v for r in rows for v in r[2:]])


def test_a_missing_plugin_is_a_clear_error(tmp_path):
    with pytest.raises(AnyteachError, match="study spec key 'imports': plugin file not found"):
        load_study_spec({"models": "mnist1d", "methods": ["kl"], "imports": [str(tmp_path / "nope.py")]})
    with pytest.raises(AnyteachError, match="cannot import plugin 'no_such_module_xyz'"):
        load_study_spec({"models": "mnist1d", "methods": ["kl"], "imports": ["no_such_module_xyz"]})


def test_cli_transfer_imports_a_plugin_first(tiny_zoo, tiny_data, tmp_path):
    (tmp_path / "my_methods.py").write_text(PLUGIN)
    command = [
        sys.executable,
        "-m",
        "anyteach",
        "transfer",
        "--import",
        str(tmp_path / "my_methods.py"),
        "--method",
        "plugin-kl-t2",
        "--student",
        tiny_zoo["mlp"],
        "--teacher",
        tiny_zoo["gru_chunk4"],
        "--data",
        tiny_data.ref,
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
        "--json",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert '"transfer_delta"' in proc.stdout
    without = subprocess.run(
        [c for c in command if c not in ("--import", str(tmp_path / "my_methods.py"))],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert without.returncode == 2 and "unknown method 'plugin-kl-t2'" in without.stderr


def test_the_research_presets_still_import():
    """The research log's studies name research/presets.py under `imports:`; a refactor of the package
    must not break them (it did once: a helper moved between modules)."""
    from pathlib import Path

    presets = Path(__file__).resolve().parents[1] / "research" / "presets.py"
    code = (
        "from anyteach.core.registry import import_plugins; from anyteach.methods import METHODS; "
        f"import_plugins([{str(presets)!r}]); "
        "print(sorted(m for m in METHODS if m in ('pl+ens+xe+wise', 'kl+ens-t+wise')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['kl+ens-t+wise', 'pl+ens+xe+wise']"
