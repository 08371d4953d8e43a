"""What every pipeline task is handed: small, serialisable facts (paths, hashes, ids), never models."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from progattr_core.backbone import init_identity
from progattr_core.config import Params, load_params
from progattr_core.determinism import compute_identity
from progattr_core.model import resolve_device
from tracking.registry import fetch_backbone
from tracking.store import Store, StoreConfig, redact, store_config

PARAMS_SNAPSHOT = "params.json"   # the params a flow run used, an artifact of its MLflow run


@dataclass(frozen=True)
class PipelineContext:
    """One pipeline run for one article. Relative paths in params resolve against `root`.

    The params are a snapshot read once, when the context is made at the start of a run: every
    task of the run sees the same values (and the training key hashes them), even if params.yaml is
    edited meanwhile. The snapshot is logged to the run's MLflow run as `params.json`.
    """

    root: str
    params_path: str
    overrides: tuple[str, ...]
    article: str
    store: StoreConfig
    snapshot: Params = field(repr=False)
    flow_run_id: str = ""          # the MLflow run of this flow invocation (parent of stage runs)
    model_init: str = ""           # model.init as written (a models:/ reference; the snapshot holds its file)
    model_init_version: str = ""   # a models:/ model.init pinned: models:/<name>/<version> (an alias resolved)

    def params(self) -> Params:
        return self.snapshot

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


def make_context(params_path: str | Path, article: str | None, overrides: list[str] | tuple[str, ...] = ()
                 ) -> PipelineContext:
    """Context for `params_path`, its params read now; the project root is the folder that holds it.
    `train.article` is set to `article` (None: params' own), so `train.attribute_order` applies to this
    run's article; a `model.init: models:/progattr-backbone/<version>` (or `@<alias>`) becomes the fetched file."""
    params_path = Path(params_path).resolve()
    params = load_params(params_path, (*overrides, *([f"train.article={article}"] if article is not None else [])))
    article = params.train.article
    root = params_path.parent
    store = store_config(params, root)
    init = pinned = params.model.init
    if init.startswith("models:/"):  # a registered backbone: its file, fetched once, is what the run uses
        cache = Path(params.data.cache)
        ref, local = fetch_backbone(store, init, (cache if cache.is_absolute() else root / cache) / "backbones",
                                    params.model.arch)
        params = replace(params, model=replace(params.model, init=str(local)))
        pinned = f"models:/{ref.name}/{ref.version}"
    return PipelineContext(str(root), str(params_path), tuple(overrides), article, store, params, model_init=init,
                           model_init_version=pinned)


@dataclass(frozen=True)
class DataRef:
    """The ingested data of one article: its manifest and content version."""

    manifest: str                  # canonical manifest of the article (its paths relative to data_root)
    data_root: str                 # these paths are relative to the project root
    data_version: str              # DVC hash of the raw folder (images + annotations), or our own
    raw_dir: str
    n_images: int
    splits: dict[str, int] = field(default_factory=dict)


def key_suffix(p: Params) -> str:
    """What every training key (stages, baselines, pretraining) adds after its params: a model.init
    file by its content (a path alone would resume stages trained from an older file at the same path;
    nothing for scratch and imagenet, whose keys stay what they were), then the resolved thread
    count, determinism and device kind (the same inputs give the same weights only with the same
    compute, progattr_core/determinism.py, so a stage trained with other compute is not resumed from)."""
    init = init_identity(p.model.init)
    return (f"|init={init}" if init.startswith("sha256:") else "") + "|" + compute_identity(p.train, resolve_device(p.device))


def train_key(ctx: PipelineContext, data: DataRef) -> str:
    """Identity of a progressive training: article + data version + the params it depends on + what
    it starts from + the compute it trains with."""
    p = ctx.params()
    text = (f"{ctx.article}|{data.data_version}|{p.digest('seed', 'model', 'train')}|{p.attributes(ctx.article)}"
            f"{key_suffix(p)}")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def baseline_key(ctx: PipelineContext, data: DataRef) -> str:
    p = ctx.params()
    text = f"{ctx.article}|{data.data_version}|{p.digest('seed', 'model', 'train', 'baselines')}{key_suffix(p)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit(root: str | Path) -> str:
    """The checkout's commit; where there is no checkout (the Docker image leaves .git out), the
    commit the image was built from (env PROGATTR_GIT_COMMIT, the Dockerfile's GIT_COMMIT build arg)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() if out.returncode == 0 else ""
    except OSError:
        commit = ""
    return commit or os.environ.get("PROGATTR_GIT_COMMIT") or "unknown"


def git_dirty(root: str | Path) -> bool | None:
    """Whether tracked files differ from the checkout's commit (None outside a checkout): a version
    trained from uncommitted changes cannot be rebuilt from its commit alone."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                             text=True, timeout=30)
    except OSError:
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def task_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run; the module logger when called plainly (DVC)."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("progattr.pipeline")


@contextmanager
def flow_run(ctx: PipelineContext, name: str, tags: dict[str, str]) -> Iterator[PipelineContext]:
    """The MLflow run of one flow invocation, with the params snapshot; the context it yields carries
    its id. The run ends FINISHED when the block completes, FAILED when it raises."""
    store = Store(ctx.store)
    with store.run(name, {"kind": "flow", "article": ctx.article, "git_commit": git_commit(ctx.root), **tags}) as run_id:
        # an override may carry a URL with a password (--set mlflow.tracking_uri=...): never log it
        store.log_params(run_id, {"params_path": ctx.params_path, "overrides": redact(" ".join(ctx.overrides)) or "-",
                                  "params_digest": ctx.params().digest(), "profile": ctx.params().profile or "-"})
        with tempfile.TemporaryDirectory(prefix="progattr-params-") as tmp:
            snapshot = Path(tmp) / PARAMS_SNAPSHOT
            # in params order (taxonomy order is the default attribute order): load_params reads it back as is
            snapshot.write_text(redact(json.dumps(ctx.params().to_dict(), indent=1)))
            store.log_artifacts(run_id, snapshot)
        yield replace(ctx, flow_run_id=run_id)
