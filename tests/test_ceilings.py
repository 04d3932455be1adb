"""Capacity ceilings: a study directory's `ceilings.json` joins the runs and gives the reachable gain."""

from __future__ import annotations

import pandas as pd
import pytest

from anyteach import AnyteachError
from anyteach.analysis.ceilings import read_ceilings, with_ceilings, write_ceilings


def test_ceilings_round_trip_and_join_the_runs_by_student(tmp_path):
    assert read_ceilings(tmp_path) == {}
    write_ceilings(tmp_path, {"zoo:mnist1d/mlp": 88.5})
    assert read_ceilings(tmp_path) == {"zoo:mnist1d/mlp": 88.5}
    runs = pd.DataFrame({"student": ["zoo:mnist1d/mlp", "zoo:mnist1d/gru"]})
    joined = with_ceilings(runs, read_ceilings(tmp_path))
    assert joined["ceiling_acc"].iloc[0] == 88.5 and pd.isna(joined["ceiling_acc"].iloc[1])
    assert "ceiling_acc" not in with_ceilings(runs, {}).columns


def test_a_bad_ceilings_file_is_one_clear_error(tmp_path):
    (tmp_path / "ceilings.json").write_text("[1, 2]")
    with pytest.raises(AnyteachError, match="ceilings.json"):
        read_ceilings(tmp_path)


def test_the_shipped_ceilings_are_the_measured_ones():
    import json
    from pathlib import Path

    from anyteach.analysis.ceilings import MNIST1D_CEILINGS

    measured = {}
    for seed in (0, 1, 2):
        path = Path(__file__).parents[1] / "research" / "ceilings" / f"mnist1d-seed{seed}-500k.json"
        measured.update({ref: m["ceiling"] for ref, m in json.loads(path.read_text())["models"].items()})
    assert MNIST1D_CEILINGS == measured and len(measured) == 33
