"""The real service: predictions equal in-process predict(), bad requests get their 4xx, auth, metrics,
the challenger in shadow and prediction monitoring."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from progattr.cli import main as cli
from progattr_core.config import ImageParams
from progattr_core.data.images import decode_image, to_square_array
from progattr_core.predict import predict
from tasks.approvals import live_line
from tests.serving.conftest import MAX_BODY, TOKEN
from tests.serving.helpers import png_bytes, set_alias, tiny_model


def _expected(version_seed: int, data: bytes) -> dict:
    model = tiny_model(version_seed)
    x = to_square_array(decode_image(data, ImageParams(10**8, 10**8)), model.image_size)
    return {a: p.to_dict() for a, p in predict(model, x[None], top_k=3)[0].items()}


def _close(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for attr, w in want.items():
        assert got[attr]["label"] == w["label"]
        assert got[attr]["probability"] == pytest.approx(w["probability"], abs=1e-5)
        assert got[attr]["accepted"] is w["accepted"] is (attr != "pattern")  # helpers.CALIBRATION
        assert [t["label"] for t in got[attr]["top_k"]] == [t["label"] for t in w["top_k"]]


@pytest.mark.parametrize("how", ["raw-png", "raw-jpeg-octet", "multipart"])
def test_predictions_match_in_process_predict(served, how):
    data = png_bytes(37, 61, seed=3, fmt="JPEG" if "jpeg" in how else "PNG")
    if how == "multipart":
        r = requests.post(served.predict_url(), headers=served.headers, timeout=30,
                          files={"note": ("x.txt", b"ignored", "text/plain"), "image": ("a.png", data, "image/png")})
    else:
        ctype = "application/octet-stream" if "octet" in how else "image/png"
        r = requests.post(served.predict_url(), data=data, headers={**served.headers, "Content-Type": ctype}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["article"] == "tops" and body["model"]["name"] == "progattr-tops"
    seed = {v: s for v, s in zip(served.versions, [1, 2], strict=True)}[body["model"]["version"]]
    _close(body["attributes"], _expected(seed, data))


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, format="PNG")  # 4 Mpx in a few kB; the server allows 1 Mpx
    return buf.getvalue()


BAD = [  # (name, path article, content type, body, status, error code)
    ("not an image", "tops", "image/png", b"hello, I am text", 400, "not_an_image"),
    ("truncated", "tops", "image/png", png_bytes(64, 64)[:300], 400, "undecodable_image"),
    ("zero bytes", "tops", "image/jpeg", b"", 400, "empty_body"),
    ("over size", "tops", "image/png", b"\x89PNG" + bytes(MAX_BODY + 10), 413, "too_large"),
    ("decompression bomb", "tops", "image/png", _bomb(), 413, "decompression_bomb"),
    ("unknown article", "sarees", "image/png", png_bytes(), 404, "unknown_article"),
    ("wrong content type", "tops", "text/plain", png_bytes(), 415, "unsupported_media_type"),
    ("json", "tops", "application/json", b'{"path": "/etc/passwd"}', 415, "unsupported_media_type"),
    ("no content type", "tops", "", png_bytes(), 415, "unsupported_media_type"),
    ("multipart without image", "tops", "multipart/form-data; boundary=xx",
     b"--xx\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--xx--\r\n", 400, "bad_multipart"),
    ("path as article", "..%2F..%2Fetc", "image/png", png_bytes(), 404, None),
]


@pytest.mark.parametrize("name,article,ctype,body,status,code", BAD, ids=[b[0] for b in BAD])
def test_bad_request_gets_4xx_json_and_server_stays_ready(served, name, article, ctype, body, status, code):
    headers = {**served.headers, **({"Content-Type": ctype} if ctype else {})}
    r = requests.post(f"{served.url}/v1/articles/{article}/predict", data=body, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    assert requests.get(f"{served.url}/readyz", timeout=10).status_code == 200
    good = requests.post(served.predict_url(), data=png_bytes(), timeout=30,
                         headers={**served.headers, "Content-Type": "image/png"})
    assert good.status_code == 200


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}"])
def test_v1_routes_need_the_bearer_token(served, auth):
    headers = {"Content-Type": "image/png", **({"Authorization": auth} if auth else {})}
    r = requests.post(served.predict_url(), data=png_bytes(), headers=headers, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorised"
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert requests.get(f"{served.url}/v1/articles", headers=headers, timeout=30).status_code == 401
    assert requests.get(f"{served.url}/healthz", timeout=10).status_code == 200


def test_articles_lists_versions_and_attributes(served):
    r = requests.get(f"{served.url}/v1/articles", headers=served.headers, timeout=30)
    assert r.status_code == 200
    (entry,) = r.json()["articles"]
    assert entry["article"] == "tops" and entry["alias"] == "champion"
    assert [v["version"] for v in entry["versions"]][:2] == served.versions  # test_follower adds bad ones
    assert {"champion"} <= {a for v in entry["versions"] for a in v["aliases"]}
    assert set(entry["attributes"]) == {"sleeve_length", "pattern", "neck"}


def test_metrics_count_requests_per_route_article_status(served):
    requests.post(served.predict_url(), data=b"", timeout=30, headers={**served.headers, "Content-Type": "image/png"})
    text = requests.get(f"{served.url}/metrics", timeout=10).text
    lines = [ln for ln in text.splitlines() if ln.startswith("progattr_requests_total{")]
    assert any('route="/v1/articles/{article}/predict"' in ln and 'article="tops"' in ln and 'status="400"' in ln
               for ln in lines), lines
    assert "progattr_request_seconds_bucket{" in text
    assert np.isfinite(float(lines[0].rsplit(" ", 1)[1]))


def _shadowing(url: str, version: str, workers: int = 2, timeout: float = 60) -> None:
    """Until `workers` distinct worker processes report `version` as their shadow of tops."""
    deadline, seen = time.monotonic() + timeout, set()
    while len(seen) < workers:
        assert time.monotonic() < deadline, f"only workers {sorted(seen)} shadow version {version}"
        body = requests.get(f"{url}/readyz", headers={"Connection": "close"}, timeout=10).json()
        if body.get("shadow", {}).get("tops") == version:
            seen.add(body["worker"])
        time.sleep(0.05)


def _total(text: str, name: str, **labels: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_challenger_shadows_live_requests_and_predictions_are_monitored(served, capsys):
    """serving.shadow_share=1: every answer comes from champion (v1); challenger (v2) answers each one
    too, after the response; /metrics holds both versions' class counts, confidences, the drift index
    of v1 against its test-split mix, and v2's agreement, which `registry show` reports."""
    v1, v2 = served.versions
    set_alias(served.tracking_uri, "tops", "challenger", v2)
    try:
        _shadowing(served.url, v2)
        n = 12
        for i in range(n):
            r = requests.post(served.predict_url(), data=png_bytes(seed=100 + i), timeout=30,
                              headers={**served.headers, "Content-Type": "image/png"})
            assert r.status_code == 200 and r.json()["model"]["version"] == v1
        deadline = time.monotonic() + 30  # the shadow answers after each response has gone
        while _total(text := requests.get(f"{served.url}/metrics", timeout=10).text,
                     "progattr_shadow_requests_total", version=v2) < n:
            assert time.monotonic() < deadline, "the shadow did not answer every request"
            time.sleep(0.1)
        for attr in ("sleeve_length", "pattern", "neck"):
            assert _total(text, "progattr_predicted_class_total", attribute=attr, alias="champion", version=v1) >= n
            assert _total(text, "progattr_predicted_class_total", attribute=attr, alias="challenger", version=v2) == n
            assert _total(text, "progattr_prediction_confidence_count", attribute=attr, alias="challenger", version=v2) == n
            assert 0 <= _total(text, "progattr_shadow_agreements_total", attribute=attr, version=v2) <= n
            psi = _total(text, "progattr_prediction_psi", attribute=attr, alias="champion", version=v1)
            assert np.isfinite(psi) and psi >= 0
            rate = _total(text, "progattr_acceptance_rate", attribute=attr, alias="champion", version=v1)
            assert rate == (0.0 if attr == "pattern" else 1.0)  # helpers.CALIBRATION
        capsys.readouterr()
        assert cli(["registry", "show", "--article", "tops", "--set", f"mlflow.tracking_uri={served.tracking_uri}",
                    f"serving.metrics_url={served.url}/metrics"]) == 0
        live = json.loads(capsys.readouterr().out)["live"]
        shadow = live["challenger"]["as"]["challenger"]  # v2 was champion earlier (test_alias_swap): "as" splits it
        assert shadow["shadow_requests"] == n and set(shadow["attributes"]) == {"sleeve_length", "pattern", "neck"}
        assert all(0 <= a["agreement"] <= 1 and a["predictions"] == n for a in shadow["attributes"].values())
        assert "psi" in live["champion"]["as"]["champion"]["attributes"]["neck"]
        assert f"as challenger in shadow on {n} requests: " in live_line(live["challenger"])
    finally:
        set_alias(served.tracking_uri, "tops", "challenger", None)
