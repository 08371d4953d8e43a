"""Inference: every attribute of every image, computing the Base once per batch.

A registered model carries its per-attribute calibration (progattr_core.calibration): its probabilities
are tempered, and an answer is `accepted` when its probability reaches the attribute's threshold (the
one that reached `serving.target_precision` on validation). A model without one answers raw
probabilities and accepts everything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .calibration import temper
from .data.arrays import CachedImages


@dataclass(frozen=True)
class AttributePrediction:
    label: str
    probability: float
    top_k: list[tuple[str, float]]
    accepted: bool = True              # probability >= the attribute's calibrated threshold

    def to_dict(self) -> dict:
        return {"label": self.label, "probability": self.probability, "accepted": self.accepted,
                "top_k": [{"label": lab, "probability": p} for lab, p in self.top_k]}


def _as_tensor(images: np.ndarray | Tensor | CachedImages) -> Tensor | CachedImages:
    """Images as something sliced batch by batch: a tensor, or the decode cache's reader as it is."""
    if isinstance(images, (Tensor, CachedImages)):
        return images
    return torch.from_numpy(np.ascontiguousarray(images))


@torch.inference_mode()
def predict_proba(model: nn.Module, images: np.ndarray | Tensor | CachedImages, batch_size: int = 64,
                  device: torch.device | str = "cpu", attributes: Sequence[str] | None = None,
                  calibrated: bool = True) -> dict[str, np.ndarray]:
    """Class probabilities per attribute, N x K each, for uint8 (N, 3, S, S) images; tempered by the
    model's calibration unless `calibrated=False` (training and evaluation fit on the raw ones)."""
    images = _as_tensor(images)
    was_training = model.training
    model.eval().to(device)
    names = list(attributes) if attributes is not None else list(model.classes)
    chunks: dict[str, list[np.ndarray]] = {a: [] for a in names}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device)
        probs = model.probabilities(model(batch, names))
        for a in names:
            chunks[a].append(probs[a].float().cpu().numpy())
    model.train(was_training)
    empty = {a: np.zeros((0, len(model.classes[a])), dtype=np.float32) for a in names}
    out = {a: np.concatenate(chunks[a]) if chunks[a] else empty[a] for a in names}
    calibration = getattr(model, "calibration", {}) if calibrated else {}
    return {a: temper(p, calibration[a]["temperature"]) if a in calibration else p for a, p in out.items()}


def predict(model: nn.Module, images: np.ndarray | Tensor | CachedImages, top_k: int = 3, batch_size: int = 64,
            device: torch.device | str = "cpu") -> list[dict[str, AttributePrediction]]:
    """For each image and attribute: the label, its (calibrated) probability, the top-k (label,
    probability) and whether it is accepted."""
    probs = predict_proba(model, images, batch_size, device)
    out: list[dict[str, AttributePrediction]] = [{} for _ in range(len(_as_tensor(images)))]
    calibration = getattr(model, "calibration", {})
    for attr, p in probs.items():
        classes = model.classes[attr]
        k = min(top_k, len(classes))
        threshold = calibration[attr]["threshold"] if attr in calibration else 0.0
        order = np.argsort(-p, axis=1, kind="stable")[:, :k]
        for i, row in enumerate(order):
            top = [(classes[j], float(p[i, j])) for j in row]
            out[i][attr] = AttributePrediction(top[0][0], top[0][1], top, top[0][1] >= threshold)
    return out
