# motcua — one-stop-shop e-government services. `make run` and `make test` are the two commands.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
UV ?= uv
PY := .venv/bin/python
GOBIN ?= $(shell go env GOPATH 2>/dev/null || echo $$HOME/go)/bin
BUF ?= $(GOBIN)/buf
HELM ?= $(GOBIN)/helm
export HELM
PROMTOOL ?= $(GOBIN)/promtool
export PROMTOOL
BUF_VERSION ?= v1.75.0
HELM_VERSION ?= v3.22.0
PROMTOOL_VERSION ?= v0.316.0
PYTEST_ARGS ?=
GENERATORS ?=  # e.g. `make generate GENERATORS=events`: only these (tools/generate.py)

.PHONY: help setup tools run test test-unit test-integration lint fmt generate check-generated \
        buf-lint buf-breaking protos-baseline bench infra-up infra-down \
        helm-deps helm-check duplicates clean soak k8s-check

help:
	@grep -E '^[a-z0-9-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: ## Install the Python workspace (.venv) from uv.lock
	@command -v $(UV) >/dev/null || python3 -m pip install -q "uv==0.13.8"
	$(UV) sync --frozen --python 3.11 -q

tools: ## Install buf, helm and promtool with go install (into $(GOBIN))
	@test -x $(BUF) || go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@test -x $(HELM) || go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@test -x $(PROMTOOL) || go install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

run: setup ## Kafka + the services on SQLite + a demo dossier; Ctrl-C stops everything
	bash scripts/run.sh

test: setup tools ## Unit, integration (real Kafka + PostgreSQL) and chart tests
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-unit: setup ## Every service's use cases and the domains, on SQLite in-process: no broker, no database server
	$(PY) -m pytest tests/unit -m "not integration" $(PYTEST_ARGS)

test-integration: setup tools ## Only the integration tests (real Kafka + PostgreSQL, started by the harness)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

lint: setup ## ruff + mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy packages/kit services tests/harness.py
	$(PY) -m mypy bench scripts
	$(PY) -m mypy packages/subscriber packages/ops packages/documents tools examples/stats-projector/stats_projector

fmt: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

generate: setup ## Rewrite every generated file (protos' code, event catalogue, state pages, form pictures): tools/generate.py
	$(PY) -m tools.generate $(GENERATORS)

check-generated: setup ## Fail, naming each, when any generated file is stale (CI runs this once)
	$(PY) -m tools.generate --check $(GENERATORS)

buf-lint: tools
	cd protos && $(BUF) lint

buf-breaking: tools ## Compatibility against the released baseline and the previous commit
	cd protos && $(BUF) breaking --against buf.baseline.binpb
	@if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:protos/buf.yaml 2>/dev/null; then \
	  cd protos && $(BUF) breaking --against '../.git#ref=HEAD~1,subdir=protos'; \
	else echo "buf breaking: no previous commit with protos; baseline checked only"; fi

protos-baseline: tools ## Record the current protos as the released baseline (on release only)
	cd protos && $(BUF) build -o buf.baseline.binpb

helm-deps: tools
	bash helm/build-deps.sh

helm-check: setup tools ## helm lint/template, kubernetes-validate, yamllint, chart tests
	bash helm/check.sh

k8s-check: tools ## The chart against a real API server on loopback: etcd, kube-apiserver, kwok (infra/k8s)
	bash infra/k8s/check.sh

bench: setup ## Benchmarks as ratios against the bare stack and the peer: docs/benchmarks.{md,json}, docs/soak.png
	$(PY) -m bench.run --write docs/benchmarks.md --json docs/benchmarks.json --soak-plot docs/soak.png

soak: setup ## Only the soak: SOAK_MINUTES (10) at SOAK_RATE dossiers/s (10), plot in docs/soak.png
	$(PY) -m bench.soak --minutes $(or $(SOAK_MINUTES),10) --rate $(or $(SOAK_RATE),10) --plot docs/soak.png

infra-up: ## Start the local Kafka broker and PostgreSQL
	bash infra/kafka.sh start
	bash infra/postgres.sh start

infra-down: ## Stop them
	-bash infra/kafka.sh stop
	-bash infra/postgres.sh stop

duplicates: ## Repeated blocks in the tree (the `duplicates` tool; --change --base REV for a change)
	duplicates --repo .

clean:
	rm -rf .state .pytest_cache .mypy_cache .ruff_cache
