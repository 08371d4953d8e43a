# The README's two commands: `make demo` and `make test`. Each does its own setup.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Prefect's settings: [tool.prefect] in pyproject.toml (read from this folder).

.PHONY: setup lock demo test test-all lint clean

setup: $(STAMP)

# The whole dependency set is pinned with hashes in requirements.lock (`make lock` refreshes it from
# pyproject.toml). Installing a complete, hashed lock with --no-deps resolves nothing; the project
# itself goes in last, editable, built by the locked setuptools. pip is upgraded to a pinned release
# first: the venv's stock pip (23.2) installs the same lock ~35% slower.
PIP := pip==26.3
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo ">> installing progattr and its locked dependencies into $(VENV) (a few minutes the first time; log: $(VENV)/install.log)"
	@{ $(PY) -m pip install --upgrade $(PIP) && $(PY) -m pip install --require-hashes --no-deps -r requirements.lock \
		&& $(PY) -m pip install --no-deps --no-build-isolation -e . && $(PY) -m pip check; } > $(VENV)/install.log 2>&1 \
		|| { grep -v "is ignored: it is neither" $(VENV)/install.log | tail -40; echo "!! install failed (full log: $(VENV)/install.log)"; exit 1; }
	@$(PY) -c "import progattr, progattr_core, torch, torchvision, prefect, mlflow, great_expectations" \
		|| { echo "!! install incomplete (log: $(VENV)/install.log)"; exit 1; }
	@touch $(STAMP)

# Re-resolves pyproject.toml's dependencies (all extras) into requirements.lock, in a throwaway venv
# with a pinned pip-tools; needs the package index. Commit the result with the pyproject.toml change.
PIP_TOOLS := pip-tools==7.6.2
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT \
		&& $(PYTHON) -m venv "$$tmp/venv" && "$$tmp/venv/bin/python" -m pip install -q --upgrade $(PIP) $(PIP_TOOLS) \
		&& echo ">> resolving pyproject.toml into requirements.lock (a few minutes)" \
		&& CUSTOM_COMPILE_COMMAND="make lock" "$$tmp/venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe \
			--strip-extras --build-deps-for editable --no-emit-index-url --no-emit-find-links \
			--all-extras -o requirements.lock pyproject.toml

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
