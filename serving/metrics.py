"""Prometheus metrics: requests and latency per route, article and status; the version each worker serves.

With several worker processes a scrape reaches one of them, so `progattr serve` sets
PROMETHEUS_MULTIPROC_DIR and every worker writes its values there (prometheus_client's multiprocess
mode); /metrics then reports the sum over workers. Labels come from the route template and the
served articles only, never from raw request paths, so a client cannot grow the label set.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class Metrics:
    """The service's metrics, in their own registry (or the multiprocess directory)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        multiproc = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if multiproc:
            multiprocess.MultiProcessCollector(self.registry)
        own = None if multiproc else self.registry  # multiprocess values live in files, not a registry
        self.requests = Counter("progattr_requests", "HTTP requests", ["route", "article", "status"], registry=own)
        self.latency = Histogram("progattr_request_seconds", "HTTP request latency (s)",
                                 ["route", "article", "status"], buckets=BUCKETS, registry=own)
        self.version = Gauge("progattr_model_version", "Registered model version being served",
                             ["article"], registry=own, multiprocess_mode="mostrecent")
        self.swaps = Counter("progattr_model_swaps", "Model versions swapped in", ["article"], registry=own)

    def observe(self, route: str, article: str, status: int, seconds: float) -> None:
        self.requests.labels(route, article, str(status)).inc()
        self.latency.labels(route, article, str(status)).observe(seconds)

    def swapped(self, article: str, version: str) -> None:
        self.version.labels(article).set(float(version) if version.isdigit() else -1.0)
        self.swaps.labels(article).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
