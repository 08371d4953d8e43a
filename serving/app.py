"""The FastAPI application: one prediction route per article, health, readiness and metrics.

Routes (every error is JSON: {"error": {"code": ..., "message": ...}}):
  POST /v1/articles/{article}/predict  image bytes (image/* or application/octet-stream) or multipart
                                       (a part named `image`, else the first file part)
  GET  /v1/articles                    served articles, their attributes and registry versions
  GET  /healthz                        the process is up
  GET  /readyz                         200 once every served article whose alias names a version has it
                                       loaded (and one has), 503 before; which version this worker
                                       serves (and shadows), and which articles wait for a first version
  GET  /metrics                        Prometheus text format (requests, latency, predictions, drift,
                                       shadow agreement: metrics.py)
A shadow version (`serving.shadow_alias`, e.g. challenger) also answers `serving.shadow_share` of the
predict requests, after the response has gone (a background task, never on the request path), when it
differs from the served version; its answers only feed the metrics.
/v1/* needs `Authorization: Bearer <token>` when the env var named by serving.auth_token_env is set.
The request's bytes are decoded in memory; nothing from a request is used as a file path.
"""

from __future__ import annotations

import hmac
import logging
import os
import random
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from progattr_core.config import ImageParams
from progattr_core.inference import Refused, image_array, predict_one

from .follower import ModelFollower, ServedModel
from .metrics import Metrics
from .multipart import read_image_part

log = logging.getLogger(__name__)
RAW_TYPES = ("application/octet-stream",)
_PREDICT = re.compile(r"^/v1/articles/([^/]+)/predict$")


@dataclass(frozen=True)
class AppConfig:
    """What the app needs, already resolved from params and the environment."""

    articles: tuple[str, ...]
    max_body_bytes: int
    image_limits: ImageParams
    top_k: int
    token: str | None                  # bearer token for /v1/*; None = no auth
    alias: str
    shadow_alias: str = "challenger"
    shadow_share: float = 0.0          # of predict requests the shadow also answers (0: no shadow)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(cfg: AppConfig, follower: ModelFollower, metrics: Metrics | None = None,
               shadow: ModelFollower | None = None) -> FastAPI:
    """The service for `cfg.articles`, answering with whatever `follower` currently serves; `shadow`
    follows the shadow alias (None: no shadow)."""
    metrics = metrics or Metrics()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # The first load happens before this worker accepts connections (uvicorn finishes startup
        # first), so a starting or restarted worker never answers 503 beside ready ones; later
        # versions load in the follower's background thread.
        await run_in_threadpool(follower.poll_once)
        follower.start()
        if shadow is not None:
            shadow.start()  # polls first in its thread: a missing challenger never delays readiness
        yield
        follower.stop()
        if shadow is not None:
            shadow.stop()

    app = FastAPI(title="progattr", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    _add_error_handlers(app)
    _add_metrics_middleware(app, cfg, metrics)
    _add_routes(app, cfg, follower, metrics, shadow)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> JSONResponse:
        response = _error(exc.status, exc.code, exc.message)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"  # RFC 6750
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", str(exc.errors()[:3]))


def _route_labels(path: str, articles: tuple[str, ...]) -> tuple[str, str]:
    """(route template, article) for metrics; unknown paths and articles collapse to fixed labels."""
    m = _PREDICT.match(path)
    if m:
        return "/v1/articles/{article}/predict", m.group(1) if m.group(1) in articles else "unknown"
    known = ("/v1/articles", "/healthz", "/readyz", "/metrics")
    return (path if path in known else "other"), ""


def _add_metrics_middleware(app: FastAPI, cfg: AppConfig, metrics: Metrics) -> None:
    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route, article = _route_labels(request.url.path, cfg.articles)
        metrics.observe(route, article, response.status_code, time.perf_counter() - start)
        return response


def _authorise(request: Request, token: str | None) -> None:
    if token is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise Refused(401, "unauthorised", "this route needs the header 'Authorization: Bearer <token>'")


def _served(article: str, cfg: AppConfig, follower: ModelFollower) -> ServedModel:
    if article not in cfg.articles:
        raise Refused(404, "unknown_article", f"article {article!r} is not served here; served: {list(cfg.articles)}")
    served = follower.get(article)
    if served is None and article in follower.waiting():
        raise Refused(503, "no_version", f"no @{cfg.alias} version of {article!r} yet: approve one (progattr registry "
                                         f"approve --article {article} --version N --reason ...); this service picks "
                                         "it up without a restart")
    if served is None:
        raise Refused(503, "model_not_loaded", f"no model for {article!r} yet: the registry has no "
                                                f"@{cfg.alias} version or it is still loading")
    return served


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` (header or bytes read)."""
    declared = request.headers.get("content-length", "")
    too_large = Refused(413, "too_large", f"request body is over serving.max_body_bytes={limit}")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _request_image(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if not (media.startswith("image/") or media in RAW_TYPES or media == "multipart/form-data"):
        raise Refused(415, "unsupported_media_type",
                       f"content type {media or '(none)'!r}; send image/*, application/octet-stream or "
                       "multipart/form-data with an `image` file part")
    body = await _read_body(request, limit)
    if media == "multipart/form-data":
        body = read_image_part(body, content_type)
    if not body:
        raise Refused(400, "empty_body", "the request carries no image bytes")
    return body


def _on_swap(metrics: Metrics, alias: str, counts_version: bool):
    def swapped(served: ServedModel) -> None:
        metrics.reference(served.article, alias, served.version, served.reference)
        if counts_version:
            metrics.swapped(served.article, served.version)
    return swapped


def _shadow_answer(metrics: Metrics, cfg: AppConfig, shadow: ServedModel, data: bytes, array, served_size: int,
                   answered: dict[str, dict]) -> None:
    """The shadow version's answer to an answered request (a background task: the response has gone)."""
    try:
        if shadow.model.image_size != served_size:
            array = image_array(data, cfg.image_limits, shadow.model.image_size)
        got = predict_one(shadow.model, array, 1)
    except Exception as exc:  # noqa: BLE001 - a failing shadow must never touch serving
        log.warning("shadow %s version %s failed on a request (%s: %s)", shadow.name, shadow.version,
                    type(exc).__name__, exc)
        return
    metrics.shadowed(shadow.article, cfg.shadow_alias, shadow.version, answered, got)


def _add_routes(app: FastAPI, cfg: AppConfig, follower: ModelFollower, metrics: Metrics,
                shadow: ModelFollower | None) -> None:
    follower.on_swap = _on_swap(metrics, cfg.alias, True)
    if shadow is not None:
        shadow.on_swap = _on_swap(metrics, cfg.shadow_alias, False)

    @app.post("/v1/articles/{article}/predict")
    async def predict_route(article: str, request: Request, background: BackgroundTasks) -> dict:
        _authorise(request, cfg.token)
        served = _served(article, cfg, follower)  # held for the whole request: a swap cannot change it
        data = await _request_image(request, cfg.max_body_bytes)
        start = time.perf_counter()
        array = await run_in_threadpool(image_array, data, cfg.image_limits, served.model.image_size)
        attributes = await run_in_threadpool(predict_one, served.model, array, cfg.top_k)
        metrics.predicted_by(article, cfg.alias, served.version, attributes)
        other = shadow.get(article) if shadow is not None else None
        if other is not None and other.version != served.version and random.random() < cfg.shadow_share:
            background.add_task(_shadow_answer, metrics, cfg, other, data, array, served.model.image_size, attributes)
        return {"article": article, "model": {"name": served.name, "version": served.version},
                "attributes": attributes, "inference_ms": round(1000 * (time.perf_counter() - start), 3)}

    @app.get("/v1/articles")
    async def articles_route(request: Request) -> dict:
        _authorise(request, cfg.token)
        out = []
        for article in cfg.articles:
            served = follower.get(article)
            try:
                versions = await run_in_threadpool(follower.registry.listing, article)
            except Exception as exc:  # noqa: BLE001 - the listing degrades, it does not fail
                versions = {"error": f"registry unreachable: {type(exc).__name__}"}
            out.append({"article": article, "alias": cfg.alias, "serving_version": served and served.version,
                        "model": served and served.name, "versions": versions,
                        "attributes": served.model.classes if served else None})
        return {"articles": out}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = follower.ready()
        body = {"ready": ready, "worker": os.getpid(),
                "serving": {a: getattr(follower.get(a), "version", None) for a in cfg.articles},
                "waiting_for_version": follower.waiting()}
        if shadow is not None:
            body["shadow"] = {a: getattr(shadow.get(a), "version", None) for a in cfg.articles}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)
