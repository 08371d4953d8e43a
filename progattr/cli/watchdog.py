"""Nothing a `progattr` command starts outlives it, SIGKILL included.

A command may start servers and workers: Prefect's temporary API server (started by Prefect when no
PREFECT_API_URL is set), serving's worker processes, DVC, a Prefect worker's flow-run processes.
They stop when the command ends normally; but a command killed with SIGKILL (the OOM killer, `kill
-9`, a power cut of its container) cannot stop them, and they would run on (Prefect's server at a
quarter of a core, one more per crash).

The same goes for temporary files: a stage killed mid-checkpoint leaves its temporary folder
(~100 MB at the demo's size) where Python's `tempfile` cleanup never runs. So each command gets a
temporary folder of its own, `<tmp>/progattr-run-<pid>-*`, as TMPDIR for itself and everything it
starts; it is removed with the command.

So `progattr` starts this watchdog once per process: a small separate process in its own session
(a Ctrl-C or `kill -- -PGID` aimed at the command's process group does not reach it) that, once a
second, records every descendant of the command (from /proc: process id and start time, so a
recycled id is never mistaken for one of them). When the command is gone, however it ended, the
watchdog gives its descendants a moment to finish on their own, then sends SIGTERM to those still
running, SIGKILL after `GRACE_S`, removes the command's temporary folder, and exits. On systems
without /proc (macOS) it does not start.

Run as a script (`python watchdog.py <pid>`), so it imports nothing from the project.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLL_S = 1.0
SETTLE_S = 2.0    # a command that ended normally is stopping its children itself: let it
GRACE_S = 10.0    # between SIGTERM and SIGKILL
TMP_PREFIX = "progattr-run-"
_started: set[int] = set()


def start() -> None:
    """Watch this process and give it a temporary folder of its own (once per process; nothing on
    systems without /proc)."""
    if os.getpid() in _started or not Path("/proc/self/stat").is_file():
        return
    _started.add(os.getpid())
    try:
        tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
    except OSError:  # no writable temporary folder: the command will say so itself when it needs one
        tmp = ""
    else:
        os.environ["TMPDIR"] = tempfile.tempdir = tmp  # this process (tempfile caches it) and its children
    subprocess.Popen([sys.executable, "-S", __file__, str(os.getpid()), tmp], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, None if it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name, in parentheses, may hold spaces
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def _processes() -> dict[int, tuple[int, int]]:
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                out[int(entry.name)] = stat
    return out


def descendants(pid: int) -> dict[int, int]:
    """Every live descendant of `pid`: pid -> start time."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in procs.items():
        children.setdefault(parent, []).append(child)
    found, todo = {}, list(children.get(pid, []))
    while todo:
        p = todo.pop()
        found[p] = procs[p][1]
        todo += children.get(p, [])
    return found


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] == started


def watch(pid: int, tmp: str = "") -> None:
    me = os.getpid()
    own = _stat(pid)
    if own is None:
        _remove(tmp)
        return
    seen: dict[int, int] = {}
    while _alive(pid, own[1]):
        seen.update((p, t) for p, t in descendants(pid).items() if p != me)
        time.sleep(POLL_S)
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline and any(_alive(p, t) for p, t in seen.items()):
        time.sleep(0.2)
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 0.0)):
        left = {p: t for p, t in seen.items() if _alive(p, t)}
        for p in left:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive(p, t) for p, t in left.items()):
            time.sleep(0.2)
    _remove(tmp)


def _remove(tmp: str) -> None:
    if tmp and Path(tmp).name.startswith(TMP_PREFIX):
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "")
