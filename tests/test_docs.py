"""The documentation site builds strictly and reads as a user sees it.

`mkdocs build --strict` fails on any broken link, missing page or docstring the API reference cannot read; the
command-line reference is generated from the commands, so every command is on it; the landing page and a
results page load in headless Chromium with every image decoded. In CI (`CI` set) a missing Chromium fails the
test instead of skipping it: .ci/run installs it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(
        warnings or proc.stderr.splitlines()[-20:]
    )
    return out


def _renderer():
    script = ROOT / "docs" / "scripts" / "render_report.py"
    spec = importlib.util.spec_from_file_location("render_report", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module.find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return module


def test_every_command_is_in_the_cli_reference(site):
    import typer.main

    from anyteach.cli import app

    page = (site / "reference" / "cli" / "index.html").read_text()
    root = typer.main.get_command(app)
    names = []
    for name, command in root.commands.items():
        names.append(name)
        names += [f"{name} {sub}" for sub in getattr(command, "commands", {})]
    assert len(names) >= 12
    for name in names:
        assert f"<code>anyteach {name}</code>" in page, name
    assert "--no-such-flag" not in page and "--epochs" in page  # options come from the commands


def test_the_api_reference_is_generated_from_the_docstrings(site):
    import anyteach

    page = (site / "reference" / "api" / "index.html").read_text()
    for name in ("transfer", "load_model", "load_dataset", "rank_teachers", "run_study", "write_report"):
        assert f'id="anyteach.{name}"' in page, name
    first_line = anyteach.write_report.__doc__.strip().splitlines()[0]
    assert first_line.split("`")[0].strip() in page


def test_the_research_log_is_part_of_the_site(site):
    assert (site / "research" / "teaching-gains" / "index.html").is_file()
    assert (site / "research" / "teachers" / "forecast-vs-realised.png").is_file()
    summary = (site / "results" / "index.html").read_text()
    assert 'href="../research/teaching-gains/"' in summary


@pytest.mark.parametrize("page", ["index.html", "results/index.html"])
def test_pages_render_with_every_image(site, page):
    facts = _renderer().page_facts(site / page, width=1400, screen=900)
    assert facts["images"] >= 1 and facts["broken_images"] == 0, facts


def test_a_broken_image_is_caught(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<html><body><img src="missing.png"><img src="data:image/png;base64,AAAA"></body></html>')
    facts = _renderer().page_facts(page)
    assert facts["broken_images"] == 2 and facts["images"] == 0


def test_the_readme_links_into_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    links = [link for link in re.findall(r"\]\(([^)#\s]+)", readme) if "://" not in link]
    assert links, "the README links into the docs"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing
    assert len(readme.splitlines()) <= 200


def test_the_version_is_written_once():
    import importlib.metadata

    import anyteach

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r'(?m)^version\s*=\s*"', pyproject) and 'dynamic = ["version"]' in pyproject
    assert importlib.metadata.version("anyteach") == anyteach.__version__
