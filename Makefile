# Two entry points for a fresh machine with Python 3.11 and make: `make demo` and `make test`.
# Both create (or refresh, when pyproject.toml changed) a git-ignored .venv in the repository, then run.
PYTHON ?= python3.11
VENV ?= .venv
# CPU set-up pins torch first. GPU users: install your CUDA torch into .venv first and set TORCH_SPEC=
# (empty) so it is kept; any torch within pyproject's range works.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DS_ACCELERATOR ?= cpu
export TOKENIZERS_PARALLELISM ?= false
LINT_PATHS := showo data_engine tests bench

.PHONY: setup demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(if $(strip $(TORCH_SPEC)),$(BIN)/python -m pip install -q "$(TORCH_SPEC)")
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# The end-to-end demo (showo/demo.py): ~15 minutes on 2 idle cores. DEMO_ARGS is passed through, e.g.
# `make demo DEMO_ARGS="--scale 3"` trains every stage three times longer.
DEMO_ARGS ?=
demo: setup
	$(BIN)/python -m showo.demo $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest tests

lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

# Every bench/*.py prints one JSON line; bench/run_all.py (when present) also writes bench/results.json.
bench: setup
	@if [ -f bench/run_all.py ]; then $(BIN)/python -m bench.run_all; \
	else for script in bench/*.py; do if [ -f "$$script" ]; then $(BIN)/python "$$script" || exit 1; fi; done; fi

clean:
	rm -rf $(VENV) runs demo_out
