# PHI ML Platform. Every command of the README; the first target that needs Python creates
# .venv from pyproject.toml by itself (nothing is installed by hand).
#
#   make synth [ENV="dev prod"]   make validate   make plan [ENV=dev]   make test   make demo

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-from-pyproject

ENV ?=
OUT ?= cdktf.out
FROM ?= staging
TO ?= prod
DIFF_FORMAT ?= text
LOCAL_OUT ?= cdktf.out.local
SCAN_RESULTS ?= reports/scan
REPORTS ?= reports
STACKS ?=
PROFILE ?=
BENCH_ARGS ?=
REGION ?=

# Where terraform finds hashicorp/aws 5.100.0 without the internet. Empty means the normal
# registry download. Defaults to a filesystem mirror if one sits at a known place on this
# machine; set PHI_PROVIDER_MIRROR yourself to use another (or PHI_PROVIDER_MIRROR= for none).
PHI_PROVIDER_MIRROR ?= $(firstword $(wildcard /opt/tf-plugins /usr/local/share/terraform/plugins))
export PHI_PROVIDER_MIRROR
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

PATIENTS ?=
PACKAGE ?=
LINEAGE_FORMAT ?=
IMAGES_REGISTRY ?=
IMAGES_TAG ?= local-$(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
IMAGES_RECORD ?= $(REPORTS)/images/digests.json
SOURCE_PROFILE ?=
TARGET_PROFILE ?=
ENDPOINT_URL ?=

# The commit and repository the synthesized pipeline records on every model version it
# registers (MetadataProperties); without them a version says `unrecorded`. The URL loses any
# credentials it carries (https://user:token@host/...); a clone without a remote names itself.
SOURCE_REVISION = PHI_SOURCE_COMMIT="$$(git rev-parse HEAD 2>/dev/null)" PHI_SOURCE_REPOSITORY="$$( (git config --get remote.origin.url 2>/dev/null || echo "file://$(CURDIR)") | sed -E 's|//[^/@]*@|//|')"

.PHONY: help setup synth synth-local check-environments validate plan preflight mutants features ml-demo lineage promote-model images images-check images-released e2e verify bootstrap plan-aws apply scan report report-png diagram diff bench test lint format demo clean

help: ## list every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP) ## create .venv with the pinned dependencies (done by every target as needed)

synth: $(STAMP) ## synthesize Terraform for every environment (or ENV="dev prod") into cdktf.out
	$(PY) main.py --out $(OUT) $(ENV)

synth-local: $(STAMP) ## synthesize for the local target (moto emulator) into cdktf.out.local
	PHI_TARGET=local $(PY) main.py --out $(LOCAL_OUT) $(ENV)

check-environments: $(STAMP) ## validate every environment file and list every problem of every file; writes nothing
	$(PY) main.py --check --all-errors

validate: synth ## terraform init + validate every synthesized stack (offline with the mirror)
	$(PY) -m tools.terraform validate --out $(OUT)

plan: synth-local ## terraform plan every stack against a moto server on loopback
	$(PY) -m tools.terraform plan --out $(LOCAL_OUT)

# `make scan` synthesizes first; `make scan OUT=DIR` scans DIR as it is (a copy holding only
# some stacks, an artifact from CI), so what was reviewed is what is judged.
scan: $(STAMP) ## the policy gate: checkov offline + policies/checks over OUT's stacks, exemptions applied
	$(if $(filter cdktf.out,$(OUT)),$(MAKE) --no-print-directory synth,)
	$(PY) -m policies.gate --out $(OUT) --results $(SCAN_RESULTS)

mutants: $(STAMP) ## the mutation corpus: every README guarantee removed from a copy of a real stack, each copy must fail the gate (tools/mutants)
	$(if $(filter cdktf.out,$(OUT)),$(MAKE) --no-print-directory synth,)
	$(PY) -m tools.mutants --out $(OUT)

preflight: $(STAMP) ## what real AWS would refuse at apply, judged on OUT's stacks (botocore models, IAM database, quotas, cfn-lint, AWS's schemas and sample events): reports/preflight/
	$(if $(filter cdktf.out,$(OUT)),$(MAKE) --no-print-directory synth,)
	$(PY) -m policies.preflight --out $(OUT) --results $(REPORTS)/preflight

diagram: synth ## the architecture diagram (Mermaid) generated from OUT's stacks: reports/architecture.mmd
	$(PY) -m tools.diagram --out $(OUT) --output $(REPORTS)/architecture.mmd

# Data through the data layers without an AWS account: a synthetic HealthLake export into the
# raw bucket, the feature builder, the feature groups' offline and online stores (moto).
features: ## FHIR export -> feature builder -> feature groups of ENV (default dev) on the emulator: reports/features/<env>/
	$(MAKE) --no-print-directory synth-local ENV="$(or $(ENV),dev)"
	$(PY) -m tools.features $(or $(ENV),dev) --out $(LOCAL_OUT) --reports $(REPORTS)/features $(if $(PATIENTS),--patients $(PATIENTS))

# The model loop without an AWS account: the synthesized pipelines interpreted step by step
# against moto, approval, the deployer, drift, the rollback function, lineage.
ml-demo: ## feature build -> training -> approval -> deploy -> drift -> rollback -> lineage for ENV (default dev) on the emulator: reports/ml/<env>/run.json
	$(SOURCE_REVISION) $(MAKE) --no-print-directory synth-local ENV="$(or $(ENV),dev)"
	$(PY) -m tools.ml_demo $(or $(ENV),dev) --out $(LOCAL_OUT) --reports $(REPORTS)/ml $(if $(PATIENTS),--patients $(PATIENTS))

lineage: $(STAMP) ## read-only: the chain of the version ENV's endpoint serves (or PACKAGE=<arn|version>): manifest, feature build, run, images, metrics, approval, rollbacks; a promoted version's training read in its source account with SOURCE_PROFILE=<profile>
	$(PY) -m tools.lineage $(or $(ENV),dev) $(if $(PACKAGE),--package $(PACKAGE)) $(if $(LINEAGE_FORMAT),--format $(LINEAGE_FORMAT)) $(if $(PROFILE),--profile $(PROFILE)) $(if $(SOURCE_PROFILE),--source-profile $(SOURCE_PROFILE))

promote-model: $(STAMP) ## move FROM's approved version PACKAGE to TO's registry by digest, pending TO's reviewers (FROM=staging TO=prod PACKAGE=<arn|version>)
	@test -n "$(PACKAGE)" || { echo "usage: make promote-model FROM=staging TO=prod PACKAGE=<arn|version> [SOURCE_PROFILE=p] [TARGET_PROFILE=p]" >&2; exit 2; }
	$(PY) -m tools.promote_model --from $(FROM) --to $(TO) --package $(PACKAGE) $(if $(SOURCE_PROFILE),--source-profile $(SOURCE_PROFILE)) $(if $(TARGET_PROFILE),--target-profile $(TARGET_PROFILE)) $(if $(ENDPOINT_URL),--endpoint-url $(ENDPOINT_URL))

images: $(STAMP) ## build and push the images for their platforms (IMAGES_REGISTRY=<account>.dkr.ecr.<region>.amazonaws.com; Docker + buildx), record AWS's images by digest
	$(PY) -m tools.images build --registry "$(IMAGES_REGISTRY)" --tag "$(IMAGES_TAG)" --record $(IMAGES_RECORD)
	$(PY) -m tools.images record $(foreach file,$(wildcard environments/*/environment.yaml),--environment $(file)) --record $(IMAGES_RECORD)

images-check: $(STAMP) ## compare every environment file's images with a digests record (IMAGES_RECORD=FILE)
	$(PY) -m tools.images check $(foreach file,$(wildcard environments/*/environment.yaml),--environment $(file)) --record $(IMAGES_RECORD)

images-released: $(STAMP) ## ask ECR in ENV's account whether every image its file names is there and was released (scanned) by CI
	@test -n "$(ENV)" || { echo "usage: make images-released ENV=dev|staging|prod|eu-research" >&2; exit 2; }
	$(PY) -m tools.image_release --environment environments/$(ENV)/environment.yaml

# The whole deploy loop without an AWS account: moto on loopback, apply every stack of the
# environment in dependency order, the runtime evidence checks, destroy, nothing left behind.
e2e: ## apply ENV (default dev) to a local AWS emulator, check the controls at runtime, destroy
	$(MAKE) --no-print-directory synth-local ENV="$(or $(ENV),dev)"
	$(PY) -m tools.e2e --out $(LOCAL_OUT) --results $(REPORTS)/e2e $(or $(ENV),dev)

verify: $(STAMP) ## read-only runtime evidence checks in ENV's real account (PROFILE=, REGION=; usual credentials)
	@test -n "$(ENV)" || { echo "usage: make verify ENV=dev|staging|prod|eu-research|org [PROFILE=p]" >&2; exit 2; }
	$(PY) -m policies.verify $(ENV) $(if $(PROFILE),--profile $(PROFILE)) $(if $(REGION),--region $(REGION)) --results $(REPORTS)/verify/$(ENV)

bootstrap: $(STAMP) ## once, in the org account: apply bootstrap (the state bucket), then move its state into it
	$(PY) -m tools.deploy bootstrap --out $(OUT) --plans $(REPORTS)/deploy/bootstrap

# plan-aws and apply never re-synthesize: CI checks the digest of exactly the bytes it applies.
plan-aws: $(STAMP) ## terraform plan STACKS="a b" of OUT in the real account (credentials from the usual chain)
	@test -n "$(STACKS)" || { echo 'usage: make plan-aws STACKS="dev-data dev-ml"' >&2; exit 2; }
	$(PY) -m tools.deploy plan --out $(OUT) --plans $(REPORTS)/plans $(STACKS)

apply: $(STAMP) ## plan + apply ENV's stacks of OUT in the real account, in dependency order
	@test -n "$(ENV)" || { echo "usage: make apply ENV=dev|staging|prod|eu-research|org" >&2; exit 2; }
	$(PY) -m tools.deploy apply --out $(OUT) --plans $(REPORTS)/deploy/$(ENV) --environment $(ENV)

report: $(STAMP) ## the auditor's evidence report from the last scan (and e2e): reports/evidence.html, .md
	$(PY) -m tools.diagram --out $(OUT) --output $(REPORTS)/architecture.mmd
	$(PY) -m policies.report --out $(OUT) --report-dir $(REPORTS)

report-png: report ## a screenshot of the evidence report (needs Chromium): reports/evidence.png
	$(PY) -m tools.screenshot reports/evidence.html reports/evidence.png

diff: $(STAMP) ## what promoting FROM to TO changes (FROM=staging TO=prod; DIFF_FORMAT=markdown)
	$(PY) -m tools.diff $(FROM) $(TO) --format $(DIFF_FORMAT) $(DIFF_ARGS)

bench: $(STAMP) ## time synth/validate/scan/gate against the naive provider import, then FHIR -> features against a FHIR object model, shards and growth, then the model loop: interpreter overhead and ml-demo (~40 min; BENCH_ARGS=--quick)
	$(PY) -m tools.bench $(BENCH_ARGS)
	$(PY) -m tools.bench_features $(filter --quick,$(BENCH_ARGS)) $(FEATURES_BENCH_ARGS)
	$(PY) -m tools.bench_ml $(filter --quick,$(BENCH_ARGS)) $(ML_BENCH_ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy main.py requirements modules environments tools policies runtime ml

format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint ## lint, then every test (constructs, environments, synth, terraform validate, moto plan)
	$(VENV)/bin/pytest

demo: ## the whole story on the embedded default: synth, validate, scan, preflight, features, the model loop and e2e (dev on moto), report
	$(MAKE) --no-print-directory validate
	$(PY) -m policies.gate --out $(OUT) --results $(SCAN_RESULTS)
	$(PY) -m policies.preflight --out $(OUT) --results $(REPORTS)/preflight
	$(MAKE) --no-print-directory features ENV=dev
	$(MAKE) --no-print-directory ml-demo ENV=dev
	$(MAKE) --no-print-directory e2e ENV=dev
	$(MAKE) --no-print-directory report
	@echo "demo complete: evidence report in $(REPORTS)/evidence.html (and $(REPORTS)/evidence.md)"

clean: ## remove synthesized output, reports and caches (keeps .venv)
	rm -rf $(REPORTS) $(OUT) $(LOCAL_OUT) $(OUT).tmp-* $(OUT).old-* .cache .pytest_cache .mypy_cache .ruff_cache
