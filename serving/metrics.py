"""Prometheus metrics: requests and latency per route, article and status; the version each worker
serves; what it predicts (per attribute: top-1 confidence histograms, predicted-class counts, and the
population stability index of that class mix against the version's own test-split predictions, a
drift figure; the share of answers accepted, i.e. at or above the attribute's calibrated threshold,
another: a falling rate means images the model is less sure of); and the shadow version's agreement with the served one (app.py).

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
from prometheus_client.core import GaugeMetricFamily

from progattr_core.metrics import population_stability

BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
PREDICTED, PSI = "progattr_predicted_class", "progattr_prediction_psi"
ACCEPTED, CONFIDENCE = "progattr_predictions_accepted", "progattr_prediction_confidence"
ACCEPTANCE_RATE = "progattr_acceptance_rate"


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
        # Label values come from the served articles, the models' own vocabularies and registry
        # versions: bounded, never from a request.
        who = ["article", "attribute", "alias", "version"]
        self.confidence = Histogram(CONFIDENCE, "Top-1 (calibrated) probability of each attribute's "
                                    "prediction", who, buckets=CONFIDENCE_BUCKETS, registry=own)
        self.accepted = Counter(ACCEPTED, "Predictions at or above the attribute's calibrated threshold "
                                "(publishable at serving.target_precision)", who, registry=own)
        self.predicted = Counter(PREDICTED, "Predictions per class", [*who, "class"], registry=own)
        self.shadow_requests = Counter("progattr_shadow_requests", "Requests the shadow version also answered",
                                       ["article", "alias", "version"], registry=own)
        self.shadow_agreements = Counter("progattr_shadow_agreements", "Shadow answers whose top-1 class equals "
                                         "the served answer's", ["article", "attribute", "alias", "version"],
                                         registry=own)
        self.references: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
        self._drift = CollectorRegistry()
        self._drift.register(_Drift(self))

    def observe(self, route: str, article: str, status: int, seconds: float) -> None:
        self.requests.labels(route, article, str(status)).inc()
        self.latency.labels(route, article, str(status)).observe(seconds)

    def swapped(self, article: str, version: str) -> None:
        self.version.labels(article).set(float(version) if version.isdigit() else -1.0)
        self.swaps.labels(article).inc()

    def reference(self, article: str, alias: str, version: str, mix: dict[str, dict[str, float]]) -> None:
        """The predicted-class mix a version had on its test split: what its live mix is compared with."""
        if mix:
            self.references[(article, alias, version)] = mix

    def predicted_by(self, article: str, alias: str, version: str, attributes: dict[str, dict]) -> None:
        """One answer (predict_one's dicts) of `version`, served as `alias`."""
        for attribute, pred in attributes.items():
            self.confidence.labels(article, attribute, alias, version).observe(pred["probability"])
            self.predicted.labels(article, attribute, alias, version, pred["label"]).inc()
            self.accepted.labels(article, attribute, alias, version).inc(1 if pred.get("accepted", True) else 0)

    def shadowed(self, article: str, alias: str, version: str, served: dict[str, dict], shadow: dict[str, dict]) -> None:
        """The shadow version's answer to a request that `served` answered."""
        self.predicted_by(article, alias, version, shadow)
        self.shadow_requests.labels(article, alias, version).inc()
        for attribute, pred in shadow.items():
            if attribute in served and served[attribute]["label"] == pred["label"]:
                self.shadow_agreements.labels(article, attribute, alias, version).inc()
            else:
                self.shadow_agreements.labels(article, attribute, alias, version).inc(0)  # the series exists

    def render(self) -> bytes:
        return generate_latest(self.registry) + generate_latest(self._drift)


class _Drift:
    """progattr_prediction_psi per article, attribute, alias and version with a reference, and
    progattr_acceptance_rate per article, attribute, alias and version: computed at scrape time from
    the counters (summed over workers in multiprocess mode)."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        counts: dict[tuple[str, str, str, str], dict[str, float]] = {}
        accepted: dict[tuple[str, str, str, str], float] = {}
        answered: dict[tuple[str, str, str, str], float] = {}
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                lb = sample.labels
                if sample.name not in (PREDICTED + "_total", ACCEPTED + "_total", CONFIDENCE + "_count"):
                    continue
                key = (lb["article"], lb["attribute"], lb["alias"], lb["version"])
                if sample.name == PREDICTED + "_total":
                    counts.setdefault(key, {})[lb["class"]] = sample.value
                elif sample.name == ACCEPTED + "_total":
                    accepted[key] = accepted.get(key, 0.0) + sample.value
                else:
                    answered[key] = answered.get(key, 0.0) + sample.value
        rate = GaugeMetricFamily(ACCEPTANCE_RATE, "Share of answers since the start at or above the attribute's "
                                 "calibrated threshold", labels=["article", "attribute", "alias", "version"])
        for key, n in sorted(answered.items()):
            if n > 0:
                rate.add_metric(list(key), accepted.get(key, 0.0) / n)
        yield rate
        gauge = GaugeMetricFamily(PSI, "Population stability index of the predicted-class mix since the start "
                                  "against the version's test-split predictions (< 0.1 stable, > 0.25 a large shift)",
                                  labels=["article", "attribute", "alias", "version"])
        for (article, attribute, alias, version), live in sorted(counts.items()):
            reference = self.metrics.references.get((article, alias, version), {}).get(attribute)
            if reference and sum(live.values()) > 0:
                gauge.add_metric([article, attribute, alias, version], population_stability(live, reference))
        yield gauge
