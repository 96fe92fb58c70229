# collapse-lab: the two commands of the README, plus a benchmark.
# Each target installs what it needs into the current Python environment first.
PYTHON ?= python
PIP ?= $(PYTHON) -m pip

.PHONY: install test figures figures-quick bench lint

# CONSTRAINTS pins every dependency to the versions CI passes with; `make install CONSTRAINTS=` resolves freely
CONSTRAINTS ?= .ci/constraints.txt

install:
	$(PIP) install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[dev,llm,ray]"

test: install
	$(PYTHON) -m pytest tests

figures: install
	$(PYTHON) -m studies

figures-quick: install
	$(PYTHON) -m studies --quick --check

bench: install
	$(PYTHON) -m collapse_lab.bench

lint: install
	$(PYTHON) -m ruff check collapse_lab llm studies tests
