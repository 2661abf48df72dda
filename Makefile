# The two commands of the README: `make run` (the whole pipeline) and `make test` (the tests); `make help` lists every target.
# Both create .venv on first use and reuse it afterwards.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# No telemetry, tool state inside the repo.
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PREFECT_HOME := $(CURDIR)/.prefect
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv run quick smoke paper plots exps link test test-fast bench bench-full clean

## Every target with its one-line description (the first sentence of the ## comment above it).
help:
	@awk '/^## / { doc = doc (doc ? " " : "") substr($$0, 4); next } \
	     /^[a-z][a-z-]*:/ { if (doc) { split($$0, t, ":"); i = index(doc, ". "); if (i) doc = substr(doc, 1, i); \
	                        printf "  make %-21s %s\n", t[1], doc }; doc = ""; next } \
	     { doc = "" }' $(firstword $(MAKEFILE_LIST))

## Create .venv (pinned packages from requirements.txt) unless it is up to date.
venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt 2> >(grep -v "is ignored: it is neither" >&2)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2> >(grep -v "is ignored: it is neither" >&2)
	touch $(STAMP)

# git + DVC repository set-up on a fresh clone (idempotent).
.dvc/config:
	test -d .git || git init -q
	$(BIN)/dvc init -q || true

RECIPE ?=
## The whole pipeline with params.yaml (the paper-length default recipe; use `make quick` on a CPU).
## First says what it will cost (device, estimated training time from timed steps). RECIPE=<name>
## (configs/recipes/, `python -m pipeline recipes` lists them): that recipe as a named DVC experiment.
run: venv .dvc/config
	$(BIN)/python -m pipeline estimate
	$(if $(RECIPE),@args=$$($(BIN)/python -m pipeline recipes $(RECIPE)) || exit 2; \
	  eval "$(BIN)/dvc exp run -n $(RECIPE)-$$(date +%Y%m%d-%H%M%S) $$args",$(BIN)/dvc repro)

## The shipped paper-length results (results/paper/), analysed again with params.yaml's downstream
## sections, without training: build/paper/reports/index.html (a git + DVC project: dvc exp run there). PARAMS="-S network.uplink_mbps=5";
## CERTIFY=1 adds the certified thresholds of seed 0 (about two more minutes); SHIFT=0 leaves the shift stages out.
paper: venv
	$(BIN)/python -m pipeline paper build $(if $(RECIPE),--recipe $(RECIPE)) $(PARAMS) $(if $(CERTIFY),--certify) $(if $(filter 0,$(SHIFT)),--no-shift)

QUICK_CONFIG ?= configs/quick.yaml
## The quick CPU recipe (configs/quick.yaml) as a named DVC experiment in this workspace. A failed
## experiment puts params.yaml back as it was (DVC leaves the experiment's values there).
quick: venv .dvc/config
	@backup=$$(mktemp); cp params.yaml $$backup; \
	eval "$(BIN)/dvc exp run -n quick-$$(date +%Y%m%d-%H%M%S) $$($(BIN)/python -m pipeline overlay $(QUICK_CONFIG))"; status=$$?; \
	if [ $$status -ne 0 ]; then cp $$backup params.yaml; \
	  echo "make quick: the experiment failed (exit $$status); params.yaml put back as it was before" >&2; fi; \
	rm -f $$backup; exit $$status

## The whole pipeline on a small subset (configs/smoke.yaml) in a scratch copy under build/smoke (replaced
## each time), run by the benchmark flow: its Prefect and MLflow runs land where `make ui` shows them.
smoke: venv
	env $$($(BIN)/python -m pipeline services api-env) $(BIN)/python -m pipeline scratch --overlay configs/smoke.yaml --dest build/smoke --flow

## The optional measured link (docs/link.md): a real edge and cloud process per variant over a link shaped
## by tc in network namespaces (root; loopback otherwise), against the latency model; then the report again.
link: venv .dvc/config
	$(BIN)/dvc repro link/dvc.yaml
	$(BIN)/dvc repro --force --single-item report

## The paper's curves of the workspace and of every DVC experiment, side by side, in one offline HTML
## page (Vega bundled): build/dvc_plots/index.html. EXPS="exp-a exp-b" compares those experiments only.
plots: venv
	@mkdir -p build
	$(BIN)/dvc plots diff $(if $(EXPS),$(EXPS),$$($(BIN)/dvc exp list --name-only 2>/dev/null)) \
		--html-template pipeline/templates/dvc_plots.html -o build/dvc_plots

EXP_SHOW_FLAGS := --only-changed --drop 'Created|State|Executor|^(src|pipeline|data)/' --precision 3
## The DVC experiments, one row each, only the params and metrics that differ between them (fits 80 columns
## better than plain `dvc exp show`, whose ~70 param columns collapse to "..."). Also in build/smoke.
exps: venv
	$(BIN)/dvc exp show $(EXP_SHOW_FLAGS)

## The whole test suite (real DVC, Prefect, MLflow on tiny synthetic data; several minutes).
test: venv
	$(BIN)/python -m pytest -q

## The tests without the integration ones (-m "not integration").
test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration"

## The benchmarks (docs/performance.md): training, metrics engine, incremental runs, start-up.
bench: venv
	$(BIN)/python -m benchmarks

## Also the time to result of the quick recipe on the real archive (about half an hour on 2 cores).
bench-full: venv
	$(BIN)/python -m benchmarks training_cpu metrics_engine incremental startup gpu time_to_result

## Remove build/ (smoke runs, paper bundles, plots) and pytest's cache.
clean:
	rm -rf build .pytest_cache

# Orchestration and tracking (docs/orchestration.md): Prefect server + MLflow UI on 127.0.0.1.
.PHONY: ui ui-stop ui-status flow serve sweep
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
export PREFECT_PORT MLFLOW_PORT
PREFECT_SERVER_API_STARTUP_TIMEOUT ?= 120
export PREFECT_SERVER_API_STARTUP_TIMEOUT
UPLINK ?= 5 10 18.8 40
BRANCHES ?=
WAIT ?=

## Start the Prefect server and the MLflow UI (PID files and logs in .prefect/ui/).
ui: venv
	$(BIN)/python -m pipeline services start

## Stop exactly the processes `make ui` started.
ui-stop:
	$(BIN)/python -m pipeline services stop

## Whether the Prefect server and MLflow UI of `make ui` run, and where.
ui-status:
	$(BIN)/python -m pipeline services status

## The benchmark flow (dvc repro stage by stage, then MLflow): on `make ui`'s server if it runs,
## else on a temporary Prefect server. WAIT=30: queue up to 30 s behind a run already in progress.
flow: venv .dvc/config
	env $$($(BIN)/python -m pipeline services api-env) $(BIN)/python -m pipeline flows $(if $(RECIPE),experiment --recipe $(RECIPE),run) $(if $(WAIT),--wait $(WAIT))

## Serve the deployments so runs (with parameters) can be started from the Prefect UI.
serve: venv .dvc/config
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/python -m pipeline flows serve

## Sweep uplink rates (and branch placements) as DVC experiments: reports/sweeps/sweep/.
sweep: venv .dvc/config
	env $$($(BIN)/python -m pipeline services api-env) $(BIN)/python -m pipeline sweep --uplink $(UPLINK) $(if $(BRANCHES),--branches $(BRANCHES)) $(if $(RECIPE),--recipe $(RECIPE)) $(if $(WAIT),--wait $(WAIT))

# Sweeps that outgrow one machine (docs/scale-out.md): one Prefect flow run per point in the work pool
# eeoffload-sweep, picked up by process workers (here or on other machines), a DVC remote shared by
# the points (outputs and run cache) and an MLflow tracking server they all log to.
.PHONY: workers workers-stop tracking-server tracking-server-stop scaleout-status sweep-workers
WORKERS ?= 2
SEEDS ?=
DVC_REMOTE ?=
TRACKING_URI ?=
MLFLOW_SERVER_PORT ?= 5001
export MLFLOW_SERVER_PORT
SWEEP_API = $(or $(PREFECT_API_URL),http://127.0.0.1:$(PREFECT_PORT)/api)
SWEEP_TRACKING = $(or $(TRACKING_URI),http://127.0.0.1:$(MLFLOW_SERVER_PORT))

## Start WORKERS local process workers of the pool (those not already running; PID files in .prefect/scaleout/).
workers: venv
	PREFECT_API_URL=$(SWEEP_API) $(BIN)/python -m pipeline scaleout workers-start $(WORKERS)

## Stop exactly the local workers `make workers` started.
workers-stop:
	$(BIN)/python -m pipeline scaleout workers-stop

## The MLflow tracking server (mlflow server, artifacts served through it) on 127.0.0.1:$(MLFLOW_SERVER_PORT);
## MLFLOW_HOST=0.0.0.0 MLFLOW_BACKEND_STORE_URI=postgresql://... MLFLOW_ARTIFACTS_DESTINATION=s3://... for several machines.
tracking-server: venv
	$(BIN)/python -m pipeline scaleout tracking-start

## Stop exactly the tracking server `make tracking-server` started.
tracking-server-stop:
	$(BIN)/python -m pipeline scaleout tracking-stop

## The local workers, the tracking server and the work pool of the scale-out sweep.
scaleout-status:
	$(BIN)/python -m pipeline scaleout status

## The sweep as one flow run per point over the work pool: starts the Prefect server (make ui) unless
## PREFECT_API_URL is set, the tracking server unless TRACKING_URI is set, and WORKERS local workers
## (WORKERS=0: only the workers already running, here or elsewhere). reports/sweeps/sweep/.
sweep-workers: venv .dvc/config
	$(if $(PREFECT_API_URL),,$(BIN)/python -m pipeline services start)
	$(if $(TRACKING_URI),,$(BIN)/python -m pipeline scaleout tracking-start)
	PREFECT_API_URL=$(SWEEP_API) $(BIN)/python -m pipeline scaleout workers-start $(WORKERS)
	PREFECT_API_URL=$(SWEEP_API) $(BIN)/python -m pipeline workpool sweep --uplink $(UPLINK) \
		$(if $(BRANCHES),--branches $(BRANCHES)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(DVC_REMOTE),--remote $(DVC_REMOTE)) \
		--tracking-uri $(SWEEP_TRACKING) $(if $(filter-out 0,$(WORKERS)),--stop-workers)

# A scale-out cluster on one machine, its hosts really apart (docs/scale-out.md "A cluster on one
# machine"; root only): network namespaces head (PostgreSQL, Prefect server, MLflow tracking server),
# store (sshd: the DVC remote over SSH and the git repository) and w1..wN (one worker each).
.PHONY: cluster-up cluster-down cluster-status cluster-sweep sweep-cancel
PREFIX ?= sweep

## Bring the cluster up (WORKERS workers), one status line per service; state in build/cluster/.
cluster-up: venv
	$(BIN)/python -m pipeline cluster up --workers $(WORKERS)

## Stop the cluster's workers and servers and remove its namespaces (PostgreSQL's data are kept).
cluster-down:
	$(BIN)/python -m pipeline cluster down

## One line per service of the cluster (exit status 1 if one is down).
cluster-status:
	$(BIN)/python -m pipeline cluster status

## The work-pool sweep on the cluster (Ctrl-C cancels its flow runs and stops the workers).
cluster-sweep: venv .dvc/config
	$(BIN)/python -m pipeline cluster sweep --uplink $(UPLINK) --prefix $(PREFIX) \
		$(if $(BRANCHES),--branches $(BRANCHES)) $(if $(SEEDS),--seeds $(SEEDS))

## Cancel sweep PREFIX's submitted and running flow runs and stop its workers (the cluster's if it is up).
sweep-cancel:
	if $(BIN)/python -m pipeline cluster status >/dev/null 2>&1; then \
		$(BIN)/python -m pipeline cluster cancel --prefix $(PREFIX); \
	else PREFECT_API_URL=$(SWEEP_API) $(BIN)/python -m pipeline workpool cancel --prefix $(PREFIX) \
		&& $(BIN)/python -m pipeline scaleout workers-stop; fi
