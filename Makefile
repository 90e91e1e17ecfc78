# One command to run TESP, one to test it. Both do every set-up step on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,s3,snakemake,cwl
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= ./tesp-data
# Empty: bwrap where installed, else none. `make run RUNTIME=none` for a shared filesystem.
RUNTIME ?=

GALAXY_VENV ?= .venv-galaxy

.PHONY: setup system-deps test-system-deps run test test-galaxy lint typecheck bench compliance docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# bubblewrap gives TES path semantics without a container engine (the default runtime).
system-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	  else echo "note: bubblewrap not installed; tasks will use the 'none' runtime"; fi; }

# What the test suite's fixtures start (Slurm + munge, RabbitMQ, PostgreSQL) and drive
# (Chromium for the dashboard test). Root with apt-get: installed; otherwise listed.
TEST_APT := bubblewrap slurm-wlm munge rabbitmq-server postgresql chromium chromium-driver
test-system-deps:
	@missing=$$(for p in $(TEST_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "the tests need these Debian packages: $$missing"; exit 1; fi; fi

# Installed once, again only when pyproject.toml or the chosen extras change.
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	@# Snakemake finds executor plugins by scanning sys.path for snakemake_executor_plugin_*;
	@# setuptools' editable finder does not show up in that scan, a .pth entry does.
	echo "$(CURDIR)/plugins/snakemake" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tesp-plugin-snakemake.pth"
	touch $@

setup: $(STAMP) system-deps

run: setup
	mkdir -p $(abspath $(DATA_DIR))/files
	$(BIN)/tesp serve --host $(HOST) --port $(PORT) --data-dir $(abspath $(DATA_DIR)) --file-root $(abspath $(DATA_DIR))/files $(if $(RUNTIME),--runtime $(RUNTIME))

lint: setup
	$(BIN)/ruff check tesp_core plugins tests bench
	$(BIN)/ruff format --check tesp_core plugins tests bench

typecheck: setup
	$(BIN)/mypy tesp_core

test: setup test-system-deps lint typecheck
	$(BIN)/pytest -q

# Galaxy pins an older pulsar-galaxy-lib that cannot share TESP's environment: its runner is
# tested from its own virtualenv against a `tesp serve` started from TESP's.
$(GALAXY_VENV)/bin/python:
	$(PYTHON) -m venv $(GALAXY_VENV)
	$(GALAXY_VENV)/bin/pip install --quiet --upgrade pip
	$(GALAXY_VENV)/bin/pip install --quiet -r plugins/galaxy/requirements.txt

test-galaxy: setup $(GALAXY_VENV)/bin/python
	TESP_BIN=$(CURDIR)/$(BIN)/tesp $(GALAXY_VENV)/bin/pytest -q tests/plugins/galaxy

# Every benchmark prints ratios against a baseline measured in the same run.
bench: setup
	$(BIN)/python bench/bench_api.py
	$(BIN)/python bench/bench_e2e.py --embedded
	$(BIN)/python bench/bench_e2e.py
	$(BIN)/python bench/bench_storage.py
	$(BIN)/python bench/bench_worker.py

# The documentation site (docs/, mkdocs.yml); --strict fails on a broken link or a page
# missing from nav.
docs: setup
	$(BIN)/mkdocs build --strict --site-dir site

compliance:
	scripts/compliance.sh http://$(HOST):$(PORT)

clean:
	rm -rf $(VENV) $(GALAXY_VENV) .pytest_cache .mypy_cache .ruff_cache
