# SAE — the two commands that matter: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint fmt bench install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/sae serve

test: $(STAMP)
	SAE_SEDA_XSD_DIR=$${SAE_SEDA_XSD_DIR:-$(CURDIR)/../shared/seda-xsd} $(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check sae seda tests bench
	$(BIN)/ruff format --check sae seda
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format sae seda tests bench
	$(BIN)/ruff check --fix sae seda tests bench

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
