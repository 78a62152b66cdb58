# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
# GPU users: install your CUDA torch into the venv first and set TORCH_SPEC= (empty) to keep it.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DS_ACCELERATOR ?= cpu
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(if $(strip $(TORCH_SPEC)),$(BIN)/pip install -q "$(TORCH_SPEC)")
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m showo.demo

test: setup
	$(BIN)/python -m pytest tests

lint: setup
	$(BIN)/ruff check showo data_engine tests bench
	$(BIN)/ruff format --check showo data_engine tests bench

bench: setup
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) runs demo_out
