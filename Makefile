# The few commands a newcomer needs. `make run` serves the embedded catalog; `make test` is what CI runs.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SCAN_VENV := .venv-scan
BUF := node_modules/.bin/buf
PORT ?= 8080
# The policy pack runs in a virtualenv of its own (pulumi-policy pins another protobuf): policy/PulumiPolicy.yaml.
POLICY_VENV := policy/.venv

.PHONY: help
# The column is as wide as the longest target, so a new target never breaks the alignment.
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' \
		'{ name[NR] = $$1; text[NR] = $$2; if (length($$1) > width) width = length($$1) } \
		END { for (i = 1; i <= NR; i++) printf "  make %-" width "s  %s\n", name[i], text[i] }'

$(VENV)/.installed: requirements-server.txt requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The scanners have a virtualenv of their own: checkov's dependencies would fight pulumi's pins.
$(SCAN_VENV)/.installed: requirements-scan.txt
	test -x $(SCAN_VENV)/bin/python || $(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/python -m pip install --quiet -r requirements-scan.txt
	touch $@

$(BUF): package.json package-lock.json
	# `npm install`, not `npm ci`: npm ci rejects this lock, which lacks other platforms' optional buf binaries.
	npm install --no-audit --no-fund --loglevel=error
	touch $@

$(POLICY_VENV)/.installed: policy/requirements.txt policy/requirements-test.txt pyproject.toml
	test -x $(POLICY_VENV)/bin/python || $(PYTHON) -m venv $(POLICY_VENV)
	$(POLICY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(POLICY_VENV)/bin/python -m pip install --quiet -r policy/requirements-test.txt
	# The rules the pack shares with the program (contract/), pure Python: this repository, without its deps.
	$(POLICY_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

.PHONY: policy-setup
policy-setup: $(POLICY_VENV)/.installed ## Create the policy pack's virtualenv (policy/.venv), which Pulumi runs it in.

.PHONY: policy-test
policy-test: $(VENV)/.installed $(POLICY_VENV)/.installed ## The policy pack on the program's resources (docs/policy.md).
	cd policy && MAIN_PYTHON=../$(PY) .venv/bin/python -m pytest tests

.PHONY: setup
setup: $(VENV)/.installed $(BUF) ## Create the virtualenv and install the tools (done by every target that needs it).

.PHONY: run
run: $(VENV)/.installed ## Serve the embedded catalog on :8080 (PORT=...) with reflection on.
	PORT=$(PORT) ENABLE_REFLECTION=true $(PY) -m service

FILE ?=
.PHONY: check-catalog
check-catalog: $(VENV)/.installed ## Check a catalog file as the server loads it: make check-catalog FILE=...
	@test -n "$(FILE)" || { echo "usage: make check-catalog FILE=path/to/catalog.json" >&2; exit 2; }
	@$(PY) -m service.catalog check "$(FILE)"

STACK ?=
.PHONY: preflight
preflight: $(VENV)/.installed ## Before `pulumi up`: what the project and its organization would refuse (STACK=dev).
	@test -n "$(STACK)" || { echo "usage: make preflight STACK=dev" >&2; exit 2; }
	@$(PY) -m preflight --stack "$(STACK)"

.PHONY: proto
proto: $(VENV)/.installed ## Regenerate catalog/ (messages, stubs, .pyi) from proto/.
	$(PY) -m tools.genproto

.PHONY: lint
lint: setup policy-setup $(SCAN_VENV)/.installed ## ruff, mypy, buf, hadolint, actionlint, zizmor, checkov.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd policy && .venv/bin/mypy
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/actionlint
	$(SCAN_VENV)/bin/zizmor --offline --quiet .
	$(SCAN_VENV)/bin/python .ci/checkov_scan.py

.PHONY: test
test: lint policy-test ## Lint, then the whole test suite (the policy pack's in its own venv).
	$(PY) -m pytest

.PHONY: test-fast
test-fast: $(VENV)/.installed ## The inner loop: the tests without the image build and 100k-product catalogs.
	$(PY) -m pytest -m "not slow" -q

MODULE ?=
.PHONY: mutation
mutation: $(VENV)/.installed $(POLICY_VENV)/.installed ## Mutation score per module; fails below tools/mutation.toml's target (MODULE=area or file).
	$(PY) -m tools.mutation --module "$(MODULE)"

.PHONY: bench
bench: $(VENV)/.installed ## Benchmark a 100k-product catalog against the seed's server (needs h2load).
	$(PY) -m bench --compare

.PHONY: bench-memory
bench-memory: $(VENV)/.installed ## Memory and time to SERVING at 10k, 100k and 1M products (docs/catalog.md).
	$(PY) -m bench.memory

.PHONY: fmt
fmt: setup ## Format Python and proto in place.
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	$(BUF) format --write

.PHONY: clean
clean: ## Remove the virtualenv, node_modules and caches.
	rm -rf $(VENV) $(SCAN_VENV) $(POLICY_VENV) mutants node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
