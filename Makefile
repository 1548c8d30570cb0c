# The two commands: `make run` (whole local stack, offline, embedded defaults) and `make test`
# (lint + the whole suite). Both set themselves up from nothing: venv, pip, a Redis server if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint format token redis chromium clean load load-api load-quotes load-ws bench bench-fanout bench-freshness bench-coldstart bench-handler deploy destroy package deploy-chalice destroy-chalice

# Re-installs only when a requirements file changes. Output goes to stderr so `$(make -s token)` stays clean.
$(STAMP): requirements.txt requirements-dev.txt infra/layer/requirements.txt infra/layer/tracing-requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) 1>&2
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade "pip<26.3" 1>&2  # chalice 1.34 requires pip<26.3
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt 1>&2
	@touch $@

install: $(STAMP)

# A redis-server binary for the tests (each test session starts its own on a free port) and for
# `make run` when REDIS_URL is unreachable. Installs Debian's package only when none is present.
redis:
	@bash infra/local/ensure-redis.sh 1>&2

# Debian's chromium at /usr/bin/chromium for the dashboard's browser tests (tests/browser: Playwright from
# pip launches it by path; no browser download). Installed only when absent.
chromium:
	@bash infra/local/ensure-chromium.sh 1>&2

run: install redis
	$(BIN)/python -m infra.local.run

test: install redis chromium lint
	$(BIN)/python -m pytest

lint: install lint-template
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint infra/*.yaml

# Static gates over the merged templates `make package` ships (infra/template_gates.py): cfn-lint with
# the serverless rules, checkov (its own venv: it pins boto3 1.35.x), the resource lists. Each stage's
# template is rebuilt only when an input changed (measured from a fresh clone: dev 21 s, prod 12 s; the
# checkov venv 49 s once; the three gates 15 s).
# Skipped/ignored checks are justified in infra/lint/checkov.yaml and infra/lint/cfn-lint.yaml.
.PHONY: lint-template rehearse
LINT_STAGES := dev prod
LINT_TEMPLATES := $(foreach stage,$(LINT_STAGES),build/lint/$(stage)/sam.json)
TEMPLATE_INPUTS := app.py $(shell find chalicelib -name '*.py' -not -path '*/__pycache__/*') .chalice/config.json \
	$(wildcard .chalice/policy-*.json) infra/template.yaml infra/package.py infra/deploy.py infra/layer/build.py requirements.txt
CHECKOV_VENV := .checkov-venv
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp
$(CHECKOV_STAMP): infra/lint/checkov-requirements.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV) 1>&2
	@$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check -r infra/lint/checkov-requirements.txt 1>&2
	@touch $@

build/lint/%/sam.json: $(TEMPLATE_INPUTS) | $(STAMP)
	$(BIN)/python -m infra.template_gates build --stage $*

lint-template: install $(LINT_TEMPLATES) $(CHECKOV_STAMP)
	$(BIN)/cfn-lint --config-file infra/lint/cfn-lint.yaml -- $(LINT_TEMPLATES)
	$(CHECKOV_VENV)/bin/checkov --config-file infra/lint/checkov.yaml $(foreach template,$(LINT_TEMPLATES),-f $(template))
	$(BIN)/python -m infra.template_gates resources $(LINT_STAGES)

# Load tests (locust, the spec's tool): start a local stack of their own, run headless, print numbers.
# USERS, WS_USERS and SECONDS override the defaults (API: 50 users, cold then warm; WebSocket: 500
# connections; 60 s per run). load-quotes is the refresh-ahead acceptance (Zipf quote reads with the
# scheduler running, warm hit rate >= 99 %): QUOTE_USERS, QUOTE_SECONDS (several quote TTLs), SEED.
USERS ?= 50
WS_USERS ?= 500
SECONDS ?= 60
QUOTE_USERS ?= 50
QUOTE_SECONDS ?= 300
SEED ?=
load: load-api load-quotes load-ws

load-api: install redis
	$(BIN)/python -m tests.load.run_api_load --users $(USERS) --seconds $(SECONDS)

load-quotes: install redis
	$(BIN)/python -m tests.load.run_quote_load --users $(QUOTE_USERS) --seconds $(QUOTE_SECONDS) $(if $(SEED),--seed $(SEED))

load-ws: install redis
	$(BIN)/python -m tests.load.run_ws_load --users $(WS_USERS) --seconds $(SECONDS)

# Benchmarks (scripts that print numbers measured in one run; not timed tests).
# bench-fanout: spec vs batch WebSocket fan-out at CONNECTIONS (1,000) x 20 Zipf symbols, 5 scheduled rounds
# each, refresh every 60 s (README "Fan-out benchmark": about 20 minutes at 1,000 connections on 2 cores).
# bench is the same.
CONNECTIONS ?= 1000
bench: bench-fanout

bench-fanout: install redis
	$(BIN)/python -m tests.bench.bench_fanout --connections $(CONNECTIONS)

# Quote freshness end to end at the deployed cadence (1-minute refresh): about 5 minutes.
bench-freshness: install redis
	$(BIN)/python -m tests.bench.bench_freshness

# Cold start of the packaged prod function (builds it: make package STAGE=prod), 15 fresh processes per
# tracing mode, and warm in-process cached quotes (README "Cold start"). A few minutes each.
bench-coldstart: install redis
	$(BIN)/python -m tests.bench.bench_coldstart

bench-handler: install redis
	$(BIN)/python -m tests.bench.bench_handler

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Prints a dev JWT for the local stage: curl -H "Authorization: Bearer $(make -s token)" ...
token: install
	@$(BIN)/python -m infra.local.token

# Deploy to AWS (credentials from the usual AWS environment/profile): STAGE=dev|prod.
# Every stage needs JWT_ISSUER, JWT_AUDIENCE and CORS_ORIGINS (https, comma-separated): the deploy is
# refused while they are unset or the local defaults. prod also needs JWKS_URL (the identity provider's
# RS256 keys); ALARM_EMAIL subscribes to the alarms; WAF=on|off overrides the stage's default.
# The supported path: `make package` builds build/<stage>/package/, `make deploy` deploys exactly those
# files as stack market-data-<stage> through a change set (NO_EXECUTE=1: create it only; ENDPOINT_URL: an
# emulator). deploy-chalice is the older two-pass `chalice deploy` path, kept for quick dev iteration.
STAGE ?= dev
DEPLOY_ARGS = --stage $(STAGE) --alarm-email "$(ALARM_EMAIL)" $(if $(JWKS_URL),--jwks-url $(JWKS_URL)) \
	$(if $(JWT_ISSUER),--jwt-issuer "$(JWT_ISSUER)") $(if $(JWT_AUDIENCE),--jwt-audience "$(JWT_AUDIENCE)") \
	$(if $(CORS_ORIGINS),--cors-origins "$(CORS_ORIGINS)") $(if $(WAF),--waf $(WAF))
# The deployable artifacts of STAGE: build/<stage>/package/{deployment.zip, sam.json, *-layer.zip}
# (infra/package.py; README "Deploying to AWS").
package: install
	$(BIN)/python -m infra.package --stage $(STAGE)

deploy: install
	$(BIN)/python -m infra.release deploy $(DEPLOY_ARGS) $(if $(NO_EXECUTE),--no-execute) \
		$(if $(ENDPOINT_URL),--endpoint-url $(ENDPOINT_URL))

destroy: install
	$(BIN)/python -m infra.release destroy --stage $(STAGE) $(if $(ENDPOINT_URL),--endpoint-url $(ENDPOINT_URL))

deploy-chalice: install
	$(BIN)/python -m infra.deploy deploy $(DEPLOY_ARGS)

destroy-chalice: install
	$(BIN)/python -m infra.deploy destroy --stage $(STAGE)

# Deploy rehearsal (README "Deploy rehearsal"): the dev package `make deploy` ships, deployed by
# infra/release.py into ministack (its own venv: it pins botocore 1.43.x) after the documented
# rehearsal-only transform, exercised through the emulated API Gateway (quote, websocket, job, page),
# its stack compared with the merged template, then everything torn down. About 2 minutes.
REHEARSE_VENV := .rehearse-venv
REHEARSE_STAMP := $(REHEARSE_VENV)/.installed-stamp
$(REHEARSE_STAMP): infra/rehearsal/requirements.txt
	@test -x $(REHEARSE_VENV)/bin/python || $(PYTHON) -m venv $(REHEARSE_VENV) 1>&2
	@$(REHEARSE_VENV)/bin/python -m pip install -q --disable-pip-version-check -r infra/rehearsal/requirements.txt 1>&2
	@touch $@

rehearse: install redis $(REHEARSE_STAMP)
	$(BIN)/python -m infra.package --stage dev
	REHEARSAL_VENV=$(REHEARSE_VENV) $(BIN)/python -m infra.rehearsal.run --stage dev

clean:
	rm -rf $(VENV) $(REHEARSE_VENV) $(CHECKOV_VENV) build/lint .pytest_cache .mypy_cache .ruff_cache .local
