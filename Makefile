# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export VLLM_CPU_KVCACHE_SPACE ?= 2
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test venv venv-test prepare bench clean

venv:
	@bash scripts/setup-venv.sh lab

venv-test:
	@bash scripts/setup-venv.sh test
	@bash scripts/setup-system.sh

prepare: venv
	$(PY) -m llmops_magics.cli prepare

demo: venv
	$(PY) -m llmops_magics.cli demo

test: venv-test
	$(PY) -m llmops_magics.cli prepare
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) bench/generate.py

clean:
	rm -rf .llmops .pytest_cache
