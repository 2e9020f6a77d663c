# The two commands: `make run` starts everything; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8000

.PHONY: install run test lint fmt bench reliability services stop clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	@scripts/services.sh run
	@$(BIN)/stripe-ingest migrate
	@$(BIN)/python scripts/banner.py
	@PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/honcho start -f Procfile -p $(PORT) web worker sweeper

test: install
	@scripts/services.sh test
	@scripts/promtool.sh
	@scripts/browser.sh
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

reliability: install
	@scripts/services.sh test
	$(BIN)/python -m tests.reliability.report

bench: install
	@scripts/services.sh test
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m bench

stop:
	@scripts/services.sh stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
