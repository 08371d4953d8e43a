# The README's two commands: `make demo` and `make test`. Each does its own setup.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Prefect's settings: [tool.prefect] in pyproject.toml (read from this folder).

.PHONY: setup demo test test-all lint clean

setup: $(STAMP)

# pip itself is upgraded first: the venv's stock pip (23.2) never resolves this dependency set.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo ">> installing progattr and its pinned dependencies into $(VENV) (a few minutes the first time; log: $(VENV)/install.log)"
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e '.[test]'; } > $(VENV)/install.log 2>&1 \
		|| { grep -v "is ignored: it is neither" $(VENV)/install.log | tail -40; echo "!! install failed (full log: $(VENV)/install.log)"; exit 1; }
	@$(PY) -c "import progattr, progattr_core, torch, torchvision, prefect, mlflow, great_expectations" \
		|| { echo "!! install incomplete (log: $(VENV)/install.log)"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/progattr demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf data/cache .pytest_cache
