# `make demo` and `make test` do all set-up on a fresh machine: they create .venv if it is
# missing and install the pinned requirements plus this package (editable); `make lint` adds the
# pinned lint tools (requirements-lint.txt) and runs ruff and mypy.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_STAMP := $(VENV)/.lint-installed

.PHONY: demo test lint install clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(LINT_STAMP): requirements-lint.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-lint.txt
	touch $(LINT_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/flowmatch demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(LINT_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m mypy src/flowmatch

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
