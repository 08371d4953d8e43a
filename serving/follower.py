"""Keep a worker's models in step with the registry alias, without a request ever waiting for a load.

Each worker process runs one background thread that polls where the alias points for every served
article. When it moves (an approval or a rollback), the thread downloads and loads the new version,
runs one warm-up forward pass, then swaps a single reference. A request takes the reference once at
its start, so requests in flight finish on the model they started with, and new ones get the new
model; a load that fails leaves the current model serving. Assigning a dict item is atomic in
CPython, so no lock sits on the request path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from progattr_core.predict import for_inference
from tracking.registry import Registry, VersionRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """One loaded version: what a request holds on to for its whole lifetime."""

    article: str
    name: str
    version: str
    model: nn.Module
    loaded_at: float
    reference: dict[str, dict[str, float]] = field(default_factory=dict)  # test-split predicted-class mix


def warm_up(model: nn.Module) -> None:
    """One forward pass, so the first request on a fresh model does not pay for lazy initialisation."""
    with torch.inference_mode():
        model(torch.zeros((1, 3, model.image_size, model.image_size), dtype=torch.uint8))


class ModelFollower:
    """The served model of each article, following `alias` in `registry`; polled in a daemon thread.

    Articles are checked one after another; the app calls `poll_once` at startup, then `start`.
    """

    def __init__(self, articles: list[str], registry: Registry, alias: str, poll_interval_s: float,
                 on_swap: Callable[[ServedModel], None] | None = None):
        self.articles = list(articles)
        self.registry, self.alias = registry, alias
        self.poll_interval_s = poll_interval_s
        self.on_swap = on_swap
        self._models: dict[str, ServedModel] = {}
        self._failed: dict[str, str] = {}       # article -> version whose load failed (not retried)
        self._no_alias: set[str] = set()        # articles whose alias pointed at no version at the last poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, article: str) -> ServedModel | None:
        return self._models.get(article)

    def ready(self) -> bool:
        """Something to serve, and every article either loaded or with no version at the alias yet (one
        article without a champion does not keep the others from serving; see `waiting`)."""
        return bool(self._models) and all(a in self._models or a in self._no_alias for a in self.articles)

    def waiting(self) -> list[str]:
        """Served articles whose alias points at no version yet: picked up when one is approved."""
        return [a for a in self.articles if a in self._no_alias and a not in self._models]

    def poll_once(self) -> list[ServedModel]:
        """Check every article's alias once; load and swap in what moved. Returns the swapped-in models."""
        swapped = []
        for article in self.articles:
            try:
                ref = self.registry.current(article, self.alias)
            except Exception as exc:  # noqa: BLE001 - registry unreachable: keep serving, retry next poll
                log.warning("registry lookup for %r failed (%s: %s); keeping the current model",
                            article, type(exc).__name__, exc)
                continue
            if ref is None:
                if article not in self._no_alias and article not in self._models:
                    log.warning("%s: no @%s version in the registry yet; serving the other articles, this one "
                                "once a version is approved", article, self.alias)
                self._no_alias.add(article)
            else:
                self._no_alias.discard(article)
            if ref is None or self._is_current(article, ref) or self._failed.get(article) == ref.version:
                continue
            served = self._load(article, ref)
            if served is not None:
                swapped.append(served)
        return swapped

    def _is_current(self, article: str, ref: VersionRef) -> bool:
        current = self._models.get(article)
        return current is not None and current.version == ref.version

    def _load(self, article: str, ref: VersionRef) -> ServedModel | None:
        start = time.perf_counter()
        try:
            model = for_inference(self.registry.load(ref), batched=False)  # one image a request
            warm_up(model)
        except Exception as exc:  # noqa: BLE001 - a bad version must not take the service down
            self._failed[article] = ref.version
            log.error("loading %s version %s failed (%s: %s); still serving %s", ref.name, ref.version,
                      type(exc).__name__, exc, getattr(self._models.get(article), "version", "nothing"))
            return None
        try:
            reference = self.registry.predicted_mix(ref)
        except Exception as exc:  # noqa: BLE001 - drift needs it, predictions do not
            log.warning("no drift reference for %s version %s (%s: %s)", ref.name, ref.version, type(exc).__name__, exc)
            reference = {}
        served = ServedModel(article, ref.name, ref.version, model, time.time(), reference)
        previous = self._models.get(article)
        self._models[article] = served  # the atomic swap
        self._failed.pop(article, None)
        log.info("%s: now serving %s version %s (was %s; loaded in %.2fs)", article, ref.name, ref.version,
                 previous.version if previous else "none", time.perf_counter() - start)
        if self.on_swap:
            self.on_swap(served)
        return served

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="progattr-model-follower", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.poll_interval_s)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
