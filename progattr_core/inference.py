"""Encoded image bytes -> model input -> predictions, with the same decode and resize as training.

Shared by the HTTP service, the batch tagging flow and the serving benchmark, so all three
preprocess an image exactly as `progattr_core.data.arrays` did when the model was trained.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from progattr_core.config import ImageParams
from progattr_core.data.images import ImageRejected, decode_image, to_square_array
from progattr_core.predict import predict


class Refused(Exception):
    """An input that is refused: an HTTP-style status, a stable error code a client can branch on and
    a readable message (the service answers with them; batch tagging writes them to rejects.csv)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def classify_rejection(exc: ImageRejected) -> Refused:
    """Map the data layer's rejection reasons to a status and an error code a client can branch on."""
    reason = exc.reason
    if "decompression-bomb" in reason or "DecompressionBomb" in reason:
        return Refused(413, "decompression_bomb", reason)
    if reason.startswith("not an image"):
        return Refused(400, "not_an_image", reason)
    if reason.startswith("zero-byte"):
        return Refused(400, "empty_body", reason)
    return Refused(400, "undecodable_image", reason)


def image_array(data: bytes, limits: ImageParams, size: int, source: str = "") -> np.ndarray:
    """uint8 (3, size, size) from encoded image bytes; Refused if they are not a usable image."""
    if not data:
        raise Refused(400, "empty_body", "the request body is empty; send the image bytes")
    if len(data) > limits.max_bytes:
        raise Refused(413, "too_large", f"image is {len(data)} bytes, over data.image.max_bytes={limits.max_bytes}")
    try:
        return to_square_array(decode_image(data, limits, source), size)
    except ImageRejected as exc:
        raise classify_rejection(exc) from None


def predict_one(model: nn.Module, array: np.ndarray, top_k: int) -> dict[str, dict]:
    """Every attribute of one preprocessed image (the Base runs once), as JSON-ready dicts."""
    result = predict(model, array[None], top_k=top_k, batch_size=1)[0]
    return {attr: pred.to_dict() for attr, pred in result.items()}
