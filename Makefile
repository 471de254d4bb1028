# Diversion-risk scoring: the front door. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= data/synthetic
ROWS ?= 200000
YEARS ?= 3
SEED ?= 42
FORMAT ?= parquet
DECLARATIONS ?= $(DATA_DIR)/declarations.$(FORMAT)
SEIZURES ?= $(DATA_DIR)/seizures.$(FORMAT)
OUT ?= outputs

export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := true
export PYTHONHASHSEED := 0

# The venv is rebuilt whenever pyproject.toml or the lock file changes.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

.PHONY: help
help: ## List every target with one line
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: $(STAMP) ## Create .venv from pyproject.toml + requirements.lock

.PHONY: data
data: $(STAMP) ## Generate the synthetic export history (ROWS, YEARS, SEED, FORMAT, DATA_DIR)
	$(BIN)/python -m training generate --rows $(ROWS) --years $(YEARS) --seed $(SEED) --format $(FORMAT) --out $(DATA_DIR)

.PHONY: validate
validate: $(STAMP) ## Validate contract files (DECLARATIONS=..., SEIZURES=..., INSPECTIONS=...)
	$(BIN)/python -m training validate --declarations $(DECLARATIONS) --seizures $(SEIZURES) $(if $(INSPECTIONS),--inspections $(INSPECTIONS)) --rejects-dir $(OUT)/rejects

.PHONY: profile
profile: $(STAMP) ## Print row counts, date range, seized rate and typology counts
	$(BIN)/python -m training profile --declarations $(DECLARATIONS) --seizures $(SEIZURES)

.PHONY: test
test: $(STAMP) ## Run the test suite (unit + integration)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

.PHONY: lint
lint: $(STAMP) ## Ruff lint and format check
	$(BIN)/ruff check features training serving models tests
	$(BIN)/ruff format --check features training serving models tests

.PHONY: bench-data
bench-data: $(STAMP) ## Rows/s of generation and validation at 1 million rows
	$(BIN)/python -m training bench-data --rows 1000000

.PHONY: demo
demo: $(STAMP) ## The main job end to end on embedded defaults
	$(MAKE) data
	$(MAKE) validate
	$(MAKE) profile
