"""Every test: an empty $TORCH_HOME, so `profile: auto` (which takes ImageNet weights it finds on disk)
resolves the same on every machine, whatever this one has cached. Tests that need weights there
put them in their own folder (monkeypatch.setenv).

The session fixtures several directories use are here, so no test imports a fixture: Prefect's test
harness and an S3-compatible server (moto) on loopback. Shared plain helpers: tests/support.py."""

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


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (~10 s to start here)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3-compatible server on loopback; dummy credentials for boto3, dvc and mlflow."""
    from moto.server import ThreadedMotoServer

    from tests.support import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def pytest_addoption(parser):
    parser.addoption("--shuffle", type=int, default=None, metavar="SEED",
                     help="run the test modules, and the tests in each, in an order shuffled by SEED (every test must build the state "
                          "it needs: `make test PYTEST_ARGS='--shuffle 7'`)")


def pytest_collection_modifyitems(config, items):
    seed = config.getoption("--shuffle")
    if seed is None:
        return
    import random

    rng, modules = random.Random(seed), {}
    for item in items:   # modules in a shuffled order, each module's tests shuffled: module fixtures still set up once
        modules.setdefault(item.module.__name__ if item.module else "", []).append(item)
    groups = list(modules.values())
    rng.shuffle(groups)
    for group in groups:
        rng.shuffle(group)
    items[:] = [item for group in groups for item in group]


def pytest_report_header(config):
    seed = config.getoption("--shuffle")
    return None if seed is None else f"test order shuffled with seed {seed}"
