"""progattr_core.locks: a second holder is refused at once with the holder's pid; a holder killed with
SIGKILL does not leave a lock that blocks the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from progattr_core.locks import LockBusy, hold

HOLDER = """import sys, time
from progattr_core.locks import hold
with hold(sys.argv[1], "the test holder"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    lock = tmp_path / "state/nightly.lock"
    with hold(lock, "the nightly run of 'jeans'") as holder:
        assert holder["pid"] == os.getpid()
        with pytest.raises(LockBusy, match=rf"the nightly run of 'jeans' is already running \(pid {os.getpid()} on "
                                           rf".*, started 20.*; lock {lock}\)"):
            with hold(lock, "the nightly run of 'jeans'"):
                pass
    with hold(lock, "again"):  # released at the end of the block
        pass
    assert LockBusy.exit_code == 75


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    lock = tmp_path / "nightly.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=f"pid {proc.pid} "):
            with hold(lock, "x"):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert str(proc.pid) in lock.read_text()  # its details are still in the file, but the kernel let the lock go
    start = time.monotonic()
    with hold(lock, "x") as holder:
        assert holder["pid"] == os.getpid() and time.monotonic() - start < 1
