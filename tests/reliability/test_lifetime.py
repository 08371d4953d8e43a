"""Nothing outlives its run: `progattr pipeline run` on Prefect's temporary server (no PREFECT_API_URL,
what a new user gets), killed with SIGKILL mid-stage, leaves no process behind: its watchdog stops
the server it had started. Every process of the run is found by a marker in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from progattr.cli.watchdog import descendants
from tests.reliability.test_training_faults import _project

from .conftest import REPO

pytestmark = pytest.mark.flows


def _marked(marker: bytes) -> dict[int, str]:
    """Live processes whose environment holds `marker`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def test_a_run_killed_with_sigkill_leaves_no_process_behind(tmp_path):
    params_path, overrides = _project(tmp_path / "project")
    marker = f"progattr-lifetime-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # the temporary server
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PROGATTR_TEST_MARKER=marker)
    cmd = [sys.executable, "-m", "tests.reliability.inject", "kill-mid:1", "--", "--article", "jeans", "--source",
           "data/raw/mini", "--params", str(params_path), *[a for o in overrides for a in ("--set", o)]]
    seen: dict[int, str] = {}
    with open(tmp_path / "run.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                seen.update({p: c for p, c in _marked(marker.encode()).items() if p != proc.pid})
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -9, (tmp_path / "run.log").read_text()[-3000:]
    servers = [c for c in seen.values() if "uvicorn" in c or "prefect" in c]
    assert servers, f"no Prefect server seen among the run's processes: {seen}"
    deadline = time.time() + 30
    while time.time() < deadline and _marked(marker.encode()):
        time.sleep(0.5)
    assert _marked(marker.encode()) == {}, "left behind by the killed run"


def test_descendants_finds_children_and_grandchildren():
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
                              "print(p.pid, flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        assert {child.pid, grandchild} <= set(descendants(os.getpid()))
    finally:
        os.kill(grandchild, 9)
        child.kill()
        child.wait()
