# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create or reuse the virtual environment in .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test docs typecheck bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/anyteach demo

# ruff (lint, format), mypy (zero findings), then pytest, which also builds the docs strictly and renders
# pages in headless Chromium (tests/test_docs.py)
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n auto --dist loadfile

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# the documentation site into site/ (strict: a broken link, reference or missing page fails the build)
docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_complementarity.py

clean:
	rm -rf $(VENV) build site src/*.egg-info
