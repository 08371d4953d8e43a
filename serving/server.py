"""The serving process: build the app from params in each uvicorn worker, and start the workers.

`serve()` validates params, passes the options to the workers in an environment variable (uvicorn
starts workers by import string), and runs uvicorn's process manager, which restarts a dead worker.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from fastapi import FastAPI

from progattr_core.config import Params, load_params
from progattr_core.errors import ConfigError
from tracking.registry import Registry
from tracking.store import store_config

from .app import AppConfig, create_app
from .follower import ModelFollower

log = logging.getLogger(__name__)
OPTIONS_ENV = "PROGATTR_SERVE_OPTIONS"


def tracking_uri(params: Params, root: Path) -> str:
    """The same store the pipeline registers into (env MLFLOW_TRACKING_URI wins, see tracking/store.py)."""
    return store_config(params, root).tracking_uri


def app_config(params: Params, articles: list[str]) -> AppConfig:
    for article in articles:
        params.attributes(article)  # ConfigError naming the taxonomy if unknown
    s = params.serving
    token = os.environ.get(s.auth_token_env) or None
    return AppConfig(tuple(articles), s.max_body_bytes, params.data.image, s.top_k, token, s.alias, s.shadow_alias,
                     s.shadow_share)


def build_app(params: Params, articles: list[str], uri: str) -> FastAPI:
    """The service for `articles`, following `serving.alias` in the registry at `uri`."""
    cfg = app_config(params, articles)
    s = params.serving
    follower = ModelFollower(articles, Registry(uri), s.alias, s.poll_interval_s)
    shadow = ModelFollower(articles, Registry(uri), s.shadow_alias, s.poll_interval_s) if s.shadow_share else None
    return create_app(cfg, follower, shadow=shadow)


def app_from_env() -> FastAPI:
    """uvicorn's factory, called once in each worker process."""
    opts = json.loads(os.environ[OPTIONS_ENV])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    params = load_params(opts["params_path"], opts["overrides"])
    threads = params.serving.threads or max(1, (os.cpu_count() or 1) // params.serving.workers)
    torch.set_num_threads(threads)
    uri = tracking_uri(params, Path(opts["params_path"]).resolve().parent)
    log.info("worker %d: articles %s, %d torch thread(s), registry %s", os.getpid(), opts["articles"], threads, uri)
    return build_app(params, opts["articles"], uri)


def serve(params_path: str | Path, overrides: list[str], articles: list[str]) -> None:
    """Run the service (blocks): `serving.workers` uvicorn worker processes on serving.host:port."""
    import uvicorn

    params = load_params(params_path, overrides)
    articles = articles or [params.train.article]
    app_config(params, articles)
    if len(set(articles)) != len(articles):
        raise ConfigError(f"--articles lists an article twice: {articles}")
    # Workers inherit these. A down tracking server must not hold a worker's startup for minutes (the
    # next poll retries anyway), and download progress bars would garble the logs.
    os.environ.update({OPTIONS_ENV: json.dumps({"params_path": str(Path(params_path).resolve()),
                                                "overrides": list(overrides), "articles": articles})})
    for key, value in (("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"), ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
                       ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")):
        os.environ.setdefault(key, value)
    if params.serving.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="progattr-metrics-")
    s = params.serving
    uvicorn.run("serving.server:app_from_env", factory=True, host=s.host, port=s.port, workers=s.workers,
                log_level="info", timeout_graceful_shutdown=30)
