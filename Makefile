# Two commands do all the setup on a fresh machine:
#   make run    installs what the app needs and opens TreeSynth Studio (the bundled offline model when no
#               OPENAI_BASE_URL / OPENAI_API_KEY is set)
#   make test   installs everything (Python packages, the local model, Debian's chromium) and runs every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test deps deps-local chromium bench fake

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps make re-runs instant; pip keeps the compiled llama-cpp-python wheel in its cache.
$(VENV)/.deps: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(VENV)/.deps-local: requirements-local.txt | $(BIN)/python
	@echo "Installing the offline model runtime (the first time, llama-cpp-python compiles for ~3 minutes)..."
	$(BIN)/pip install --quiet -r requirements-local.txt
	touch $@

deps: $(VENV)/.deps
deps-local: $(VENV)/.deps-local

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser test..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

run: $(VENV)/.deps
	@if [ -z "$$OPENAI_BASE_URL$$OPENAI_API_KEY" ]; then $(MAKE) --no-print-directory deps-local; fi
	$(BIN)/python -m treesynth_core.launch

test: $(VENV)/.deps $(VENV)/.deps-local chromium
	$(BIN)/python -m pytest

bench: $(VENV)/.deps
	$(BIN)/python bench/bench_build.py

fake: $(VENV)/.deps
	$(BIN)/python -m treesynth_core.fakellm --port 8765 --latency 0.2
