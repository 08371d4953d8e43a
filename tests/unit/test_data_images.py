"""Image decoding: every mode becomes upright RGB; every bad file is an ImageRejected with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from progattr_core.config import ImageParams
from progattr_core.data.images import (
    ImageRejected,
    check_image_file,
    decode_image,
    read_image_bytes,
    to_square_array,
)
from tests.unit.data_helpers import image_bytes, params, write_image

LIMITS = params().data.image


def _decode(data: bytes, limits: ImageParams = LIMITS) -> Image.Image:
    return decode_image(data, limits, "test")


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "1"])
def test_modes_become_rgb(mode):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = _decode(image_bytes(img, fmt))
    assert out.mode == "RGB" and out.size == (12, 10)


def test_sixteen_bit_greyscale_is_rescaled_not_clipped():
    arr = np.full((8, 8), 32768, dtype=np.uint16)
    out = np.asarray(_decode(image_bytes(Image.fromarray(arr))))
    assert out.shape == (8, 8, 3) and abs(int(out[0, 0, 0]) - 127) <= 1


def test_palette_with_transparency_is_composited_over_white():
    img = Image.new("P", (6, 6), 0)
    img.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    out = np.asarray(_decode(image_bytes(img, "PNG", transparency=0)))
    assert (out == 255).all()  # fully transparent red -> white


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (30, 10), (0, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = _decode(image_bytes(img, "JPEG", exif=exif))
    assert out.size == (10, 30)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("P", (8, 8), i) for i in (1, 2, 3)]
    for f in frames:
        f.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert tuple(np.asarray(_decode(data))[0, 0]) == (255, 0, 0)


def test_bad_files_are_rejected_with_a_reason(tmp_path):
    good = write_image(tmp_path / "good.jpg", fmt="JPEG", size=(64, 64))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_bytes(b"this is not an image at all")
    cases = {"zero.jpg": "zero-byte", "text.jpg": "not an image", "truncated.jpg": "truncated",
             "missing.jpg": "not found"}
    for name, reason in cases.items():
        with pytest.raises(ImageRejected, match=reason) as err:
            check_image_file(tmp_path / name, LIMITS)
        assert reason in err.value.reason
    data, sha = check_image_file(good, LIMITS)
    assert len(sha) == 64 and data == good.read_bytes()


def test_decompression_bomb_and_oversized_files_are_rejected(tmp_path):
    big = image_bytes(Image.new("L", (400, 300)))  # tiny file, 120k pixels
    with pytest.raises(ImageRejected, match="decompression-bomb guard"):
        _decode(big, ImageParams(max_bytes=10**6, max_pixels=100_000))
    path = write_image(tmp_path / "a.png", size=(50, 50))
    with pytest.raises(ImageRejected, match="over data.image.max_bytes"):
        read_image_bytes(path, ImageParams(max_bytes=100, max_pixels=10**6))


def test_square_resize_pads_with_border_colour():
    img = Image.new("RGB", (60, 80), (250, 250, 250))
    img.paste((10, 20, 30), (20, 20, 40, 60))
    arr = to_square_array(img, 32)
    assert arr.shape == (3, 32, 32) and arr.dtype == np.uint8
    assert tuple(arr[:, 0, 0]) == (250, 250, 250)  # padding, not black
    assert tuple(arr[:, 16, 16]) == (10, 20, 30)
