# genda-pse: `make demo` sets up and runs the offline demo end to end; `make test` runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= all
SNAKEMAKE_ARGS ?=
APT_PACKAGES := flite

.PHONY: demo test setup system-deps clean dryrun

# Bytecode: pip compiles nothing (--no-compile); the first process that imports a module writes its
# bytecode, so only what the jobs and tests import is compiled, once. Where the machine sets
# PYTHONDONTWRITEBYTECODE, every process would compile all it imports again: it is cleared here.
unexport PYTHONDONTWRITEBYTECODE

# ends with the run's wall time and, where jobs have run, their times per rule from benchmarks/
# (a rule that ran no job this time shows its latest run's)
demo: setup
	source $(VENV)/bin/activate && start=$$(date +%s) && snakemake --cores $(CORES) $(SNAKEMAKE_ARGS) \
	  && echo "snakemake wall time: $$(( $$(date +%s) - start )) s" \
	  && { test ! -d benchmarks || python bench/workflow/stage_times.py benchmarks; }

# the test files run side by side, one process per core (at most 4: each end-to-end run takes a few GB)
test: setup
	source $(VENV)/bin/activate && python -m pytest -q -n auto --maxprocesses 4 --dist loadfile tests

dryrun: setup
	source $(VENV)/bin/activate && snakemake -n --quiet rules

setup: system-deps $(VENV)/.installed

# flite renders the demo's voices; installed with apt-get where it is missing (needs root or sudo).
system-deps:
	@missing=""; for tool in flite; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(APT_PACKAGES); \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q --no-compile -e ".[test]"
	# their own pins clash with the project's; their code runs on it (pyproject.toml, modern-tts)
	$(PY) -m pip install -q --no-compile --no-deps f5-tts==1.1.22 chatterbox-tts==0.1.7
	touch $@

clean:
	rm -rf results data logs benchmarks .snakemake
