# `make demo` and `make test` do all set-up on a fresh machine: they create .venv if it is
# missing and install the pinned requirements plus this package (editable); `make lint` adds the
# pinned lint tools (requirements-lint.txt) and runs ruff (lint and format check) and mypy; `make docs` adds the pinned
# documentation tools and builds the site into site/, every warning an error; `make wheel-check` installs the
# built wheel into a fresh virtualenv and runs it from outside the tree.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_STAMP := $(VENV)/.lint-installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test lint docs wheel-check install clean

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
	$(BIN)/ruff check src tests benchmarks docs/tutorials
	$(BIN)/ruff format --check src tests benchmarks docs/tutorials
	$(BIN)/python -m mypy src/flowmatch

$(DOCS_STAMP): requirements-docs.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-docs.txt
	touch $(DOCS_STAMP)

# The API reference is read from src/ (mkdocs.yml: paths), so the site needs no import of torch.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The release as a user installs it: the wheel built, installed into a fresh virtualenv (its core
# dependencies at requirements.txt's pins) and run from outside the tree: --version, the C kernel
# and its fallback, flowmatch demo --quick (.ci/wheel_check.sh; needs no .venv).
wheel-check:
	PYTHON=$(PYTHON) bash .ci/wheel_check.sh

clean:
	rm -rf $(VENV) runs site .pytest_cache .mypy_cache .ruff_cache
