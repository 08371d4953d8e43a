"""The pure pieces of the service, in process: multipart parts, rejection codes, metric labels, CLI errors."""

from __future__ import annotations

import pytest

from progattr.cli import main
from progattr_core.data.images import ImageRejected
from progattr_core.inference import Refused, classify_rejection
from serving.app import _route_labels
from serving.multipart import MAX_PARTS, read_image_part

CT = "multipart/form-data; boundary=b0undary"


def _body(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, data, filename in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--b0undary\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + b"--b0undary--\r\n"


def test_multipart_prefers_the_image_part_then_the_first_file():
    binary = bytes(range(256)) * 3 + b"\r\n--b0und"  # CR/LF and a near-boundary inside the data survive
    assert read_image_part(_body(("x", b"1", None), ("f", b"file", "a.png"), ("image", binary, "b.png")), CT) == binary
    assert read_image_part(_body(("x", b"1", None), ("f", b"file", "a.png")), CT) == b"file"


@pytest.mark.parametrize("body,ctype,match", [
    (_body(("x", b"1", None)), CT, "no `image` part"),
    (_body(*[(f"f{i}", b"1", "a.png") for i in range(MAX_PARTS + 1)]), CT, "more than"),
    (b"--b0undary\r\nno headers end", CT, "malformed|no `image` part"),
    (_body(("image", b"1", None)), "multipart/form-data", "without a boundary"),
])
def test_bad_multipart_is_a_400(body, ctype, match):
    with pytest.raises(Refused, match=match) as info:
        read_image_part(body, ctype)
    assert (info.value.status, info.value.code) == (400, "bad_multipart")


@pytest.mark.parametrize("reason,status,code", [
    ("not an image (Pillow cannot identify the format)", 400, "not_an_image"),
    ("undecodable or truncated image: OSError: image file is truncated", 400, "undecodable_image"),
    ("image is 9000x9000 = 81000000 pixels, over data.image.max_pixels=40000000 (decompression-bomb guard)",
     413, "decompression_bomb"),
    ("undecodable or truncated image: DecompressionBombError: Image size exceeds limit", 413, "decompression_bomb"),
    ("zero-byte image file", 400, "empty_body"),
])
def test_rejections_map_to_status_and_code(reason, status, code):
    refused = classify_rejection(ImageRejected(reason, "upload"))
    assert (refused.status, refused.code, refused.message) == (status, code, reason)


def test_metric_labels_never_come_from_raw_paths():
    articles = ("tops",)
    assert _route_labels("/v1/articles/tops/predict", articles) == ("/v1/articles/{article}/predict", "tops")
    assert _route_labels("/v1/articles/anything-else/predict", articles) == ("/v1/articles/{article}/predict", "unknown")
    assert _route_labels("/etc/passwd", articles) == ("other", "")


def test_serve_refuses_an_article_outside_the_taxonomy(capsys):
    assert main(["serve", "--articles", "sarees", "--port", "1"]) == 2
    assert "unknown article 'sarees'" in capsys.readouterr().err
