"""Small builders shared by the data-layer tests: real params, tiny images written under tmp_path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from progattr_core.config import Params, load_params
from tests.paths import ROOT


def params(*overrides: str) -> Params:
    return load_params(ROOT / "params.yaml", list(overrides))


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (20, 24), mode: str = "RGB", fmt: str = "PNG") -> Path:
    """A small random image (distinct per seed) written at `path`."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


def image_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()
