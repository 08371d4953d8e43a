"""One holder at a time, across processes on one machine: an exclusive `flock` on a lock file that names
its holder (pid, host, start time). The kernel releases a flock when its holder exits or is killed, so a
crashed run never leaves a lock that blocks the next one; the stale details are simply overwritten."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .errors import ProgattrError


class LockBusy(ProgattrError):
    """Another process holds the lock; the message names it."""

    exit_code = 75  # EX_TEMPFAIL (sysexits.h): nothing was done, try again later


@contextmanager
def hold(path: str | Path, what: str, wait: bool = False) -> Iterator[dict]:
    """Hold the lock at `path` for the `with` block (yields the holder's details). When another
    process holds it: with `wait`, wait for it; without, raise LockBusy at once naming `what` and
    the holder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(f"{what} is already running ({_describe(os.pread(fd, 4096, 0))}; lock {path})") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _describe(raw: bytes) -> str:
    try:
        h = json.loads(raw)
        return f"pid {h['pid']} on {h['host']}, started {h['started']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"
