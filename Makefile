# Train -> promote -> build -> serve a credit-risk model; `make help` lists the targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
HOST ?= http://127.0.0.1:$(PORT)
SMOKE_USERS ?= 10
SMOKE_TIME ?= 30s
# Locust workers beside the master for smoke and size: -1 one per core, 0 a single process
LOCUST_PROCESSES ?= -1
REPORTS := loadtests/reports

.DEFAULT_GOAL := help
.PHONY: help setup promtool train promote build build-cuda bento serve demo test test-fast smoke bench batch-bench size size-verify lint typecheck rollback

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(VENV)/.installed ## virtual environment in .venv with the project and its tools

# promtool checks and unit-tests deploy/monitoring/alerts.yml (tests/unit/test_alerting.py). Debian's
# prometheus package ships it; installed as root without starting the Prometheus server it also
# packages (a policy-rc.d that denies service starts, unless one is there already).
PROMTOOL_HINT := promtool is missing: install Debian's prometheus package (as root: apt-get update && apt-get install -y --no-install-recommends prometheus) or put promtool on PATH
promtool: ## promtool on PATH (as root, installs Debian's prometheus package without starting it)
	@command -v promtool >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then echo "$(PROMTOOL_HINT)" >&2; exit 1; fi; \
	policy=/usr/sbin/policy-rc.d; own_policy=; \
	if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod 755 $$policy && own_policy=1; fi; \
	trap 'if [ -n "$$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null || exit 1; \
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then systemctl stop prometheus; fi; \
	if [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then /etc/init.d/prometheus stop; fi; \
	promtool --version | head -n 1

$(VENV)/.installed: pyproject.toml requirements/serving.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

train: setup ## train on the credit data and register a version in MLflow (sqlite:///mlflow.db)
	$(BIN)/python -m training.train

promote: setup ## gate and import the newest registered version into the BentoML store
	$(BIN)/python -m training.promote

rollback: setup ## serve the previous champion again (then `make build`)
	$(BIN)/python -m training.promote rollback

build: setup ## bentoml build: a Bento around the champion model
	$(BIN)/bentoml build --output tag

build-cuda: setup ## bentoml build of the CUDA image variant (bentofile.cuda.yaml)
	$(BIN)/bentoml build -f bentofile.cuda.yaml --output tag

bento: train promote build ## train -> register -> promote -> build

serve: setup ## serve the latest built Bento on PORT (default 3000)
	@echo "Serving credit-risk:latest at $(HOST)  (Ctrl-C stops)"
	@echo "Try: curl -s -X POST $(HOST)/score -H 'content-type: application/json' -d @loadtests/example_request.json"
	$(BIN)/bentoml serve credit-risk:latest --port $(PORT)

demo: bento serve ## the main job end to end: bento + serve

test: lint typecheck promtool wrk container-engine ## lint, type check, then the whole test suite (unit, integration, e2e, images)
	$(BIN)/pytest

container-engine: ## as root: podman and the local base images for the image tests (otherwise they skip, saying why)
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory base-image; \
	else echo "not root: podman is not set up here, the image tests will skip (make engine base-image as root)"; fi

test-fast: setup promtool ## unit and integration tests only
	$(BIN)/pytest -m "not e2e"

smoke: setup ## headless Locust smoke run (a master and LOCUST_PROCESSES workers) against HOST
	mkdir -p $(REPORTS)
	$(BIN)/locust -f loadtests/load/locustfile.py --headless --host $(HOST) \
		-u $(SMOKE_USERS) -r $(SMOKE_USERS) -t $(SMOKE_TIME) --only-summary \
		--processes $(LOCUST_PROCESSES) --master-bind-host 127.0.0.1 \
		--csv $(REPORTS)/smoke --html $(REPORTS)/smoke.html --exit-code-on-error 1

# wrk is the benchmark's closed-loop client (loadtests/load/wrk.py); without it the bench falls back to
# the aiohttp burst client and says so in its report.
.PHONY: wrk
wrk: ## wrk on PATH (as root, installs Debian's wrk package; otherwise says how)
	@command -v wrk >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "wrk is missing: as root, apt-get install -y wrk (the bench uses the aiohttp burst client meanwhile)" >&2; exit 0; fi; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null

bench: setup wrk ## side by side vs mlflow models serve and the floors -> loadtests/reports/bench-<stamp>/ (needs `make bento`)
	$(BIN)/python -m loadtests.bench.side_by_side --processes $(LOCUST_PROCESSES)

.PHONY: bench-canary
bench-canary: setup wrk ## the canary split's cost: the default topology with and without a 25% canary, 9 closed-loop rounds (needs `make bento`)
	$(BIN)/python -m loadtests.bench.side_by_side --only project canary --rounds 9 --no-capacity

batch-bench: setup ## batch rows/s: torch core, batch.score, Dask 1 and 2 workers -> loadtests/reports/batch-<stamp>/ (needs `make promote`)
	$(BIN)/python -m loadtests.bench.batch_throughput

.PHONY: log-bench
log-bench: setup ## prediction log rows/s alone and behind /score (SQLite, PostgreSQL) -> loadtests/reports/log-bench-<stamp>/ (needs `make bento`)
	$(BIN)/python -m loadtests.bench.log_bench

.PHONY: bandit-sim
bandit-sim: setup ## replay the canary bandit over the credit data vs 50/50 and the oracle -> loadtests/results/bandit-sim.md (about 30 s)
	$(BIN)/python -m loadtests.bench.bandit_sim --out loadtests/results/bandit-sim.md

.PHONY: process-split runner-sweep size-profiles
process-split: setup ## CPU per process of the served Bento under closed-loop load (SETTINGS="NAME=VALUE ..."); needs `make bento`
	$(BIN)/python -m loadtests.bench.process_split $(SETTINGS)

size: setup ## sizing sweep -> loadtests/reports/sizing-<stamp>/ (report.md, steps.csv, deployment.yaml) and both deploy/k8s profiles; needs `make bento`
	$(BIN)/python -m loadtests.sizing.size --processes $(LOCUST_PROCESSES)

size-verify: setup ## measure the newest sizing run's recommendation again (RUN=folder for another)
	$(BIN)/python -m loadtests.sizing.size --verify $(if $(RUN),--run $(RUN))

size-profiles: setup ## write both deploy/k8s profiles and deployment.yaml again from a stored sizing run (RUN=folder)
	$(if $(RUN),,$(error RUN=folder of a sizing run, e.g. loadtests/results/sizing-20261123-1452))
	$(BIN)/python -m loadtests.sizing.profiles --run $(RUN)

runner-sweep: setup ## the runner alone per device (CPU, and CUDA where lent) -> loadtests/reports/runner-sweep-<stamp>.json (MODEL_DIR=the served MLflow model, or WIDTH=)
	$(BIN)/python -m loadtests.sizing.runner_sweep $(if $(MODEL_DIR),--model-dir $(MODEL_DIR)) $(if $(WIDTH),--width $(WIDTH))

lint: setup ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup ## mypy over the packages (strict on the domain and the model artifact)
	$(BIN)/mypy

# Container images with podman (no Docker daemon; deploy/image/README.md). As root on Debian 12:
# `make engine` installs podman & co., `make base-image` builds the local Debian base images
# (no image registry is reachable), `make image` / `make image-cuda` containerize the Bento.
IMAGE_DIR := .image
IMAGE_ENV := CONTAINERS_CONF=$(CURDIR)/$(IMAGE_DIR)/containers.conf
IMAGE ?= credit-risk:latest
IMAGE_CUDA ?= credit-risk-cuda:latest
# the local CPU torch wheel(s), bind-mounted read-only into the CPU image build at /opt/wheels
TORCH_WHEELS ?= /opt/wheels
.PHONY: engine base-image image image-cuda container-engine

engine: ## podman + runc + netavark (as root, apt) and .image/containers.conf for them
	deploy/image/engine.sh

base-image: engine ## local Debian 12 base images with uv (skipped when present; FORCE=1 rebuilds)
	TORCH_WHEELS=$(TORCH_WHEELS) deploy/image/base.sh

image: base-image build ## CPU image credit-risk:latest from the Bento (bentoml containerize, podman)
	TORCH_WHEELS=$(TORCH_WHEELS) $(IMAGE_ENV) deploy/image/containerize.sh credit-risk:latest $(IMAGE) cpu

image-cuda: base-image build-cuda ## CUDA image credit-risk-cuda:latest from build-cuda's Bento (~6.5 GB)
	$(IMAGE_ENV) deploy/image/containerize.sh credit-risk-cuda:latest $(IMAGE_CUDA) cuda
