# BenchHub: the README's two commands are `make run` and `make test`.
# Both are idempotent: they install only what is missing and build images only when absent
# (images are cached by the content of their Dockerfile directory).

VENV      ?= .venv
PY        := $(VENV)/bin/python
NODE_DIR  := .cache/node
CHP       := $(NODE_DIR)/node_modules/.bin/configurable-http-proxy
export PYTHON := $(abspath $(PY))
export BENCHHUB_CLUSTER_IMAGE ?= benchhub/cluster:latest
export PATH := $(abspath $(VENV))/bin:$(abspath $(NODE_DIR))/node_modules/.bin:$(PATH)

PY_SOURCES := benchhub bench_spawner hub_services tests benchmarks jupyterhub_config.py

.PHONY: run test bench host images images-all deps lint unit integration browser clean

# the hub's state directory, as jupyterhub_config.py chooses it (BENCHHUB_STATE_DIR or .cache/hub)
HUB_STATE_DIR := $(or $(BENCHHUB_STATE_DIR),$(CURDIR)/.cache/hub)

run: host deps images-all
	@echo "==> starting JupyterHub on http://127.0.0.1:8000"
	@echo "    log in with any user name and the password in BENCHHUB_PASSWORD (default: benchhub-user)"
	@$(PY) -m benchhub.admin_password "$(HUB_STATE_DIR)"
	$(PY) -m jupyterhub -f jupyterhub_config.py

test: host-test deps lint images-all
	$(PY) -m pytest -p no:cacheprovider -q tests/unit
	$(PY) -m pytest -p no:cacheprovider -q -x --durations=40 tests/integration tests/security tests/browser
	@bash images/build.sh swarm-node
	$(PY) -m pytest -p no:cacheprovider -q -x --durations=10 tests/swarm

# The swarm tests (docs/swarm.md): a test swarm of three Docker-in-Docker engines on this
# machine, made by the run and removed after it (BENCHHUB_SWARM_KEEP=1 keeps it). `make test`
# runs them last; this target runs only them and the swarm unit tests.
.PHONY: test-swarm
test-swarm: host-test deps images
	@bash images/build.sh swarm-node
	$(PY) -m pytest -p no:cacheprovider -q tests/unit/test_swarm_*.py tests/swarm

bench: host deps images-all
	$(PY) -m benchmarks.spawn_latency
	$(PY) -m benchmarks.spawn_overhead
	$(PY) -m benchmarks.egress
	$(PY) -m benchmarks.lifecycle_pass
	$(PY) -m benchmarks.checkpoints
	$(PY) -m benchmarks.clusters
	$(PY) -m benchmarks.cluster_arrivals
	$(PY) -m benchmarks.spark
	$(PY) -m benchmarks.templates
	$(PY) -m benchmarks.packages
	$(PY) -m benchmarks.ledger
	$(PY) -m benchmarks.project_data
	@bash images/build.sh swarm-node  # the test swarm's nodes (brought up and removed by the run)
	$(PY) -m benchmarks.swarm_spawn
	$(PY) -m benchmarks.swarm_move

host:
	@bash scripts/host-setup.sh

# BenchHub as a systemd unit (deploy/systemd/): a host reboot brings it up by itself, and the
# workspaces that were running come back (docs/operations.md, "The host reboots"). The site's
# BENCHHUB_* settings go into $(BENCHHUB_ENV_FILE), made from the example when absent.
SYSTEMD_DIR       ?= /etc/systemd/system
BENCHHUB_ENV_FILE ?= /etc/benchhub/benchhub.env
.PHONY: install
install: host deps images-all
	@mkdir -p $(SYSTEMD_DIR) $(dir $(BENCHHUB_ENV_FILE))
	@test -e $(BENCHHUB_ENV_FILE) || install -m 0600 deploy/systemd/benchhub.env.example $(BENCHHUB_ENV_FILE)
	sed -e 's#@REPO@#$(CURDIR)#g' -e 's#@ENV_FILE@#$(BENCHHUB_ENV_FILE)#g' \
	  deploy/systemd/benchhub.service.in > $(SYSTEMD_DIR)/benchhub.service
	@if [ -d /run/systemd/system ]; then \
	  systemctl daemon-reload && systemctl enable docker.service benchhub.service && \
	  echo "==> benchhub.service enabled: systemctl start benchhub (it also starts at boot)"; \
	else \
	  echo "==> $(SYSTEMD_DIR)/benchhub.service written; systemd is not running here:"; \
	  echo "    start BenchHub at boot another way (docs/operations.md, 'The host reboots')"; \
	fi

host-test:
	@bash scripts/host-setup.sh --test

deps: $(VENV)/.installed $(CHP)

$(VENV)/.installed: setup.cfg pyproject.toml
	@echo "==> installing Python dependencies into $(VENV)"
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

$(CHP):
	@echo "==> installing configurable-http-proxy into $(NODE_DIR)"
	npm install --silent --no-fund --no-audit --prefix $(NODE_DIR) configurable-http-proxy

# images: the base, JupyterLab, egress and cluster images; images-all: those and the image
# templates built FROM JupyterLab (data science, R, VS Code), which the hub's catalogue offers
images:
	@bash images/build.sh all

images-all:
	@bash images/build.sh everything

# the style is ruff's (pyproject.toml): lint rules, and the formatter's layout checked
lint: deps
	$(PY) -m ruff check $(PY_SOURCES)
	$(PY) -m ruff format --check $(PY_SOURCES)

clean:
	rm -rf $(VENV) .cache
