# Two commands matter: `make demo` and `make test`. Both build .venv from scratch if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit cfn-lint bench fuzz soak clean schema

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dropgate demo

test: $(STAMP) lint typecheck cfn-lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

unit: $(STAMP)
	$(BIN)/pytest tests/unit

schema: $(STAMP)
	$(BIN)/dropgate schema > schemas/inventory.product-state.v1.json

fuzz: $(STAMP)
	DROPGATE_FUZZ_EXAMPLES=5000 $(BIN)/pytest tests/fuzz -q

soak: $(STAMP)
	$(BIN)/python -m dropgate.local.soak --files 1000

# The budget (25 min on a fresh clone) counts from when make started, so the venv install counts too.
bench: BENCH_STARTED := $(shell date +%s)
bench: $(STAMP)
	$(BIN)/python -c "import pandas, xmltodict" 2>/dev/null && test -x $(BIN)/py-spy || $(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run --started $(BENCH_STARTED)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
