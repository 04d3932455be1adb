import os
import stat

import pytest

from anyteach._io import atomic_path, write_json


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
