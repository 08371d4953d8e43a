"""Bit-identical training: the same data, params, seed and code give the same weights.

Measured on this project's CPU (bench/README.md, "Reproducibility"): with the same number of torch
threads two processes train to identical weights whatever else the machine is doing; a different
thread count gives different weights (the kernels split their sums by thread), as different as
another seed's: on the demo's catalogue 39.3% overall with one thread against 42.9% with two.
So the thread count is a param (`compute.threads`; 0 = the process's torch setting, by default the
machine's cores) and, resolved, part of the training key, as is where the run trains (the device and
the CPU's kernel family: AVX2 and AVX-512 kernels round differently). `compute.deterministic` asks
torch for deterministic algorithms: strict on CPU, where it costs nothing measurable; on CUDA it also
pins cuDNN to deterministic kernels and cuBLAS to a fixed workspace, and warns (instead of failing)
on the few ops that have no deterministic CUDA kernel.
"""

from __future__ import annotations

import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .config import ComputeParams
from .errors import ConfigError


def resolved_threads(threads: int) -> int:
    """The intra-op thread count a run with `compute.threads = threads` trains with."""
    return threads if threads > 0 else torch.get_num_threads()


def device_kind(device: torch.device | str) -> str:
    """Where a run trains, as precisely as results depend on it: `cpu:<arch>:<kernel family>` or
    `cuda:<GPU name>` (`mps` as is)."""
    device = torch.device(device)
    if device.type == "cpu":
        return f"cpu:{platform.machine()}:{torch.backends.cpu.get_cpu_capability()}"
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def compute_identity(cp: ComputeParams, device: torch.device | str) -> str:
    """What the training key adds for the compute: resolved threads, determinism and device kind (and bf16
    autocast where it applies, on CUDA)."""
    amp = "|amp=bf16" if cp.amp and torch.device(device).type == "cuda" else ""
    return f"threads={resolved_threads(cp.threads)}|deterministic={cp.deterministic}|device={device_kind(device)}{amp}"


_lock = threading.Lock()
_held: dict = {"count": 0, "wanted": None, "before": None}  # the trainings inside reproducible(), process-wide


@contextmanager
def reproducible(cp: ComputeParams, device: torch.device | str) -> Iterator[None]:
    """Train inside this: `compute.threads` and `compute.deterministic` apply, and the process's previous
    settings come back afterwards (serving and tests share the process). Torch's settings are
    process-wide, so trainings running at once in one process (concurrent baseline tasks) share
    them: the first applies them, the last one out restores the process's, and one asking for other
    settings meanwhile is refused (its weights would depend on the other's timing)."""
    device = torch.device(device)
    wanted = (resolved_threads(cp.threads), cp.deterministic, device.type)
    with _lock:
        if _held["count"] == 0:
            _held["before"], _held["wanted"] = _apply(*wanted), wanted
        elif _held["wanted"] != wanted:
            raise ConfigError(f"a training wants (threads, deterministic, device) = {wanted} while another in this "
                              f"process trains with {_held['wanted']}: torch's settings are process-wide; run them "
                              "one after another (pipeline.max_workers: 1) or give them the same train settings")
        _held["count"] += 1
    try:
        yield
    finally:
        with _lock:
            _held["count"] -= 1
            if _held["count"] == 0:
                _restore(_held["before"])


def _apply(threads: int, deterministic: bool, device_type: str) -> tuple:
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    torch.set_num_threads(threads)
    if deterministic:
        if device_type == "cuda":
            # cuBLAS reads this when it creates its handle: set before the first CUDA matmul
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.use_deterministic_algorithms(True, warn_only=device_type != "cpu")
    return before


def _restore(before: tuple) -> None:
    torch.set_num_threads(before[0])
    torch.use_deterministic_algorithms(before[1], warn_only=before[2])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[3], before[4]
