"""The real service: predictions equal in-process predict(), bad requests get their 4xx, auth, metrics."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from PIL import Image

from progattr_core.config import ImageParams
from progattr_core.data.images import decode_image, to_square_array
from progattr_core.predict import predict
from tests.serving.conftest import MAX_BODY, TOKEN
from tests.serving.helpers import png_bytes, tiny_model


def _expected(version_seed: int, data: bytes) -> dict:
    model = tiny_model(version_seed)
    x = to_square_array(decode_image(data, ImageParams(10**8, 10**8)), model.image_size)
    return {a: p.to_dict() for a, p in predict(model, x[None], top_k=3)[0].items()}


def _close(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for attr, w in want.items():
        assert got[attr]["label"] == w["label"]
        assert got[attr]["probability"] == pytest.approx(w["probability"], abs=1e-5)
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
