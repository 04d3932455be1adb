import os
import stat

import pytest

from anyteach.core.io import atomic_path, write_json


def test_atomic_write_has_ordinary_file_mode(tmp_path):
    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "result.json", {"a": 1})
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "result.json").stat().st_mode) == 0o644


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"good": True})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text().strip().startswith("{") and "good" in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_written_json_is_strict_json_without_nan(tmp_path):
    import json
    import math

    import numpy as np
    import torch

    from anyteach.core.io import json_ready, write_json

    row = {"loss": math.nan, "acc": np.float32(0.5), "n": torch.tensor(3), "top": {2.0: [np.int64(1)], 0.5: math.inf}}
    assert json_ready(row) == {"loss": None, "acc": 0.5, "n": 3, "top": {"2": [1], "0.5": None}}
    write_json(tmp_path / "x.json", row)
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and json.loads(text)["top"]["0.5"] is None
