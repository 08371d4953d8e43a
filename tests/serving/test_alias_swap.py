"""Zero downtime: requests flow continuously while `champion` moves twice; none fails, both versions answer,
and every worker process follows each move (checked through /readyz, which names its worker)."""

from __future__ import annotations

import collections
import threading
import time

import requests

from tests.serving.helpers import png_bytes, set_alias

CLIENTS = 3
WORKERS = 2                 # as started by the `served` fixture
MAX_REQUESTS = 600          # bounds the test on a busy 2-core machine
CLOSE = {"Connection": "close"}  # a new connection per request, so the kernel spreads them over the workers


class LoadGenerator:
    """CLIENTS threads posting images back to back (keep-alive), recording each answer's version."""

    def __init__(self, url: str, headers: dict[str, str]):
        self.url, self.headers = url, {**headers, **CLOSE, "Content-Type": "image/png"}
        self.answers: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]

    def _client(self, i: int) -> None:
        body = png_bytes(seed=i)
        while not self.stop.is_set() and len(self.answers) + len(self.failures) < MAX_REQUESTS:
            try:
                r = requests.post(self.url, data=body, headers=self.headers, timeout=30)
                outcome = r.json()["model"]["version"] if r.status_code == 200 else f"HTTP {r.status_code}: {r.text}"
            except (requests.RequestException, ValueError, KeyError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            with self.lock:
                if outcome.isdigit():
                    self.answers.append((time.monotonic(), outcome))
                else:
                    self.failures.append(outcome)

    def wait_for(self, base_url: str, version: str, timeout: float) -> bool:
        """True once every worker has been seen serving `version` (a worker never goes back by itself)."""
        deadline, on_version = time.monotonic() + timeout, set()
        while time.monotonic() < deadline and not self.exhausted():
            ready = requests.get(f"{base_url}/readyz", headers=CLOSE, timeout=10).json()
            if ready["serving"]["tops"] == version:
                on_version.add(ready["worker"])
            if len(on_version) >= WORKERS:
                return True
            time.sleep(0.05)
        return False

    def exhausted(self) -> bool:
        return len(self.answers) + len(self.failures) >= MAX_REQUESTS

    def __enter__(self) -> LoadGenerator:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def test_champion_moves_twice_under_load_without_a_failed_request(served):
    v1, v2 = served.versions
    set_alias(served.tracking_uri, "tops", "champion", v1)
    with LoadGenerator(served.predict_url(), served.headers) as load:
        assert load.wait_for(served.url, v1, timeout=60), "the workers never settled on v1"
        set_alias(served.tracking_uri, "tops", "champion", v2)    # approval
        moved_to_v2 = load.wait_for(served.url, v2, timeout=60)
        time.sleep(1.0)                                           # some answers from v2 on every worker
        set_alias(served.tracking_uri, "tops", "champion", v1)    # rollback
        moved_back = load.wait_for(served.url, v1, timeout=60)
        time.sleep(1.0)
    counts = collections.Counter(v for _, v in load.answers)
    print(f"\n{len(load.answers)} answered ({dict(counts)}), {len(load.failures)} failed")
    assert load.failures == []
    assert moved_to_v2 and moved_back, f"alias moves not followed: {dict(counts)}"
    assert counts[v1] > 0 and counts[v2] > 0
    assert {v for _, v in load.answers[-CLIENTS:]} == {v1}
