"""Every test: an empty $TORCH_HOME, so `profile: auto` (which takes ImageNet weights it finds on disk)
resolves the same on every machine, whatever this one has cached. Tests that need weights there
put them in their own folder (monkeypatch.setenv)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _empty_torch_home(tmp_path_factory):
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch-home"))  # subprocesses inherit it
    yield
    if old is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = old
