"""MLflow tracking: where runs go, runs of one experiment, and the retry rule for every MLflow call.

Everything goes through an explicit `MlflowClient` (no active-run globals), so Prefect tasks running
in threads or separate processes cannot step on each other's runs. Only MLflow I/O is retried, here
(`call_with_retries`); Prefect tasks that call it are not retried again. The model registry is
`tracking/registry.py`.

Run layout in the experiment (every run carries `progattr.*` tags, searched by tag, never by run id):
- one `flow` run per flow invocation (validation report, evaluation, the registered model files);
- one `stage` run per progressive stage, keyed by `progattr.train_key` (article + data version +
  params hash) and `progattr.stage_index`: metrics plus `checkpoint/checkpoint.pt`. A stage counts
  as done only when its run is FINISHED with `progattr.status=completed`, set after the upload, so
  a process killed mid-stage leaves nothing that looks complete;
- one `baseline` run per baseline model, keyed the same way by `progattr.baseline_key`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException

from progattr_core.config import Params
from progattr_core.errors import ProgattrError

log = logging.getLogger(__name__)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a progress bar per download otherwise
_USERINFO = re.compile(r"(://[^/@\s:]+):[^/@\s]+@")
T = TypeVar("T")
TAG = "progattr."
COMPLETED = "completed"
# MLflow error codes that a retry cannot fix; anything else (connection errors, a locked SQLite
# file, a 5xx from the server) is retried with exponential backoff.
_PERMANENT = {"RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE",
              "BAD_REQUEST", "INVALID_STATE", "PERMISSION_DENIED", "NOT_FOUND"}


@dataclass(frozen=True)
class StoreConfig:
    """Where runs go: small and serialisable, so tasks can pass it instead of a client."""

    tracking_uri: str
    experiment: str
    artifact_location: str | None
    retries: int
    retry_delay_s: float


def store_config(params: Params, root: str | Path) -> StoreConfig:
    """Tracking URI: env MLFLOW_TRACKING_URI, else params mlflow.tracking_uri, else SQLite in `root`.

    With a local store the experiment's artifact location is pinned to an absolute folder in the
    project (MLflow would otherwise use ./mlruns relative to whatever the cwd happens to be).
    """
    root = Path(root).resolve()
    cfg = params.mlflow
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    artifacts = (root / cfg.artifact_root).as_uri() if local else None
    return StoreConfig(uri, cfg.experiment, artifacts, cfg.retries, cfg.retry_delay_s)


class TrackingUnavailableError(ProgattrError):
    """MLflow kept failing on I/O after every retry (server down, store locked); nothing was half-done."""

    exit_code = 7


def redact(text: str) -> str:
    """`text` with the password of every URL in it hidden (scheme://user:***@host), for logs and errors."""
    return _USERINFO.sub(r"\1:***@", text)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT
    # sqlalchemy's OperationalError: "database is locked" when threads share the SQLite store
    return isinstance(exc, (OSError, ConnectionError, TimeoutError)) or type(exc).__name__ == "OperationalError"


def with_backoff(fn: Callable[[], T], retries: int, delay_s: float, transient: Callable[[BaseException], bool],
                 on_retry: Callable[[BaseException, int, float], Any] | None = None) -> T:
    """The one retry rule: `fn()`, tried again up to `retries` times after a transient error, waiting
    `delay_s`, then twice as long each time; any other error, or the last one, is raised as it is."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:
            if not transient(exc) or attempt == retries:
                raise
            delay = delay_s * 2**attempt
            if on_retry:
                on_retry(exc, attempt + 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def call_with_retries(uri: str, retries: int, delay_s: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, retried with exponential backoff on transient I/O errors; a permanent
    error (no such version, bad parameter) is raised at once; TrackingUnavailableError at the end."""
    def say(exc: BaseException, attempt: int, delay: float) -> None:
        log.warning("MLflow call %s failed (%s); retry %d in %.1fs", fn.__name__, redact(str(exc)), attempt, delay)

    try:
        return with_backoff(lambda: fn(*args, **kwargs), retries, delay_s, _transient, say)
    except Exception as exc:
        if not _transient(exc):
            raise
        raise TrackingUnavailableError(
            f"MLflow at {redact(uri)} failed {retries + 1} time(s) in {fn.__name__}, "
            f"giving up (params mlflow.retries={retries}): {redact(str(exc))}") from None


class Store:
    """An MLflow client bound to one experiment, with retries on I/O."""

    def __init__(self, cfg: StoreConfig):
        self.cfg = cfg
        if redact(cfg.tracking_uri) != cfg.tracking_uri:  # MLflow prints "View run at <uri>" on every end
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # of a run, password included
        self.client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
        self.experiment_id = self._call(self._ensure_experiment)

    @classmethod
    def of(cls, cfg: StoreConfig) -> Store:
        """The one Store of `cfg` in this process: a run's steps share its client and experiment lookup."""
        return _store_of(cfg)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return call_with_retries(self.cfg.tracking_uri, self.cfg.retries, self.cfg.retry_delay_s, fn, *args, **kwargs)

    def _ensure_experiment(self) -> str:
        exp = self.client.get_experiment_by_name(self.cfg.experiment)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(self.cfg.experiment, artifact_location=self.cfg.artifact_location)
        except MlflowException as exc:  # created concurrently by another process
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.client.get_experiment_by_name(self.cfg.experiment).experiment_id

    # -- runs -------------------------------------------------------------------------------------
    def start_run(self, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> str:
        tags = {(k if k.startswith("mlflow.") else TAG + k): str(v) for k, v in tags.items()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        return self._call(self.client.create_run, self.experiment_id, run_name=name, tags=tags).info.run_id

    @contextmanager
    def run(self, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> Iterator[str]:
        """A run that ends FINISHED (tagged completed) when the block completes, FAILED when it raises:
        the one way a run is opened and closed."""
        run_id = self.start_run(name, tags, parent_run_id)
        try:
            yield run_id
        except BaseException:
            self.finish_run(run_id, completed=False)
            raise
        self.finish_run(run_id)

    def finish_run(self, run_id: str, completed: bool = True) -> None:
        """End a run; `completed` also sets the tag that resume and re-use look for."""
        if completed:
            self.set_tags(run_id, {"status": COMPLETED})
        self._call(self.client.set_terminated, run_id, "FINISHED" if completed else "FAILED")

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self._call(self.client.set_tag, run_id, TAG + k, str(v))

    def log_params(self, run_id: str, values: dict[str, Any]) -> None:
        for k, v in values.items():
            self._call(self.client.log_param, run_id, k, str(v)[:6000])

    def log_metrics(self, run_id: str, values: dict[str, float], step: int = 0) -> None:
        for k, v in values.items():
            self._call(self.client.log_metric, run_id, k, float(v), step=step)

    def log_artifacts(self, run_id: str, local: str | Path, artifact_path: str | None = None) -> None:
        local = Path(local)
        if local.is_dir():
            self._call(self.client.log_artifacts, run_id, str(local), artifact_path)
        else:
            self._call(self.client.log_artifact, run_id, str(local), artifact_path)

    def download(self, run_id: str, artifact_path: str, dst: str | Path) -> Path:
        Path(dst).mkdir(parents=True, exist_ok=True)
        return Path(self._call(self.client.download_artifacts, run_id, artifact_path, str(dst)))

    def artifact_bytes(self, run_id: str, artifact_path: str) -> int:
        """Total size of the files under `artifact_path` in a run (0 when there are none)."""
        total, todo = 0, [artifact_path]
        while todo:
            for info in self._call(self.client.list_artifacts, run_id, todo.pop()):
                if info.is_dir:
                    todo.append(info.path)
                else:
                    total += info.file_size or 0
        return total

    def delete_artifacts(self, run_id: str, artifact_path: str) -> None:
        """Delete a run's artifacts under `artifact_path` from its artifact store (local folder, S3 or
        the tracking server's proxy); the run, its metrics and tags stay."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        repo = get_artifact_repository(self.get_run(run_id).info.artifact_uri, tracking_uri=self.cfg.tracking_uri)
        self._call(repo.delete_artifacts, artifact_path)

    def get_run(self, run_id: str) -> Run:
        return self._call(self.client.get_run, run_id)

    def search(self, tags: dict[str, Any], status: str | None = None) -> list[Run]:
        """Runs of the experiment whose progattr tags equal `tags`, oldest first."""
        clauses = [f"tags.`{TAG}{k}` = '{v}'" for k, v in tags.items()]
        if status:
            clauses.append(f"attributes.status = '{status}'")
        runs, token = [], None
        while True:  # pages: a year of nightly runs outgrows one
            page = self._call(self.client.search_runs, [self.experiment_id], " and ".join(clauses),
                              max_results=5000, order_by=["attributes.start_time ASC"], page_token=token)
            runs += page
            token = page.token
            if not token:
                return runs

    def find_completed(self, tags: dict[str, Any]) -> Run | None:
        """The latest completed run with these tags (a stage checkpoint, a baseline model), if any."""
        done = [r for r in self.search(tags, status="FINISHED") if r.data.tags.get(TAG + "status") == COMPLETED]
        return done[-1] if done else None

    def close_interrupted(self, tags: dict[str, Any]) -> list[str]:
        """Mark runs left RUNNING by a killed process as KILLED, so the UI and resume agree."""
        stale = self.search(tags, status="RUNNING")
        for run in stale:
            self.set_tags(run.info.run_id, {"status": "interrupted"})
            self._call(self.client.set_terminated, run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        return [r.info.run_id for r in stale]


@functools.lru_cache(maxsize=16)
def _store_of(cfg: StoreConfig) -> Store:
    return Store(cfg)   # a failed construction raises and is not cached: the next call retries
