# Two entry points for a fresh machine with Python 3.11+ (see README "Quick start").
# TORCH pins the CPU build on disk here; on a GPU machine use e.g. `make TORCH=torch==2.9.1 ...`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install quickstart test test-all clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job: a 4x4 Sudoku sweep, masked vs GIDD diffusion, ending with its leaderboard.
quickstart: $(STAMP)
	$(BIN)/difflab sweep experiments/quickstart.yaml

# The default test suite (slow tests excluded; `make test-all` runs them too).
test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "slow or not slow"

clean:
	rm -rf mlflow.db mlartifacts runs .cache
