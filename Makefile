# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: install test lint typecheck unit integration tooling test-redis7 clean demo bench bench-fold fidelity faults \
	llm-server llm-server-stop test-real-llm fidelity-real-llm

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

typecheck: $(STAMP)
	$(PY) -m mypy

## The whole default suite, with lint, type checks and a coverage report.
test: lint typecheck
	$(PY) -m pytest --cov=memcompress --cov-report=term -p no:cacheprovider
	$(PY) -m coverage report --include='*/memcompress/repositories/*' --fail-under=85

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

integration: $(STAMP)
	$(PY) -m pytest tests/integration -q

## The package build (a pip install into a fresh venv), the benchmark scripts and deploy/ (~1 min).
tooling: $(STAMP)
	$(PY) -m pytest tests/tooling -q

## The Redis-facing tests again, against the machine's Redis 7 on 127.0.0.1:6379.
test-redis7: $(STAMP)
	MEMCOMPRESS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 $(PY) -m pytest -m redis -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov .memcompress

## The README's first command: the compression on embedded servers, from nothing to a table.
demo: $(STAMP)
	$(PY) -m memcompress demo

## Quick benchmarks (~2-3 min): ours vs the TL-08 design, per-user cost, scan, fidelity. Prints tables;
## asserts nothing.
## Full runs and the chart: see docs/benchmarks.md.
bench: $(STAMP)
	$(PY) bench/run_all.py --quick

## Per-user fold cost vs history length (prints a table; several minutes for 100k events).
bench-fold: $(STAMP)
	$(PY) bench/fold_memory.py --events 1000 10000 100000

## Memory fidelity (~1 min): planted facts recalled in the summary after 6 compactions per user, ru and en,
## at the default SUMMARY_MAX_CHARS and at 2x and 4x it. Prints tables; asserts nothing. See docs/fidelity.md.
## Offline (extractive) unless MEMCOMPRESS_LLM_BASE_URL names an OpenAI-compatible endpoint.
fidelity: $(STAMP)
	$(PY) bench/fidelity.py --sweep

## The fault-injection suite at 5x in each layout: 150 users, >= 100 SIGKILLs, 5 Redis + 5 Mongo
## restarts (~8 min per layout). `make test` runs it at its default size (~3-4 min for the three layouts).
## MEMCOMPRESS_FAULT_SCALE=N for other sizes.
faults: $(STAMP)
	MEMCOMPRESS_FAULT_SCALE=5 $(PY) -m pytest tests/faults -q -s -p no:cacheprovider

## A real OpenAI-compatible LLM on this machine, offline (docs/fidelity.md, "A real model"): llama-cpp-python's
## server, built into its own .llm-venv (~15 min the first time), serving SmolLM2-135M from its registry
## package on 127.0.0.1. Prints the MEMCOMPRESS_* settings as export lines: `eval "$$(make -s llm-server)"`.
## LLM_MODEL=gemma3-270m serves Gemma 3 270M instead; LLM_N_CTX sets the context (default 8192).
LLM_MODEL ?= smollm2-135m
LLM_N_CTX ?= 8192
llm-server:
	@$(PYTHON) bench/llm_server.py start --model $(LLM_MODEL) --n-ctx $(LLM_N_CTX)

llm-server-stop:
	@$(PYTHON) bench/llm_server.py stop

## The opt-in suite against the real server (marker real_llm; `make test` never runs it). Starts the server
## when it can; the tests skip, saying why, when it cannot be built or started.
test-real-llm: $(STAMP)
	-@$(PYTHON) bench/llm_server.py start --model $(LLM_MODEL) --n-ctx $(LLM_N_CTX) >/dev/null
	$(PY) -m pytest -m real_llm tests/integration/test_real_llm.py -v -s -p no:cacheprovider

## Fidelity on the real server, the run docs/fidelity.md shows (1 user per language, 5 sessions, a 1,000-char
## budget, one request at a time: about 45 min with SmolLM2-135M here at a load average of 3-10).
fidelity-real-llm: $(STAMP)
	@$(PYTHON) bench/llm_server.py start --model $(LLM_MODEL) --n-ctx $(LLM_N_CTX) >/dev/null
	set -a && . ./.llm-venv/server.env && $(PY) bench/fidelity.py --users 1 --sessions 5 --budget 1000 --concurrency 1 --show-misses 10
