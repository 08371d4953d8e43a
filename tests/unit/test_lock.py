"""requirements.lock (`make lock`) against pyproject.toml and this venv: every dependency and extra is
pinned with hashes at a version pyproject admits, and the venv `make setup` built holds exactly those
versions. A pyproject change without `make lock` fails here."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.paths import ROOT

PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)")


def _pins() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    name = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if m := PIN.match(line):
            name = canonicalize_name(m.group(1))
            assert name not in pins, f"requirements.lock pins {name} twice"
            pins[name] = (m.group(2), 0)
        elif name and "--hash=sha256:" in line:
            pins[name] = (pins[name][0], pins[name][1] + 1)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = project["build-system"]["requires"]
    deps = project["project"]["dependencies"]
    extras = [d for group in project["project"]["optional-dependencies"].values() for d in group]
    return [Requirement(r) for r in (*build, *deps, *extras)]


def test_the_lock_pins_every_declared_dependency_at_an_admitted_version_with_hashes():
    pins = _pins()
    assert len(pins) > 200  # the whole transitive set, not only the direct dependencies
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"pyproject.toml needs {req} but requirements.lock lacks it: run `make lock`"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name][0]}, outside pyproject.toml's {req}: run `make lock`")
    assert not [n for n, (_, hashes) in pins.items() if hashes == 0], "pins without a hash"


def test_the_venv_holds_exactly_the_locked_versions():
    wrong = {}
    for name, (pinned, _) in _pins().items():
        try:
            got = version(name)
        except PackageNotFoundError:
            got = None
        if got != pinned:
            wrong[name] = (pinned, got)
    assert not wrong, f"venv differs from requirements.lock (locked, installed): {wrong}; rerun `make setup`"
