"""Inference: every attribute of every image, computing the Base once per batch.

A registered model carries its per-attribute calibration (progattr_core.calibration): its probabilities
are tempered, and an answer is `accepted` when its probability reaches the attribute's threshold (the
one that reached `serving.target_precision` on validation). A model without one answers raw
probabilities and accepts everything."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .calibration import temper
from .data.arrays import CachedImages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttributePrediction:
    label: str
    probability: float
    top_k: list[tuple[str, float]]
    accepted: bool = True              # probability >= the attribute's calibrated threshold

    def to_dict(self) -> dict:
        return {"label": self.label, "probability": self.probability, "accepted": self.accepted,
                "top_k": [{"label": lab, "probability": p} for lab, p in self.top_k]}


# px from which a model answering batches keeps its weights channels-last: ~1.4x faster for batches of 16 at
# 224 px here (ResNet-18, 7 Branches: 544-561 -> 387-406 ms), slower at 64 px, and slower for one image at a time
# (serving: 55-57 -> 68-73 ms)
CHANNELS_LAST_FROM = 128


def for_inference(model: nn.Module, batched: bool) -> nn.Module:
    """A copy of `model` in eval mode for answering only (tagging, serving: never trained again), faster on a
    CPU: each BatchNorm folded into the convolution before it and, for a model that answers batches (`batched`:
    tagging) from CHANNELS_LAST_FROM px, the weights in channels-last order. Its probabilities match the
    model's to ~1e-6: checked on two random images, and the model itself (in eval mode) is returned where they
    do not (a layout this folding does not know)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    fast = copy.deepcopy(model)
    for parent in fast.modules():
        names = list(parent._modules)
        for conv, norm in zip(names, names[1:], strict=False):  # Sequential order: conv then its norm
            a, b = parent._modules[conv], parent._modules[norm]
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and a.out_channels == b.num_features:
                parent._modules[conv], parent._modules[norm] = fuse_conv_bn_eval(a, b), nn.Identity()
    size = getattr(model, "image_size", 0)
    if batched and size >= CHANNELS_LAST_FROM:
        fast = fast.to(memory_format=torch.channels_last)
    probe = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    probe = probe.to(next(model.parameters()).device)
    with torch.inference_mode():
        want, got = model.probabilities(model(probe)), fast.probabilities(fast(probe))
    if all(torch.allclose(want[a], got[a], atol=1e-4) for a in want):
        return fast
    log.warning("the model answers differently with BatchNorm folded (a layout the folding does not know): "
                "answering with it as built")
    return model


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
