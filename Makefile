# Portcullis: `make demo` and `make test` work on a fresh machine; everything else is a building block.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help setup venv node checkov az browser format lint typecheck test test-fast test-unit up demo bench clean

help:
	@echo "make demo      - install everything, start the local stack, run the JIT story end to end"
	@echo "make test      - install everything, lint, type-check and run the whole test suite"
	@echo "make test-unit - the pure tests only (pytest -m unit: no Azurite, emulator or host), in seconds"
	@echo "make test-fast - pytest only, stop at the first failure (PYTEST_ARGS=... passes arguments)"
	@echo "make up        - run the local stack (Azurite, ARM emulator, OpenID issuer, Functions host) until Ctrl-C; seeds the sample estate (PORTCULLIS_LOCAL_SEED=0: none)"
	@echo "make az        - install the Azure CLI into .venv-az (to use az against \`make up\`; tests/az need it)"
	@echo "make browser   - install Debian's chromium and chromium-driver with apt-get if missing (tests/browser need them)"
	@echo "make bench     - run the benchmarks, write bench/results/"
	@echo "make format    - ruff: fix what can be fixed, then format (what the pre-commit hook checks)"
	@echo "make lint      - ruff check and ruff format --check"
	@echo "make typecheck - mypy"
	@echo "make setup     - make venv (.venv), make node (node_modules: Azurite), make checkov (.venv-checkov)"
	@echo "make clean     - remove local state and caches (.localrig, .demo, tool caches)"
	@echo "make help      - this list"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is required (Node.js 20+) for Azurite"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov has its own venv: it pins packaging<24, which pytest 9 (in .venv) cannot live with.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11)"; exit 1; }
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

# The Azure CLI has its own venv too: azure-cli pins azure-mgmt-* and msal versions that clash with
# .venv's. About 1.5 minutes on a fresh machine (94 s measured); `make test` installs it for tests/az.
AZ_VENV := .venv-az
$(AZ_VENV)/.installed: requirements-az.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11)"; exit 1; }
	test -x $(AZ_VENV)/bin/python || $(PYTHON) -m venv $(AZ_VENV)
	$(AZ_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-az.txt
	touch $@

# Debian's chromium and chromium-driver for tests/browser: Selenium drives /usr/bin/chromedriver, so
# nothing is downloaded at test time. Installed with apt-get only when missing (root, else sudo).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "chromium and chromedriver are installed"; \
	else \
		command -v apt-get >/dev/null || { echo "apt-get not found: install chromium and chromium-driver"; exit 1; }; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

venv: $(VENV)/.installed
node: node_modules/.installed
checkov: $(CHECKOV_VENV)/.installed
az: $(AZ_VENV)/.installed
setup: venv node checkov

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

test: setup az browser lint typecheck
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: setup
	$(VENV)/bin/pytest -x -q $(PYTEST_ARGS)

# The unit marker is the truth (tests/conftest.py); naming the modules that carry it keeps pytest from
# importing (collecting) the whole suite, which alone takes longer than the unit tests run.
UNIT_TESTS := tests/unit $(shell grep -rl --include='test_*.py' '^pytestmark = pytest.mark.unit' tests)
test-unit: venv
	$(VENV)/bin/pytest -q -m unit $(UNIT_TESTS) $(PYTEST_ARGS)

up: setup
	$(PY) -m localrig up

demo: setup
	$(PY) -m demo

bench: setup
	$(PY) -m bench

clean:
	rm -rf .localrig .demo .pytest_cache .mypy_cache .ruff_cache
