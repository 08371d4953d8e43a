"""The watchdog's view of a command's processes (its end-to-end test: a SIGKILLed `progattr pipeline
run` leaves nothing behind, in tests/flows/test_train_flow.py)."""

from __future__ import annotations

import os
import subprocess
import sys

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
