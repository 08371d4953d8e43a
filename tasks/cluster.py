"""Per-shard work on a Dask cluster, through Prefect: the same module-level function `pmap` runs on this
machine's cores, mapped as Prefect task runs by prefect-dask's DaskTaskRunner over the cluster whose
scheduler is at `address` (params `pipeline.dask_address`, e.g. tcp://scheduler:8786).

Each job is one Prefect task run (visible in the UI with its state), executed on whichever worker the
scheduler picks. When a worker dies mid-map, the scheduler gives its jobs to the others; a job must
therefore be safe to run twice (the tagging shards are: a part is written whole, then renamed into
place). Workers need the project installed (the same image or lock) and must reach the jobs' inputs and
outputs: a shared filesystem or S3 for images, the output folder, and the model file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prefect import flow, task
from prefect.futures import as_completed

from progattr_core.errors import ConfigError
from progattr_core.parallel import Meter

T = TypeVar("T")
R = TypeVar("R")


def dask_task_runner(address: str) -> Any:
    """prefect-dask's DaskTaskRunner on the running cluster at `address` (checked when params load; the
    runner starts no cluster of its own)."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as e:  # the `dask` extra: prefect-dask and distributed
        raise ConfigError(f"pipeline.dask_address is set ({address}) but prefect-dask is not installed: "
                          "pip install 'progattr[dask]' (make setup installs it)") from e
    return DaskTaskRunner(address=address)


def dask_map(fn: Callable[[T], R], jobs: Sequence[T], address: str, name: str, meter: Meter | None = None,
             count: Callable[[R], int] | None = None) -> list[R]:
    """[fn(j) for j in jobs], each job a Prefect task run `name` on the Dask cluster at `address`; results
    in job order. Each finished job advances `meter` by one, or by `count(result)`. The first job that
    fails raises here once the others have finished (what they wrote stays, for a rerun to keep)."""
    shard = task(fn, name=name)

    # the jobs are not the flow's parameters: Prefect stores those on the flow run and refuses them above
    # server.api.max_parameter_size (512 KB: a tagging run of ~2,000 images' shard lists); each job travels
    # with its task to the worker that runs it
    @flow(name=f"{name}-on-dask", task_runner=dask_task_runner(address), log_prints=False)
    def on_dask() -> list[R]:
        futures = [shard.submit(job) for job in jobs]
        order = {id(f): i for i, f in enumerate(futures)}
        results: list[R] = [None] * len(futures)  # type: ignore[list-item]
        errors = []
        for done in as_completed(futures):
            try:
                results[order[id(done)]] = done.result()
            except Exception as e:  # noqa: BLE001 - kept, raised once the other jobs are done
                errors.append(e)
                continue
            if meter:
                meter.add(count(results[order[id(done)]]) if count else 1)
        if errors:
            raise errors[0]
        return results

    return on_dask()
