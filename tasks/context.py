"""What every pipeline task is handed: small, serialisable facts (paths, hashes, ids), never models."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from progattr_core.config import Params, load_params
from tasks.mlflow_store import Store, StoreConfig, redact, store_config


@functools.lru_cache(maxsize=16)
def _cached_params(path: str, overrides: tuple[str, ...], stamp: tuple[int, int]) -> Params:
    """Parsing and validating params.yaml costs ~23 ms (idle machine) and tasks ask for it ~40 times a run;
    keyed by the file's mtime and size, so an edited file is read again."""
    return load_params(path, overrides)


@dataclass(frozen=True)
class PipelineContext:
    """One pipeline run for one article. Relative paths in params resolve against `root`."""

    root: str
    params_path: str
    overrides: tuple[str, ...]
    article: str
    store: StoreConfig
    flow_run_id: str = ""          # the MLflow run of this flow invocation (parent of stage runs)

    def params(self) -> Params:
        # train.article follows the flow's article: the core's schedule and baselines read it.
        stat = os.stat(self.params_path)
        return _cached_params(self.params_path, (*self.overrides, f"train.article={self.article}"),
                              (stat.st_mtime_ns, stat.st_size))

    def path(self, rel: str | Path) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else Path(self.root) / p

    def relative(self, path: str | Path) -> str:
        """`path` relative to the project root when inside it (files written for DVC stay portable)."""
        p, root = Path(path).resolve(), Path(self.root).resolve()
        return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)

    def outputs(self, *parts: str) -> Path:
        """<pipeline.outputs>/<article>/...: models, metrics and plots of this article."""
        return self.path(self.params().pipeline.outputs) / self.article / Path(*parts)


def make_context(params_path: str | Path, article: str, overrides: list[str] | tuple[str, ...] = ()) -> PipelineContext:
    """Context for `params_path`; the project root is the folder that holds it."""
    params_path = Path(params_path).resolve()
    params = load_params(params_path, (*overrides, f"train.article={article}"))
    root = params_path.parent
    return PipelineContext(str(root), str(params_path), tuple(overrides), article, store_config(params, root))


@dataclass(frozen=True)
class DataRef:
    """The ingested data of one article: its manifest and content version."""

    manifest: str                  # canonical manifest of the article (its paths relative to data_root)
    data_root: str                 # these paths are relative to the project root
    data_version: str              # DVC hash of the raw folder (images + annotations), or our own
    raw_dir: str
    n_images: int
    splits: dict[str, int] = field(default_factory=dict)


def train_key(ctx: PipelineContext, data: DataRef) -> str:
    """Identity of a progressive training: article + data version + the params it depends on."""
    p = ctx.params()
    text = f"{ctx.article}|{data.data_version}|{p.digest('seed', 'model', 'train')}|{p.attributes(ctx.article)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def baseline_key(ctx: PipelineContext, data: DataRef) -> str:
    p = ctx.params()
    text = f"{ctx.article}|{data.data_version}|{p.digest('seed', 'model', 'train', 'baselines')}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit(root: str | Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def task_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run; the module logger when called plainly (DVC)."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("progattr.pipeline")


def start_flow_run(ctx: PipelineContext, name: str, tags: dict[str, str]) -> PipelineContext:
    """Open the MLflow run of one flow invocation; the returned context carries its id."""
    store = Store(ctx.store)
    run_id = store.start_run(name, {"kind": "flow", "article": ctx.article, "git_commit": git_commit(ctx.root), **tags})
    # an override may carry a URL with a password (--set mlflow.tracking_uri=...): never log it
    store.log_params(run_id, {"params_path": ctx.params_path, "overrides": redact(" ".join(ctx.overrides)) or "-"})
    return replace(ctx, flow_run_id=run_id)


def end_flow_run(ctx: PipelineContext, ok: bool) -> None:
    Store(ctx.store).finish_run(ctx.flow_run_id, completed=ok)
