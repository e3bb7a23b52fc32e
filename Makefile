# Setup, demo, tests and the desk jobs. `make demo` and `make test` are the README's quick start.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data

.PHONY: setup setup-edge demo test lint model bench clean

$(VENV)/.installed: requirements-edge.txt requirements-train.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed  ## desk + tests: everything

demo: setup  ## classify the bundled sample clips with the shipped model
	$(PY) -m edge classify samples/

test: setup  ## lint, then the whole test suite
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

model: setup  ## train and convert the shipped model from $(DATA) (25 minutes on 2 cores from an empty cache; see training/README.md)
	$(PY) -m training train --data $(DATA) --out runs/model && $(PY) -m convert runs/model --data $(DATA) --reports training/reports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
