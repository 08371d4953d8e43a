"""The bad-input corpus, made in code (every file a few hundred bytes): images Pillow reads in
unusual ways or not at all, and annotation tables with the classic mistakes."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _rgb(seed: int, size: tuple[int, int] = (24, 20)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels, with one tiny compressed row: ~100 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b"")


def _exif_rotated(seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return _save(_rgb(seed, (40, 20)), "JPEG", exif=exif.tobytes())


def _palette_with_transparency(seed: int) -> bytes:
    img = _rgb(seed).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return _save(img, "PNG", transparency=0)


def _sixteen_bit(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 65535, (20, 24), dtype=np.uint16)
    return _save(Image.fromarray(arr), "PNG")  # mode I;16


def _animated_gif(seed: int) -> bytes:
    frames = [_rgb(seed + i).convert("P") for i in range(3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def _truncated_jpeg(seed: int) -> bytes:
    data = _save(_rgb(seed, (64, 64)), "JPEG")
    return data[: len(data) // 2]


# name -> (bytes, None if it must import, else the rejects-file kind)
def image_corpus() -> dict[str, tuple[bytes, str | None]]:
    return {
        "good.png": (_save(_rgb(1), "PNG"), None),
        "cmyk.jpg": (_save(_rgb(2).convert("CMYK"), "JPEG"), None),
        "grey16.png": (_sixteen_bit(3), None),
        "palette_alpha.png": (_palette_with_transparency(4), None),
        "exif_rotated.jpg": (_exif_rotated(5), None),
        "animated.gif": (_animated_gif(6), None),
        "zero.png": (b"", "image zero-byte"),
        "truncated.jpg": (_truncated_jpeg(7), "image undecodable or truncated"),
        "not_an_image.png": (b"%PDF-1.4 this is a PDF, not a picture\n", "image not an image"),
        "bomb.png": (_png_bomb(8000, 8000), "image too large (pixels)"),            # our guard: 64M > 40M pixels
        "huge_bomb.png": (_png_bomb(200000, 200000), "image too large (pixels)"),  # Pillow's own guard
    }


def write_images(folder: Path, corpus: dict[str, tuple[bytes, str | None]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, _) in corpus.items():
        (folder / name).write_bytes(data)
    return folder
