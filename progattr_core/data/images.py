"""Image files: checks, decoding to RGB, content hashes and the square resize the model sees.

Every way an image can be bad (missing, zero bytes, too large, not an image, truncated, a
decompression bomb) raises ImageRejected with a short reason, so importers put it in the rejects
file instead of crashing.
"""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..config import ImageParams
from ..errors import DataValidationError

# How the square model input is made: pad to a square with the mean border colour (catalogue photos are
# portrait on a plain background; padding keeps the garment's proportions), then a bilinear resize,
# which Pillow antialiases when shrinking. Part of the decode-cache key: change it, change the tag.
RESIZE_TAG = "pad-bilinear-v1"

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


class ImageRejected(DataValidationError):
    """An image that cannot be used; `reason` is the short text written to the rejects file."""

    def __init__(self, reason: str, source: str = ""):
        super().__init__(f"{source}: {reason}" if source else reason)
        self.reason = reason


def read_image_bytes(path: str | Path, limits: ImageParams) -> bytes:
    """The file's bytes, rejecting missing, zero-byte and over-large files before reading them."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageRejected("image file not found", str(path)) from None
    if size == 0:
        raise ImageRejected("zero-byte image file", str(path))
    if size > limits.max_bytes:
        raise ImageRejected(f"image file is {size} bytes, over data.image.max_bytes={limits.max_bytes}", str(path))
    return path.read_bytes()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, limits: ImageParams, source: str = "") -> Image.Image:
    """Fully decode to an upright RGB image (first frame of an animation; alpha over white)."""
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > limits.max_pixels:
            raise ImageRejected(
                f"image is {width}x{height} = {width * height} pixels, over data.image.max_pixels="
                f"{limits.max_pixels} (decompression-bomb guard)", source)
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img) or img
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own guard fires at open, before ours
        raise ImageRejected(f"{exc} (decompression-bomb guard, data.image.max_pixels={limits.max_pixels})",
                            source) from None
    except Image.UnidentifiedImageError:
        raise ImageRejected("not an image (Pillow cannot identify the format)", source) from None
    except _DECODE_ERRORS as exc:
        raise ImageRejected(f"undecodable or truncated image: {type(exc).__name__}: {exc}", source) from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB from any Pillow mode: 16/32-bit greyscale rescaled, palette/alpha composited over white."""
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
        if mode != "F" and arr.max(initial=0) > 255:
            arr = arr / 257.0  # 16-bit range -> 8-bit
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def to_square_array(img: Image.Image, size: int) -> np.ndarray:
    """uint8 (3, size, size): pad to a square with the mean border colour, then resize (see RESIZE_TAG)."""
    width, height = img.size
    if width != height:
        arr = np.asarray(img)
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        fill = tuple(int(v) for v in border.mean(axis=0).round())
        side = max(width, height)
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(img, ((side - width) // 2, (side - height) // 2))
        img = canvas
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


def check_image_file(path: str | Path, limits: ImageParams) -> tuple[bytes, str]:
    """(bytes, sha256) of an image that fully decodes; ImageRejected otherwise (used by importers)."""
    data = read_image_bytes(path, limits)
    decode_image(data, limits, str(path))
    return data, sha256_bytes(data)
