# gpulens: `make demo` runs the whole system on this machine; `make test` runs every test.
# Targets install what they need into .venv on a fresh machine (torch's CPU build first).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: install
	$(BIN)/gpulens demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests/test_layout.py
	$(BIN)/python helm/sync_files.py --check

typecheck: install
	$(BIN)/mypy gpulens collector trainer attribution dashboards remediation

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache tests/artifacts
