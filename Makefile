# aigw — one command to run, one to test. Everything else is set up on demand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-runtime
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: run test bench lint lock clean help web web-test

help:
	@echo "make run    start the all-in-one gateway with the offline demo configuration"
	@echo "make test   install dev dependencies and run the whole test suite"
	@echo "make bench  measure the gateway against a direct-to-upstream baseline, then scaling and failover"
	@echo "make web    build the web dashboard (web/ -> src/aigw/web/static) when its sources changed"
	@echo "make lint   ruff, and tsc + eslint on the dashboard"
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

# The web dashboard (web/): `npm ci` when the lock file changed, `npm run build` when a source
# did; the build lands in the Python package (src/aigw/web/static), served by `aigw web`.
WEB       := web
WEB_BUILD := src/aigw/web/static/index.html
WEB_DEPS  := $(WEB)/node_modules/.aigw-installed
WEB_SRC   := $(shell find $(WEB)/src $(WEB)/public $(WEB)/scripts -type f 2>/dev/null) \
             $(WEB)/index.html $(WEB)/vite.config.ts $(WEB)/tsconfig.json $(WEB)/package.json

$(WEB_DEPS): $(WEB)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make: npm not found: install Node.js >= 20.19 (with npm) to build the web dashboard" >&2; exit 1; }
	cd $(WEB) && npm ci --no-audit --no-fund --prefer-offline --loglevel=error
	@touch $@

$(WEB_BUILD): $(WEB_DEPS) $(WEB_SRC)
	cd $(WEB) && npm run build --silent

web: $(WEB_BUILD)

web-test: $(WEB_BUILD)
	cd $(WEB) && npm run lint --silent && npm test --silent

run: $(STAMP) $(WEB_BUILD)
	$(BIN)/aigw serve --demo

test: $(DEVSTAMP) $(WEB_BUILD)
	bash scripts/ensure-services.sh
	bash scripts/ensure-test-tools.sh
	bash bench/ensure-tools.sh
	$(BIN)/ruff check src tests bench
	cd $(WEB) && npm run lint --silent && npm test --silent
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(DEVSTAMP)
	bash bench/ensure-tools.sh
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.scaling $(SCALING_ARGS)
	$(BIN)/python -m bench.failover $(FAILOVER_ARGS)

lint: $(DEVSTAMP) $(WEB_DEPS)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	cd $(WEB) && npm run lint --silent

lock: $(BIN)/python
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml -o requirements/runtime.txt --python-version 3.11
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements/dev.txt --python-version 3.11

clean:
	rm -rf $(VENV) .pytest_cache build dist src/*.egg-info $(WEB)/node_modules src/aigw/web/static
