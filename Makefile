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

# One virtualenv, filled in layers so each target waits only for what it runs: the server's runtime (about
# 40 MB: `make run`), the client and grpcurl (the README's tour), the Pulumi program (`make deploy`), then the
# whole toolchain (lint, tests). Each layer's file includes the one before it, so pip adds only the difference.
# The first layers run the host's pip against .venv when it can (pip >= 22.3, `--python`): .venv is made
# without a pip of its own, which spares the first `make run` installing one. Pulumi runs .venv's own pip, so
# the program's layer installs it.
define venv_pip
if $(PYTHON) -m pip --python $(PY) --version >/dev/null 2>&1; then $(PYTHON) -m pip --python $(PY) $(1); \
else { $(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --default-pip >/dev/null; } && $(PY) -m pip $(1); fi
endef

$(VENV)/.server: requirements-server.txt
	@echo "==> $(VENV): the server's runtime (requirements-server.txt)"
	test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV)
	@$(call venv_pip,install --progress-bar on -r requirements-server.txt)
	touch $@

$(VENV)/.client: $(VENV)/.server requirements-client.txt
	@echo "==> $(VENV): the client and grpcurl (requirements-client.txt)"
	@$(call venv_pip,install --progress-bar on -r requirements-client.txt)
	touch $@

$(VENV)/.program: $(VENV)/.client requirements.txt pyproject.toml
	@echo "==> $(VENV): the Pulumi program and the release tool (requirements.txt, about 500 MB)"
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --default-pip
	$(PY) -m pip install --progress-bar on -r requirements.txt
	touch $@

$(VENV)/.installed: $(VENV)/.program requirements-dev.txt
	@echo "==> $(VENV): code generation, lint and test tools (requirements-dev.txt)"
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

.PHONY: client
client: $(VENV)/.client ## Install the client and grpcurl into .venv (the README's tour).

.PHONY: run
run: $(VENV)/.server ## Serve the embedded catalog on :8080 (PORT=...) with reflection on.
	PORT=$(PORT) ENABLE_REFLECTION=true $(PY) -m service

STACK ?=
# More options for `python -m release promote`, e.g. RELEASE_ARGS="--pause-seconds 0" for one run.
RELEASE_ARGS ?=
# The command make deploy runs first (with --stack NAME); the deploy tests put a fake here.
PREFLIGHT ?= $(PY) -m preflight
.PHONY: preview
preview: $(VENV)/.program $(POLICY_VENV)/.installed ## pulumi preview STACK=... with the policy pack and its config.
	@test -n "$(STACK)" || { echo "usage: make preview STACK=dev" >&2; exit 2; }
	$(PY) -m tools.deploy preview --stack "$(STACK)"

.PHONY: deploy
deploy: $(VENV)/.program $(POLICY_VENV)/.installed ## Ship to STACK=...: preflight, pulumi up, release, smoke check.
	@test -n "$(STACK)" || { echo "usage: make deploy STACK=dev" >&2; exit 2; }
	$(PY) -m tools.deploy deploy --stack "$(STACK)" --release-args "$(RELEASE_ARGS)" --preflight "$(PREFLIGHT)"

FILE ?=
.PHONY: check-catalog
check-catalog: $(VENV)/.server ## Check a catalog file as the server loads it: make check-catalog FILE=...
	@test -n "$(FILE)" || { echo "usage: make check-catalog FILE=path/to/catalog.json" >&2; exit 2; }
	@$(PY) -m service.catalog check "$(FILE)"

.PHONY: preflight
preflight: $(VENV)/.program ## Before `pulumi up`: what the project and its organization would refuse (STACK=dev).
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
	# Both parts run, whatever the first finds; the target fails (exit 3) if either missed a target.
	# The second: what observability costs per call, today's access line against metrics and sampled lines.
	status=0; $(PY) -m bench --compare || status=$$?; $(PY) -m bench.telemetry --only-new || status=$$?; \
		exit $$status

.PHONY: bench-instructions
bench-instructions: $(VENV)/.installed ## Instructions per GetProduct under callgrind: ours, bare grpc.aio (needs valgrind).
	$(PY) -m bench.instructions

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
