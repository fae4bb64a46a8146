# Two commands matter: `make demo` and `make test`. Both build .venv from the lock if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_LOCK := requirements/dev.lock
# The Lambda package: for the template's architecture unless told (ARCH=x86_64 or ARCH=arm64).
ARCH ?=
PACKAGE := $(BIN)/python -m tools.lambda_package

.PHONY: demo test test-latest lock lint typecheck contract unit cfn-lint validate package package-both deploy \
	bench fuzz soak clean schema build-IngestFunction build-ReprocessFunction

# Made from the lock alone: a new lock makes a new venv, so nothing unlocked lingers in it. The
# project itself goes in without build isolation (its build requirements are locked too).
$(STAMP): $(DEV_LOCK) pyproject.toml
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(PY) -m tools.lockfile install --python $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m devstack demo

test: $(STAMP) lint typecheck contract validate package-both
	$(BIN)/pytest

# The newest releases pyproject.toml allows, in a throwaway venv: drift in a dependency (a new lxml
# reading ahead differently, a new click wording help) fails here before it reaches a lock.
test-latest:
	$(PY) -m tools.latest

lock: $(STAMP)
	$(BIN)/python -m tools.lockfile write

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The compatibility gate: the model's schema must read every version checked into schemas/ (exit 1
# naming each breaking change; docs/contract.md "How to evolve" says what to do instead).
contract: $(STAMP)
	$(BIN)/dropgate schema check

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

validate: cfn-lint

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# build/lambda/<arch>/ and build/lambda-<arch>.zip: the code both functions run, from
# requirements/lambda.lock, compiled by the runtime's Python. `make test` builds the template's
# architecture and the host's twin (package-both), and runs the twin.
package: $(STAMP)
	$(PACKAGE) build $(if $(ARCH),--arch $(ARCH))

package-both: $(STAMP)
	$(PACKAGE) build --and-host

# `sam build` (BuildMethod: makefile) calls these with ARTIFACTS_DIR set.
build-IngestFunction build-ReprocessFunction: $(STAMP)
	$(PACKAGE) build $(if $(ARCH),--arch $(ARCH)) --out "$(ARTIFACTS_DIR)"

# Guided the first time (no samconfig.toml deploy parameters yet), from samconfig.toml after that.
deploy: validate
	sam build
	sam deploy $(if $(shell grep -s parameter_overrides samconfig.toml),,--guided)

schema: $(STAMP)
	$(BIN)/dropgate schema > schemas/inventory.product-state.v1.json

fuzz: $(STAMP)
	DROPGATE_FUZZ_EXAMPLES=5000 $(BIN)/pytest tests/fuzz -q

soak: $(STAMP)
	$(BIN)/python -m devstack soak --files 1000

# The budget (25 min on a fresh clone) counts from when make started, so the venv install counts too.
# BASELINE=DIR (another checkout with its .venv) measures its product beside this one, run by run.
bench: BENCH_STARTED := $(shell date +%s)
bench: $(STAMP)
	$(BIN)/python -m bench.state
	$(BIN)/python -m bench.run --started $(BENCH_STARTED) $(if $(BASELINE),--baseline $(BASELINE))

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build .aws-sam *.egg-info
