# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
CHROMIUM ?= chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET ?= $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: demo test test-faults lint bench clean chromium faketime

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/roadie demo

test: $(STAMP) chromium faketime
	$(BIN)/ruff check .
	$(BIN)/pytest

# The long forms of the fault suite (tests/faults): minutes, not seconds; figures in bench/faults.md.
test-faults: $(STAMP) faketime
	ROADIE_FAULTS=long $(BIN)/pytest tests/faults

# Installs Debian's chromium when missing; without apt-get the browser tests skip (fail in CI).
chromium:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    $(APT_GET) update -qq && $(APT_GET) install -y -qq chromium; \
	  else \
	    echo "no chromium and no apt-get: the browser tests will be skipped" >&2; \
	  fi; }

# libfaketime, for the clock-skew fault test (F8); without it that test skips (fails in CI).
faketime:
	@test -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 -o -e /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's libfaketime for the clock-skew fault test"; \
	    $(APT_GET) update -qq && $(APT_GET) install -y -qq libfaketime; \
	  else \
	    echo "no libfaketime and no apt-get: the clock-skew fault test will be skipped" >&2; \
	  fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/all.py

# roadie against pgqueuer, procrastinate and Celery (their venvs in bench/.peers/, made on first use)
.PHONY: bench-peers
bench-peers: $(STAMP)
	$(BIN)/python bench/peers/run.py

# FAULTS.md's load benchmarks L1 (scaling), L2 (latency under load), L4 (1,000,000-job backlog)
.PHONY: bench-load
bench-load: $(STAMP)
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) roadie-demo.db* roadie-demo .pytest_cache tests/artifacts
