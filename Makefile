# SAE — the two commands that matter: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions (make lock writes it): the same install on every machine and in CI.
LOCK := constraints.txt

.PHONY: serve test lint fmt bench install lock dist clean

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) --build-constraint $(LOCK) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# After a change of dependency in pyproject.toml (or a deliberate upgrade in the venv): pin what
# the venv now runs.
lock: $(STAMP)
	$(BIN)/python tools/lock.py

# The release: dist/sae-<version>.tar.gz and dist/sae-<version>-py3-none-any.whl, built in an
# isolated environment whose setuptools is the locked one.
dist: $(STAMP)
	rm -rf dist
	PIP_CONSTRAINT=$(CURDIR)/$(LOCK) $(BIN)/python -m build --outdir dist .

serve: $(STAMP)
	$(BIN)/sae serve

test: $(STAMP)
	SAE_SEDA_XSD_DIR=$${SAE_SEDA_XSD_DIR:-$(CURDIR)/../shared/seda-xsd} $(BIN)/pytest -q -n $${SAE_TEST_PROCESSES:-2}

lint: $(STAMP)
	$(BIN)/ruff check sae seda tests bench tools
	$(BIN)/ruff format --check sae seda tools
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format sae seda tests bench tools
	$(BIN)/ruff check --fix sae seda tests bench tools

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
