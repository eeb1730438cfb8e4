# Two commands: `make run` (server + built-in fake Hoiio, SQLite) and `make test` (install + all tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
SYSTEM_PACKAGES := graphviz chromium

.PHONY: run test install system lint bench bench-quick clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Graphviz draws flows (ivr graph); Debian's Chromium runs the dashboard's browser tests
# (Playwright drives it: no browser download).
$(SYSTEM_STAMP): | $(STAMP)
	@if command -v dot >/dev/null 2>&1 && [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing system packages: $(SYSTEM_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	else echo "please install: sudo apt-get install $(SYSTEM_PACKAGES)"; exit 1; fi
	touch $(SYSTEM_STAMP)

install: $(STAMP)

system: $(SYSTEM_STAMP)

run: $(STAMP)
	$(BIN)/ivr demo

test: $(STAMP) $(SYSTEM_STAMP)
	$(BIN)/ruff check engine tests bench
	$(BIN)/ivr check flows/
	$(BIN)/check-jsonschema --schemafile engine/flowfile/flow.schema.json flows/*.yaml
	$(BIN)/ivr replay tests/replays/ --coverage > /dev/null
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check engine tests bench

bench: $(STAMP)
	$(BIN)/python bench/check_flows.py
	$(BIN)/python bench/replay_throughput.py
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache ivr.sqlite3
