# trashlib: `make report` and `make test` are all a newcomer needs; each builds what it lacks first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.trashlib-installed
PROFILE ?= cpu
SYNTH := data/raw/trash-synth
SYNTH_SOURCES := $(wildcard trashlib/synth/*.py)
NBVAL_DIR := data/interim/nbval
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1
# pip installs without compiling every module to bytecode (torch alone has thousands that are never imported);
# Python compiles what is imported on first use and keeps it in .venv, which a machine-wide
# PYTHONDONTWRITEBYTECODE would forbid, making every later process compile its imports again
unexport PYTHONDONTWRITEBYTECODE

.DEFAULT_GOAL := help
.PHONY: help venv data report test test-fast test-notebooks bench lab clean-reports

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-15s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/requirements.txt: environment.yml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# the pip section of environment.yml, less the package itself: one list of dependencies
	awk '/^ *- pip:/ {on=1; next} on && /^ *- / {sub(/^ *- /, ""); sub(/ *#.*/, ""); if ($$0 !~ /^-e/) print}' $< > $@

$(STAMP): $(VENV)/requirements.txt pyproject.toml
	$(PY) -m pip install --disable-pip-version-check --no-compile -q -r $(VENV)/requirements.txt
	$(PY) -m pip install --disable-pip-version-check --no-compile -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name trashlib --display-name "Python (trashlib)" >/dev/null
	touch $@

venv: $(STAMP) ## build or refresh the virtual environment in .venv (automatic)

$(SYNTH)/.generated: $(SYNTH_SOURCES) | $(STAMP)
	$(PY) -m trashlib data synth --out $(SYNTH) --overwrite $(if $(SYNTH_WORKERS),--workers $(SYNTH_WORKERS))
	touch $@

data: $(SYNTH)/.generated ## generate the embedded trash-scene dataset (data/raw/trash-synth)

report: venv data ## run every notebook with PROFILE (smoke, cpu: default, gpu) into reports/
	$(PY) -m trashlib report --profile $(PROFILE) $(if $(DATA),--data $(DATA))

test: venv ## unit tests, then the notebooks in their smoke configuration (nbval)
	@# the embedded dataset first (two workers); then the unit tests, which never read it, run on one core
	@# beside the notebooks on the other, each torch on one thread: measured on 2 cores, the pair took about the
	@# time of the notebooks alone, where one after the other took both (docs/experiments.md). The unit tests'
	@# report is printed when both are done, so the two do not interleave on the terminal
	$(MAKE) --no-print-directory data
	@mkdir -p $(NBVAL_DIR)
	@echo "unit tests running beside the notebooks; their report: $(NBVAL_DIR)/unit-tests.log"
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider tests > $(NBVAL_DIR)/unit-tests.log 2>&1 & unit=$$!; \
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory test-notebooks; notebooks=$$?; \
	wait $$unit; unit=$$?; echo "== unit tests"; cat $(NBVAL_DIR)/unit-tests.log; \
	test $$unit -eq 0 && test $$notebooks -eq 0

test-fast: venv ## the unit tests a developer runs in a minute: no notebooks, no `integration` tests, stop at the first failure
	$(PY) -m pytest -q tests -x -p no:nbval -m "not slow and not gpu and not integration"

test-notebooks: venv data ## run the notebooks with their default (smoke) parameters under nbval
	@# smoke runs and their reports stay out of the real reports/ and runs/
	TRASHLIB_PROGRESS=0 TRASHLIB_REPORTS=$(CURDIR)/$(NBVAL_DIR)/reports TRASHLIB_RUNS=$(CURDIR)/$(NBVAL_DIR)/runs $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=900 notebooks/

bench: venv data ## run the benchmarks in bench/ (each prints its ratio against a baseline)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lab: venv data ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks/

clean-reports: ## delete the generated reports/
	find reports -mindepth 1 ! -name README.md -delete
