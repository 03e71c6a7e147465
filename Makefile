# gpulens: `make demo` runs the whole system on this machine; `make test` runs the gates and every
# test, `make test-fast` the gates and the tests that start no servers.
# Targets install what they need into .venv on a fresh machine (torch's CPU build first).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TYPED  := gpulens collector trainer attribution dashboards remediation

.PHONY: install demo test test-fast gates bench lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: install
	$(BIN)/gpulens demo

# The gates CI holds (through .ci/run -> make test): lint incl. line length and dead noqa's, the
# formatter, the type checker; then every test.
gates: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED)

test: gates
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The quick subset: no end-to-end suites (real servers, a browser) and no slow ones.
test-fast: gates
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not e2e and not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests/test_layout.py
	$(BIN)/python helm/sync_files.py --check

typecheck: install
	$(BIN)/mypy $(TYPED)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache tests/artifacts
