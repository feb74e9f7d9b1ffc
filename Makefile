# aigw — one command to run, one to test. Everything else is set up on demand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-runtime
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: run test bench lint lock clean help

help:
	@echo "make run    start the all-in-one gateway with the offline demo configuration"
	@echo "make test   install dev dependencies and run the whole test suite"
	@echo "make bench  measure the gateway against a direct-to-upstream baseline, then failover"
	@echo "make lint   ruff"
	@echo "make lock   re-pin requirements/*.txt from pyproject.toml"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python requirements/runtime.txt pyproject.toml
	$(BIN)/pip install --quiet -r requirements/runtime.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

$(DEVSTAMP): $(STAMP) requirements/dev.txt
	$(BIN)/pip install --quiet -r requirements/dev.txt
	@touch $@

run: $(STAMP)
	$(BIN)/aigw serve --demo

test: $(DEVSTAMP)
	bash scripts/ensure-services.sh
	bash scripts/ensure-test-tools.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(DEVSTAMP)
	bash bench/ensure-tools.sh
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.failover $(FAILOVER_ARGS)

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

lock: $(BIN)/python
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml -o requirements/runtime.txt --python-version 3.11
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements/dev.txt --python-version 3.11

clean:
	rm -rf $(VENV) .pytest_cache build dist src/*.egg-info
