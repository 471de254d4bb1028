# Diversion-risk scoring: the front door. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PRESET ?= default
DATA_DIR ?= data/synthetic$(if $(filter-out default,$(PRESET)),-$(PRESET))
ROWS ?= 200000
YEARS ?= 3
SEED ?= 42
FORMAT ?= parquet
DECLARATIONS ?= $(DATA_DIR)/declarations.$(FORMAT)
SEIZURES ?= $(DATA_DIR)/seizures.$(FORMAT)
OUT ?= outputs
PORT ?= 3000
WORKERS ?= 1
TRAIN_UNTIL ?= 2024-03-01
TEST_FROM ?= 2024-03-01
TEST_TO ?= 2024-07-01
TRIALS ?=
ROBUSTNESS_SEEDS ?= 3
ROBUSTNESS_ROWS ?= 100000
ROBUSTNESS_KINDS ?= default,drift,adversarial,independent
# The product's packages and the harness beside them (benchmarks, reliability, tests).
LINT_PATHS := features models training serving benchmarks reliability tests

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
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: $(STAMP) ## Create .venv from pyproject.toml + requirements.lock

.PHONY: data
data: $(STAMP) ## Generate the synthetic export history (ROWS, YEARS, SEED, FORMAT, PRESET, DATA_DIR)
	$(BIN)/python -m training generate --rows $(ROWS) --years $(YEARS) --seed $(SEED) --format $(FORMAT) --preset $(PRESET) --out $(DATA_DIR)

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
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

.PHONY: bench-data
bench-data: $(STAMP) ## Rows/s of generation and validation at 1 million rows
	$(BIN)/python -m benchmarks.data --rows 1000000

$(DECLARATIONS) $(SEIZURES):
	$(MAKE) data

.PHONY: train
train: $(STAMP) $(DECLARATIONS) ## Search (TRIALS) and fit on validation, evaluate against baselines, log to MLflow, register, promote
	$(TRAIN_ENV) $(BIN)/python -m training train --declarations $(DECLARATIONS) --seizures $(SEIZURES) $(if $(INSPECTIONS),--inspections $(INSPECTIONS)) $(if $(TRIALS),--trials $(TRIALS))

.PHONY: evaluate-robustness
evaluate-robustness: $(STAMP) ## Model vs baselines over seeds and kinds of history, mean ± std (ROBUSTNESS_*, TRIALS; ABLATION=1)
	$(TRAIN_ENV) $(BIN)/python -m benchmarks.robustness --seeds $(ROBUSTNESS_SEEDS) --rows $(ROBUSTNESS_ROWS) --kinds $(ROBUSTNESS_KINDS) \
		$(if $(TRIALS),--trials $(TRIALS)) $(if $(ABLATION),--ablation) --out $(OUT)/robustness

SCHEDULER ?=
DASK_WORKERS ?= 2

.PHONY: train-dask
train-dask: $(STAMP) $(DECLARATIONS) ## As make train, features and the final fit on Dask (SCHEDULER=tcp://host:8786; empty: a LocalCluster of DASK_WORKERS)
	$(TRAIN_ENV) $(BIN)/python -m training train --engine dask $(if $(SCHEDULER),--scheduler $(SCHEDULER),--workers $(DASK_WORKERS)) \
		--declarations $(DECLARATIONS) --seizures $(SEIZURES) $(if $(INSPECTIONS),--inspections $(INSPECTIONS)) $(if $(TRIALS),--trials $(TRIALS))

.PHONY: backtest
backtest: $(STAMP) $(DECLARATIONS) ## Backtest (TRAIN_UNTIL, TEST_FROM, TEST_TO, OUT)
	$(TRAIN_ENV) $(BIN)/python -m training backtest --declarations $(DECLARATIONS) --seizures $(SEIZURES) \
		--train-until $(TRAIN_UNTIL) --test-from $(TEST_FROM) --test-to $(TEST_TO) --out $(OUT)/backtest

.PHONY: export-outcomes
export-outcomes: $(STAMP) ## Export the service's history and inspection outcomes as contract files (outputs/outcomes)
	$(BIN)/python -m serving export-outcomes --out $(OUT)/outcomes

.PHONY: serve
serve: $(STAMP) ## Serve @champion with BentoML on 127.0.0.1:PORT with WORKERS processes (tokens: DIVERSION_TOKENS_FILE)
	DIVERSION_WORKERS=$(WORKERS) $(BIN)/bentoml serve serving.service:DiversionRiskService --host 127.0.0.1 --port $(PORT) --timeout-keep-alive 75

.PHONY: bento
bento: $(STAMP) ## Build the deployable Bento of the scoring service (bentofile.yaml; no secrets needed)
	$(BIN)/bentoml build --output tag

.PHONY: mlflow-ui
mlflow-ui: $(STAMP) ## Open the MLflow UI on http://127.0.0.1:5000 (runs, metrics, plots, registry)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

MLFLOW_BACKEND ?= postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow
MLFLOW_PORT ?= 5000

.PHONY: mlflow-server
mlflow-server: $(STAMP) ## Shared MLflow tracking server on PostgreSQL (MLFLOW_BACKEND), artifacts proxied, port MLFLOW_PORT
	$(BIN)/python -m training mlflow-server --backend-store-uri $(MLFLOW_BACKEND) --port $(MLFLOW_PORT) --artifacts mlartifacts

#: bench-train measures 1,000,000 declarations unless ROWS is given (make bench-train ROWS=10000000).
BENCH_TRAIN_ROWS = $(if $(filter command line environment,$(origin ROWS)),$(ROWS),1000000)
#: glibc: a fixed mmap threshold gives freed feature arrays back to the system at once.
#: OpenMP (LightGBM): an idle thread spins 10,000 times, then sleeps. Spinning long (the
#: default) lets waiting threads take the cores the working ones need on a busy machine (fit
#: 2.1x slower than sleeping at once); sleeping at once wakes them too late on an idle one
#: (1.2x slower). docs/benchmarks.md has the figures. Same model either way.
TRAIN_ENV := MALLOC_MMAP_THRESHOLD_=65536 GOMP_SPINCOUNT=10000

.PHONY: bench-train
bench-train: $(STAMP) ## Seconds, peak RSS and rows/s per training step at ROWS declarations, and time against the previous release's fit (PREVIOUS=0 skips it)
	$(TRAIN_ENV) $(BIN)/python -m benchmarks.train --rows $(BENCH_TRAIN_ROWS) --data-dir data/bench \
		$(if $(filter 0,$(PREVIOUS)),--no-previous,--previous)

.PHONY: bench-train-dask
bench-train-dask: $(STAMP) ## Features and fit at ROWS declarations: one process against Dask (SCHEDULER or a LocalCluster of DASK_WORKERS)
	$(TRAIN_ENV) $(BIN)/python -m benchmarks.train_dask --rows $(BENCH_TRAIN_ROWS) --data-dir data/bench \
		--workers $(DASK_WORKERS) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

.PHONY: bench-serve
bench-serve: $(STAMP) $(DECLARATIONS) ## Latency and throughput: this service (alone and with a challenger in shadow) vs mlflow models serve, same run
	$(BIN)/python -m benchmarks.serve --declarations $(DECLARATIONS) --seizures $(SEIZURES)

.PHONY: bench-replay
bench-replay: $(STAMP) $(DECLARATIONS) ## What replaying one audited decision costs a running worker (needs make train)
	$(BIN)/python -m benchmarks.replay --declarations $(DECLARATIONS) --seizures $(SEIZURES)

.PHONY: bench-rules
bench-rules: $(STAMP) ## Extra cost of 100 active rules + 10,000 watchlist entries per 1,000-declaration batch
	$(BIN)/python -m benchmarks.rules

.PHONY: rules-backtest
rules-backtest: $(STAMP) ## Backtest a targeting rule over the history (RULE=R-..., START=, END=, VERSION=)
	$(BIN)/python -m serving.rules_cli backtest --rule $(RULE) --start $(START) --end $(END) $(if $(VERSION),--version $(VERSION))

.PHONY: simulate
simulate: $(STAMP) $(DECLARATIONS) ## Week-by-week inspection-budget simulation of selection strategies
	$(BIN)/python -m training simulate --declarations $(DECLARATIONS) --seizures $(SEIZURES)

.PHONY: monitor
monitor: $(STAMP) $(DECLARATIONS) ## Drift report: PSI per feature, score and channel-rate shift (outputs/monitor)
	$(BIN)/python -m training monitor --declarations $(DECLARATIONS) --seizures $(SEIZURES)

.PHONY: demo
demo: $(STAMP) ## The main job end to end: generate, validate, profile, train, serve, score, show, stop
	$(MAKE) data
	$(MAKE) validate
	$(MAKE) profile
	$(MAKE) train
	$(BIN)/python -m serving demo --declarations $(DECLARATIONS) --seizures $(SEIZURES)

.PHONY: reliability
reliability: $(STAMP) ## Faults, hostile input, fuzzing, load, dependency audit (needs make train): one table
	$(BIN)/python -m reliability

.PHONY: audit-deps
audit-deps: $(STAMP) ## pip-audit of requirements.lock against known advisories (UNVERIFIED if unreachable)
	$(BIN)/python -m reliability --only dependency-audit
