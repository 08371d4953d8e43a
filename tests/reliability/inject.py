"""Run the real training flow (`progattr pipeline run`) in this process with one fault injected at an
exact point, so tests can kill or break it deterministically instead of racing a poller:

    python -m tests.reliability.inject kill-mid:2 -- --article jeans --params ... --set ...

Faults (k = stage index):
  kill-mid:k    SIGKILL during stage k, after its first epoch trained, before its checkpoint exists
  kill-after:k  SIGKILL right after stage k's MLflow run is marked completed (a stage boundary)
  enospc:k      stage k's checkpoint write fails half-way with OSError(ENOSPC) (a full disk)
"""

from __future__ import annotations

import errno
import os
import signal
import sys


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_mid(k: int) -> None:
    import tasks.training as training

    original = training.train_stage

    def train_stage(model, stage, *args, **kwargs):
        if stage.index != k:
            return original(model, stage, *args, **kwargs)
        args = list(args)
        args[5] = lambda message: _die()  # progress(...) fires after each epoch
        return original(model, stage, *args, **kwargs)

    training.train_stage = train_stage


def _kill_after(k: int) -> None:
    from tracking.store import Store

    start, finish = Store.start_run, Store.finish_run
    names: dict[str, str] = {}

    def start_run(self, name, tags, parent_run_id=None):
        run_id = start(self, name, tags, parent_run_id)
        names[run_id] = name
        return run_id

    def finish_run(self, run_id, completed=True):
        finish(self, run_id, completed)
        if completed and names.get(run_id, "").startswith(f"stage-{k}-"):
            _die()

    Store.start_run, Store.finish_run = start_run, finish_run


def full_disk_save(real_save):
    """torch.save that writes half of the bytes, then fails as a full disk does."""
    import io

    def save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        with open(f, "wb") as out:
            out.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))

    return save


def _enospc(k: int) -> None:
    import torch

    import tasks.training as training

    original = training.save_checkpoint

    def save_checkpoint(path, model, stage, result=None):
        if stage.index != k:
            return original(path, model, stage, result)
        real = torch.save
        torch.save = full_disk_save(real)
        try:
            return original(path, model, stage, result)
        finally:
            torch.save = real

    training.save_checkpoint = save_checkpoint


FAULTS = {"kill-mid": _kill_mid, "kill-after": _kill_after, "enospc": _enospc}


def main(argv: list[str]) -> int:
    fault, sep, *flow_args = argv
    assert sep == "--", "usage: inject FAULT:K -- FLOW ARGS"
    kind, k = fault.split(":")
    FAULTS[kind](int(k))
    from progattr.cli import main as cli

    return cli(["pipeline", "run", *flow_args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
