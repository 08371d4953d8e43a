"""The watchdog's view of a command's processes (its end-to-end test: a SIGKILLed `progattr pipeline
run` leaves nothing behind, in tests/flows/test_train_flow.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from progattr.cli.watchdog import descendants


def test_descendants_finds_children_and_grandchildren():
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
                              "print(p.pid, flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    try:
        assert {child.pid, grandchild} <= set(descendants(os.getpid()))
    finally:
        os.kill(grandchild, 9)
        child.kill()
        child.wait()
    assert child.pid not in descendants(os.getpid())


def test_a_command_gets_its_own_temporary_folder_removed_with_it(tmp_path):
    """`progattr` sets TMPDIR to <tmp>/progattr-run-<pid>-*; once the command is gone, it is removed."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    code = ("import os, tempfile; from progattr.cli import watchdog; watchdog.start(); "
            "print(tempfile.gettempdir(), os.environ['TMPDIR'], flush=True); "
            "open(os.path.join(tempfile.mkdtemp(), 'checkpoint.pt'), 'w').write('x')")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    own, inherited = out.stdout.split()
    assert own == inherited and Path(own).parent == tmp_path and Path(own).name.startswith("progattr-run-")
    deadline = time.time() + 20
    while time.time() < deadline and Path(own).exists():
        time.sleep(0.2)
    assert not Path(own).exists() and list(tmp_path.iterdir()) == []
