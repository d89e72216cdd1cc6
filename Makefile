# Two commands on a fresh machine, each sets itself up on first use:
#   make demo   - the whole study DAG on the embedded procedural dataset (CPU, minutes)
#   make test   - the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: demo test lint dryrun report clean-demo

$(STAMP): pyproject.toml envs/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r envs/requirements.txt
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	@echo "Tables: results/demo/tables/  Figures: results/demo/figures/"

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check workflow tests
	$(BIN)/ruff format --check workflow tests
	$(BIN)/snakemake --lint --configfile config/demo.yaml

dryrun: $(STAMP)
	$(BIN)/snakemake -n --quiet --configfile config/config.yaml

report: $(STAMP)
	$(BIN)/snakemake --cores 1 --configfile config/demo.yaml --report results/demo/report.html

clean-demo:
	rm -rf results/demo
