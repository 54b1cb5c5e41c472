# Two commands do all the setup on a fresh machine:
#   make run    installs what the app needs and serves TreeSynth Studio on http://127.0.0.1:8501 (TREESYNTH_PORT
#               picks another port; the bundled offline model when no OPENAI_BASE_URL / OPENAI_API_KEY is set)
#   make test   installs everything (Python packages, the local model, Debian's chromium) and runs every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test deps deps-local chromium bench fake

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps make re-runs instant; pip keeps the compiled llama-cpp-python wheel in its cache.
$(VENV)/.deps: requirements.txt requirements-dev.txt requirements-hub.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# llama-cpp-python is compiled portably: never -march=native, never AMX. A native build crashes with a general
# protection fault on virtualised Xeons with AMX (upstream llama.cpp #20824), and a wheel built on one machine
# must run on every x86-64 machine. AVX2/FMA/F16C where the CPU has them (every x86-64 CPU since 2013),
# otherwise plain x86-64. The wheel is built once into a folder named by version and flags, outside pip's
# cache, so pip can never hand back an earlier native build; installing it is then a matter of seconds.
LLAMA_VERSION := $(shell sed -n 's/^llama-cpp-python\[server\]==\([0-9.]*\).*/\1/p' requirements-local.txt)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX512=OFF \
  $(if $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && echo y),-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON)
LLAMA_WHEELS := $(or $(TREESYNTH_CACHE),$(HOME)/.cache/treesynth)/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)

$(LLAMA_WHEELS): | $(BIN)/python
	@echo "Compiling llama-cpp-python $(LLAMA_VERSION) portably, once (3 to 12 minutes on 2 cores)..."
	rm -rf $@.partial && mkdir -p $@.partial
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" FORCE_CMAKE=1 $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
	  --no-binary llama-cpp-python -w $@.partial "llama-cpp-python==$(LLAMA_VERSION)"
	mv $@.partial $@

$(VENV)/.deps-local: requirements-local.txt Makefile | $(BIN)/python $(LLAMA_WHEELS)
	$(BIN)/pip install --quiet --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/pip install --quiet --only-binary llama-cpp-python --find-links $(LLAMA_WHEELS) -r requirements-local.txt
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

# A fake OpenAI-compatible model on 127.0.0.1:8765 for a demo without a key (README: "Try it in three lines").
fake: $(VENV)/.deps
	$(BIN)/python -m treesynth_core.fakellm --port 8765 --latency 0.2
