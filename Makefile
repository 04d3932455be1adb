# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create or reuse the virtual environment in .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/anyteach demo

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n auto --dist loadfile

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_complementarity.py

clean:
	rm -rf $(VENV) build src/*.egg-info
