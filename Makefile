# Every target creates and reuses the local virtualenv itself: no manual pip install step.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= etld.toml

.PHONY: venv run demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: venv
	$(BIN)/etld --config $(CONFIG) run

demo: venv
	$(BIN)/etld --config $(CONFIG) demo

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check etld tests bench
	$(BIN)/ruff format --check etld tests bench
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
