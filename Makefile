# Glasshouse: `make demo` runs the product with a demo organisation; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export GLASSHOUSE_VAR_DIR ?= $(CURDIR)/var
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test serve venv venv-dev lint typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime $@

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

## demo: install, migrate the embedded SQLite database, seed the demo organisation, replay 30 days of
## agent activity through the agent API, roll it up, serve on 127.0.0.1:8000
demo: venv
	mkdir -p $(GLASSHOUSE_VAR_DIR)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py seed_demo_activity
	$(BIN)/python manage.py worker --once
	@$(BIN)/python manage.py seed_demo --logins
	@echo "Glasshouse is starting on http://$(HOST):$(PORT)/ (Ctrl-C to stop)"
	$(BIN)/python manage.py runserver $(HOST):$(PORT) --noreload

## test: lint, types, migrations, deploy checks, unit tests on SQLite and PostgreSQL, browser tests
test: venv-dev
	bash scripts/test.sh

lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv-dev
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) var staticfiles .mypy_cache .ruff_cache .pytest_cache
