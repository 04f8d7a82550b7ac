# Two commands set everything up on a fresh machine with Python 3.11+ and make:
#   make run    install into .venv if needed, then serve demo, tracker and dashboard on :8000
#   make test   install if needed, then lint, type-check and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM ?= $(shell command -v chromium 2>/dev/null || echo /usr/bin/chromium)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test lint typecheck client client-check bench bench-quick browser loadgen node-sdk clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Headless Chromium for the browser tests: Debian's package (browsers are not downloaded).
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
	  ( $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium )

# wrk (Debian's package) drives the benchmarks' closed-loop HTTP runs; without it the bench
# falls back to its asyncio client, which needs more of the CPU the server under test shares.
loadgen:
	@command -v wrk >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk ) || \
	  echo "wrk could not be installed: the HTTP scenarios will use the asyncio client"

# The browser client (tracker/static/tracker*.js), built from client/src by the esbuild pinned
# in client/package-lock.json. The built files are committed: `make run` needs no Node.
client:
	cd client && npm ci --no-audit --no-fund && node build.mjs

# The committed build must be what client/src builds.
client-check:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
	  ( cd client && npm ci --no-audit --no-fund --silent && node build.mjs --check ); \
	else \
	  echo "node is not installed: not checking that tracker/static/ is what client/src builds"; \
	fi

# Segment's Node SDK for its end-to-end test, where Node is installed (the test skips otherwise).
node-sdk:
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --prefix tests/node --no-audit --no-fund --silent; \
	else echo "npm not found: the Node SDK test will be skipped"; fi

run: install
	$(BIN)/tracker serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: install browser node-sdk lint typecheck client-check
	CHROMIUM_PATH=$(CHROMIUM) $(BIN)/pytest

bench: install loadgen
	$(BIN)/python -m bench

bench-quick: install loadgen
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache client/node_modules tests/node/node_modules
