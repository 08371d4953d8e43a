"""Webhook messages: nothing without a URL; a webhook that fails is a warning naming its host only,
never an error of the run (the flows' messages, end to end: tests/flows/test_train_flow.py)."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from progattr_core.config import load_params
from tasks.notify import notify, where
from tests.paths import ROOT


def test_no_url_no_message_and_a_failing_webhook_is_a_warning(monkeypatch, caplog):
    params = load_params(ROOT / "params.yaml")
    monkeypatch.delenv("PROGATTR_WEBHOOK_URL", raising=False)
    assert notify(params, "run_failed", "x") is False
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PROGATTR_WEBHOOK_URL", f"http://127.0.0.1:{port}/hooks/secret-token-123?k=secret-key")
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    with caplog.at_level(logging.WARNING):
        assert notify(params, "gate_failed", "x", version="3") is False
    assert waits == [0.5, 1.0]  # the one retry rule (tracking.store.with_backoff): no wait after the last try
    assert f"to the webhook at http://127.0.0.1:{port} failed 3 times" in caplog.text
    assert "secret" not in caplog.text
    with pytest.raises(ValueError, match="unknown notification event"):
        notify(params, "finished", "x")
    assert where("https://user:pw@hooks.slack.com/services/T0/B0/XYZ") == "https://hooks.slack.com"
