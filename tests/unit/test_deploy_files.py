"""The deployment files, checked where no Docker engine runs: docker-compose.yml against the Compose
Specification's JSON Schema (compose/schema/), and the Dockerfile's install steps against `make setup`'s."""

from __future__ import annotations

import json
import re
import shlex

import jsonschema
import yaml

from tests.paths import ROOT


def _compose_errors(document: dict) -> list[str]:
    schema = json.loads((ROOT / "compose" / "schema" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(document)]


def test_docker_compose_follows_the_compose_specification():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert _compose_errors(compose) == []
    assert {"minio", "buckets", "mlflow", "prefect-server", "deploy"} <= set(compose["services"])
    broken = {**compose, "services": {**compose["services"], "mlflow": {**compose["services"]["mlflow"],
                                                                         "restart": ["always"]}}}
    assert any(e.startswith("services/mlflow/restart:") for e in _compose_errors(broken))  # the check can fail


def _pip_installs(text: str, python: str) -> list[list[str]]:
    """Every `<python> -m pip install ...` (and `pip check`) in `text`, as argument lists without -q."""
    out = []
    for match in re.finditer(re.escape(python) + r" -m pip (install|check)([^&;\n\\|}]*)", text):
        args = [a for a in shlex.split(match.group(2)) if a != "-q"]
        out.append([match.group(1), *args])
    return out


def test_the_dockerfile_installs_exactly_what_make_setup_installs():
    makefile = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+) :?= (\S+)$", makefile, re.M))  # PY := $(VENV)/bin/python, PIP := pip==...
    while re.search(r"\$\((PY|VENV|PIP)\)", makefile):
        makefile = re.sub(r"\$\((PY|VENV|PIP)\)", lambda m: variables[m.group(1)], makefile)
    make = _pip_installs(makefile, ".venv/bin/python")
    docker = _pip_installs((ROOT / "Dockerfile").read_text(), ".venv/bin/python")
    assert make == docker, f"make setup: {make}\nDockerfile: {docker}"
    assert make == [["install", "--upgrade", "pip==26.3"], ["install", "--require-hashes", "--no-deps", "-r",
                                                            "requirements.lock"],
                    ["install", "--no-deps", "--no-build-isolation", "-e", "."], ["check"]]
