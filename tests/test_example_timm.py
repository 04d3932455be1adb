"""The worked example of the docs runs as a user runs it: a timm model trained at 32 px by the user's own
loop and saved as a plain state dict, refused without its input size (with the cause named), teachers ranked,
one transfer with its control and verdict, the student written as a hub folder and measured by plain timm at
the accuracy anyteach measured."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "timm_checkpoint_end_to_end.py"


def test_the_timm_example_runs_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(tmp_path / "example"), "--small"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "without the input size: the student 'resnet10t' is at chance" in out and "Likely cause: input size" in out
    assert re.search(r"Δ [+-]\d+\.\d\d pp .*; no-teacher control \S+: Δ [+-]\d+\.\d\d pp; beyond the control", out)
    plain, ours = re.search(r"plain timm: (\d+\.\d\d)% on val/; anyteach: (\d+\.\d\d)%", out).groups()
    assert plain == ours
    assert (tmp_path / "example" / "hub" / "README.md").exists()
