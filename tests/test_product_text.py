"""Product text speaks to users: the package, the docs (outside the research log), the examples and the
README say nothing of how the work was organised (internal issue numbers, work sessions, who did what),
carry no hypothesis labels of the research log (H6, H12, ...) and cite no file the repository lacks.
Those belong in research/, the research log, which this test does not read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("src", "docs", "examples", "README.md", "mkdocs.yml")
"""What users read: every text file under these paths."""
SUFFIXES = {".py", ".md", ".json", ".yaml", ".yml", ".txt", ".toml", ".html", ".css", ".js"}

FORBIDDEN = {
    "an internal issue number": re.compile(r"\b[Ii]ssues? #?\d+"),
    "a work session": re.compile(r"\b[Ss]essions?\b"),
    "a hypothesis label of the research log": re.compile(r"(?<![\w.-])H\d{1,2}(?![\w-])"),
    "a file the repository does not have (PAPER.md)": re.compile(r"PAPER\.md"),
    "who did the work": re.compile(r"\b(?:integrator|worktree|another engineer|other helpers?)\b", re.IGNORECASE),
}


def product_files() -> list[Path]:
    files = []
    for name in PRODUCT:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in SUFFIXES]
    return [p for p in files if "egg-info" not in p.parts and "__pycache__" not in p.parts]


def test_the_product_files_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in product_files()}
    assert {"README.md", "src/anyteach/__init__.py", "src/anyteach/analysis/forecaster.json"} <= names
    assert not any(n.startswith("research/") for n in names)


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_product_text_does_not_speak_of_how_it_was_made(what):
    pattern = FORBIDDEN[what]
    hits = []
    for path in product_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not hits, f"{what} in product text (say it for users, or move it to research/):\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "text, what",
    [
        ("measured in issue 16", "an internal issue number"),
        ("see Issue #3", "an internal issue number"),
        ("with session 4's forecaster", "a work session"),
        ("(research/teaching-gains.md, H11)", "a hypothesis label of the research log"),
        ("H6 holds", "a hypothesis label of the research log"),
        ("PAPER.md section 3", "a file the repository does not have (PAPER.md)"),
        ("measured with other helpers running", "who did the work"),
    ],
)
def test_each_pattern_catches_what_it_names(text, what):
    assert FORBIDDEN[what].search(text)
    assert not any(FORBIDDEN[w].search(text) for w in FORBIDDEN if w != what)


@pytest.mark.parametrize("text", ["an H100 GPU", "(3, H, W)", "torch.float16", "sha256:abcd", "#222 colour"])
def test_ordinary_text_passes(text):
    assert not any(pattern.search(text) for pattern in FORBIDDEN.values())
