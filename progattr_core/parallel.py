"""Work over many images on every core, with a progress line: the one process pool and the one meter.

`pmap` maps a module-level function over jobs in worker processes, in chunks, and gives the results
back in job order. Workers are forked from a clean, single-threaded server process (the forkserver
start method), never from the caller: a Prefect flow or a torch process has threads, and a process
forked while another thread holds a lock (logging's, malloc's, an import's) can hang forever. The
server imports the function's module once. As with spawn, a script that reaches `pmap` runs its main
code under `if __name__ == "__main__":` (a worker imports the script; unguarded code would run again). `Meter` prints a line with the count, rate and ETA at most every
`every` seconds, for imports, cache builds, training epochs and tagging alike.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's cpuset), not the host's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int, n_jobs: int, parallel_from: int = 256) -> int:
    """How many processes: `workers`, or with 0 every core from `parallel_from` jobs up and one below that
    (starting processes costs more than a few hundred small jobs). Never more than there are jobs."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: every core), got {workers}")
    if workers == 0:
        workers = cpu_count() if n_jobs >= parallel_from else 1
    return max(1, min(workers, n_jobs))


class Meter:
    """`say("<label>: done/total (pct), rate/s, ETA")` at most every `every` seconds, and once at the end
    (with no total, e.g. a streamed table: `done, rate/s`)."""

    def __init__(self, label: str, total: int | None, say: Callable[[str], Any] | None, every: float = 30.0,
                 unit: str = "images") -> None:
        self.label, self.total, self.say, self.every, self.unit = label, total, say, every, unit
        self.done, self.start = 0, time.perf_counter()
        self._last = self.start

    def add(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.say is not None and now - self._last >= self.every and (self.total is None or self.done < self.total):
            self._last = now
            self.say(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.perf_counter()) - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total is None:
            return f"{self.label}: {self.done:,} {self.unit}, {rate:,.0f}/s"
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = f", ETA {_duration(left)}" if self.done < self.total else f" in {_duration(elapsed)}"
        pct = 100 * self.done / self.total if self.total else 100.0
        return f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({pct:.0f}%), {rate:,.0f}/s{eta}"

    def finish(self) -> None:
        if self.say is not None:
            self.say(self.line())


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s")


def _chunks(jobs: Sequence[T], size: int) -> list[Sequence[T]]:
    return [jobs[i:i + size] for i in range(0, len(jobs), size)]


def _context(module: str) -> mp.context.BaseContext:
    if "forkserver" not in mp.get_all_start_methods():  # not on Linux: spawn imports the module per worker
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([module])  # takes effect when the server starts: the first pool of the process
    return ctx


def _apply(args: tuple[int, Callable[[T], R], Sequence[T]]) -> tuple[int, list[R]]:
    i, fn, chunk = args
    return i, [fn(j) for j in chunk]


def pmap(fn: Callable[[T], R], jobs: Sequence[T], workers: int = 0, parallel_from: int = 256,
         meter: Meter | None = None, count: Callable[[R], int] | None = None) -> list[R]:
    """[fn(j) for j in jobs] in `resolve_workers(workers, ...)` processes (one: in this process). `fn`
    must be a module-level function. Chunks of jobs go to the workers in order and come back as they
    finish; each finished chunk advances `meter` by its jobs, or by `count(result)` summed over them."""
    def advance(results: list[R]) -> None:
        if meter:
            meter.add(sum(count(r) for r in results) if count else len(results))

    n = resolve_workers(workers, len(jobs), parallel_from)
    if n <= 1:
        out: list[R] = []
        for chunk in _chunks(jobs, 1 if count else 64):
            done = [fn(j) for j in chunk]
            out.extend(done)
            advance(done)
        return out
    size = max(1, min(256, len(jobs) // (n * 8)))
    chunks = _chunks(jobs, size)
    results: list[list[R] | None] = [None] * len(chunks)
    with _context(fn.__module__).Pool(n) as pool:
        for i, part in pool.imap_unordered(_apply, [(i, fn, c) for i, c in enumerate(chunks)]):
            results[i] = part
            advance(part)
    return [r for part in results for r in part]  # type: ignore[union-attr]
