"""The report reads a study and writes where it is told: `--out` (a read-only study stays untouched),
the study's name and references escaped in `report.md`, statistics the runs cannot define written as
such, and methods that ran on their own data or recipe shown with it in the header and headline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from anyteach import AnyteachError
from anyteach.report.document import UNDEFINED, write_report
from anyteach.study.driver import ModelEntry, RunSpec
from anyteach.study.store import StudyStore, run_row


def _final(delta: float) -> dict:
    gain = max(delta, 0.0) + 1.0
    return {
        "student_acc": 80.0 + delta,
        "student_acc_before": 80.0,
        "teacher_acc": 85.0,
        "transfer_delta": delta,
        "knowledge_gain": gain,
        "knowledge_loss": gain - delta,
        "transfer_rate": 10.0,
        "gain_count": round(gain * 10),
        "loss_count": round((gain - delta) * 10),
        "p_gain": 0.5,
        "p_loss": 0.5,
    }


def make_study(study_dir: Path, name: str) -> None:
    """Two models (so two students: too few for a rank correlation), `kl`, a `kl-fresh` with its own
    data and lr, and the `xe` control."""
    models = {f"m{i}": ModelEntry(f"m{i}", f"model{i}", "mlp", 1000 * (i + 1)) for i in range(2)}
    names = {ref: m.name for ref, m in models.items()}
    spec = {
        "name": name,
        "data": "mnist1d",
        "seeds": [0],
        "recipe": {"epochs": 1, "lr": 3e-4},
        "methods": [
            {"name": "kl", "label": "kl", "options": {}},
            {
                "name": "kl",
                "label": "kl-fresh",
                "options": {"lr": 1e-3, "lr_schedule": "cosine"},
                "data": "mnist1d:calib=5000,fresh=100000",
            },
            {"name": "xe", "label": "xe", "options": {}},
        ],
    }
    with StudyStore(study_dir) as store:
        store.set_meta("spec", json.dumps(spec))
        store.add_models([{**m.__dict__} for m in models.values()])
        for s, t in (("m0", "m1"), ("m1", "m0")):
            for label, data, delta in (("kl", "mnist1d", 0.3), ("kl-fresh", "mnist1d:calib=5000,fresh=100000", 0.5)):
                run = RunSpec(label, "kl", s, t, 0, "{}", data)
                assert store.add_run(
                    run_row(run, {"final": _final(delta), "run_dir": "", "seconds": 1.0}, names, models),
                    [{"epoch": 0}, {"epoch": 1}],
                )
            run = RunSpec("xe", "xe", s, None, 0, "{}", "mnist1d")
            assert store.add_run(
                run_row(run, {"final": _final(0.1), "run_dir": "", "seconds": 1.0}, names, models),
                [{"epoch": 0}, {"epoch": 1}],
            )


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study")
    make_study(path, "my *study* | <b>#1</b>")
    return path


def test_out_writes_elsewhere_and_leaves_the_study_untouched(study_dir, tmp_path):
    before = {p: p.read_bytes() for p in study_dir.rglob("*") if p.is_file()}
    files = write_report(study_dir, out=tmp_path / "report")
    assert files.markdown == tmp_path / "report" / "report.md" and files.html.exists()
    assert files.figures and all(f.parent == tmp_path / "report" / "figures" and f.exists() for f in files.figures)
    assert {p: p.read_bytes() for p in study_dir.rglob("*") if p.is_file()} == before
    text = files.markdown.read_text()
    assert "](figures/" in text  # links relative to where the report is


def test_the_cli_report_takes_out(study_dir, tmp_path):
    from typer.testing import CliRunner

    from anyteach.cli import app

    result = CliRunner().invoke(app, ["report", str(study_dir), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.md").exists() and not (study_dir / "report.md").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_study_without_out_is_one_line(study_dir, tmp_path):
    os.chmod(study_dir, 0o555)
    try:
        with pytest.raises(AnyteachError, match="read-only; give --out DIR"):
            write_report(study_dir)
        assert write_report(study_dir, out=tmp_path / "r").markdown.exists()
    finally:
        os.chmod(study_dir, 0o755)


def test_markdown_escapes_the_name_and_writes_undefined_statistics(study_dir, tmp_path):
    text = write_report(study_dir, out=tmp_path / "r").markdown.read_text()
    title = text.splitlines()[0]
    assert title == r"# Transfer study: my \*study\* \| \<b\>\#1\</b\>"
    assert "Rank correlation" in text and f"`kl` {UNDEFINED}" in text and ": ." not in text


def test_methods_with_their_own_data_and_recipe_say_so(study_dir, tmp_path):
    text = write_report(study_dir, out=tmp_path / "r").markdown.read_text()
    header = next(line for line in text.splitlines() if "finished runs" in line)
    assert "`kl-fresh` on data `mnist1d:calib=5000,fresh=100000`; lr 0.001, lr_schedule cosine" in header
    assert "data `mnist1d`" in header and '"lr": 0.0003' in header
    headline = [line for line in text.splitlines() if line.startswith("| ") and "kl-fresh" in line]
    assert headline and "lr_schedule cosine" in headline[0]
    kl_row = next(line for line in text.splitlines() if line.startswith("| kl |"))
    assert "the study's data and recipe" in kl_row
