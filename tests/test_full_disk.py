"""A full disk anywhere in a study (a file-size limit, `ulimit -f`, stands in for it): exit status 1,
one line naming the file, the store either absent or complete (never schema-less), and the same
study run again resumes to the end."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
import yaml

from anyteach.study.driver import run_study

from .conftest import TINY_DATA


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("limit, where", [(4_000, "study.sqlite"), (60_000, "checkpoint.pt")])
def test_a_study_on_a_full_disk_fails_in_one_line_and_resumes(limit, where, tiny_zoo, tmp_path):
    spec = {
        "models": [tiny_zoo["mlp"], tiny_zoo["gru_chunk4"]],
        "data": TINY_DATA,
        "methods": ["kl", "xe"],
        "pairs": {"students": [tiny_zoo["mlp"]], "teachers": [tiny_zoo["gru_chunk4"]]},
        "recipe": {"epochs": 1, "batch_size": 128, "optimizer": "adamw", "lr": 1e-3},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "anyteach", "study", str(tmp_path / "study.yaml"), "--out", str(out)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
        preexec_fn=_limit_file_size(limit),
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and where in errors[0] and str(out) in errors[0], proc.stderr
    store = out / "study.sqlite"
    if store.exists():  # complete: it has its schema and can be read
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("1",)
        conn.close()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    resumed = run_study(str(tmp_path / "study.yaml"), out, progress=False)
    assert resumed.complete and resumed.finished + resumed.skipped == 2


def test_a_store_write_past_the_limit_is_rolled_back_and_named(tmp_path):
    """The store itself hits the limit mid-transaction: `RunFailed` naming it, the earlier rows kept."""
    script = textwrap.dedent(f"""
        import resource, signal, sqlite3
        from anyteach.core.errors import RunFailed
        from anyteach.study.store import StudyStore
        store = StudyStore({str(tmp_path)!r})
        store.set_meta("small", "kept")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        try:
            store.set_meta("big", "x" * 1_000_000)
        except RunFailed as e:
            print("RunFailed:", e)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("RunFailed: cannot write the study store") and "study.sqlite" in proc.stdout
    conn = sqlite3.connect(f"file:{tmp_path / 'study.sqlite'}?mode=ro", uri=True)
    assert dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('small', 'big')")) == {"small": "kept"}
    conn.close()
