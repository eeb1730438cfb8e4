# Two commands: `make run` (server + built-in fake Hoiio, SQLite) and `make test` (install + all tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/ivr demo

test: $(STAMP)
	$(BIN)/ruff check engine tests bench
	$(BIN)/ivr check flows/
	$(BIN)/check-jsonschema --schemafile engine/flowfile/flow.schema.json flows/*.yaml
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check engine tests bench

bench: $(STAMP)
	$(BIN)/python bench/check_flows.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache ivr.sqlite3
