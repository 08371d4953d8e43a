"""A saved model: one self-describing file (`progattr-model/1`: config, weights, extra state),
written atomically and loaded with `weights_only=True` and no defaults from code."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from .backbone import FORMAT
from .errors import ModelError
from .model import AttributeModel, MultiLabelResNet, ProgressiveResNet


def atomic_save(obj: Any, path: str | Path) -> Path:
    """Write then rename, so a crash or a full disk never leaves a half-written file in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except RuntimeError as exc:  # torch's zip writer reports a failed write (full disk, size limit) so
        raise OSError(f"could not write {path} (disk full or file size limit?): {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def model_blob(model: AttributeModel) -> dict[str, Any]:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    extra = {k: {n: t.detach().cpu() for n, t in v.items()} for k, v in model.extra_state().items()}
    return {"format": FORMAT, "config": model.describe(), "state_dict": state, "extra": extra}


def save_model(model: AttributeModel, path: str | Path) -> Path:
    """One self-describing file: config + weights, loadable with weights_only=True."""
    return atomic_save(model_blob(model), path)


def model_from_blob(blob: dict[str, Any], source: str = "<blob>") -> AttributeModel:
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{source}: not a {FORMAT} file")
    cfg = blob["config"]
    vocab = {a: c for a, c in cfg["attributes"]}
    if cfg["kind"] == "progressive":
        model: AttributeModel = ProgressiveResNet(cfg["arch"], cfg["split_point"], cfg["image_size"],
                                                   cfg["mean"], cfg["std"], "scratch", cfg["seed"],
                                                   cfg.get("split_points"))
        if "tail_template" in blob["extra"]:  # else: rebuilt from the seed by the constructor above
            model.tail_template.load_state_dict(blob["extra"]["tail_template"])
            model.template_from_seed = False
        for attr, classes in vocab.items():
            model.add_branch(attr, classes)
    elif cfg["kind"] == "multilabel":
        model = MultiLabelResNet(cfg["arch"], vocab, cfg["image_size"], cfg["mean"], cfg["std"],
                                 "scratch", cfg["seed"], cfg["masked"])
    else:
        raise ModelError(f"{source}: unknown model kind {cfg['kind']!r}")
    model.load_state_dict(blob["state_dict"])
    model.calibration = {a: dict(c) for a, c in cfg.get("calibration", {}).items()}
    return model.eval()


def load_model(path: str | Path, map_location: str = "cpu") -> AttributeModel:
    """Rebuild a saved model from its own description (no defaults from code), weights_only=True."""
    blob = torch.load(path, map_location=map_location, weights_only=True)
    return model_from_blob(blob, str(path))


def weights_digest(model: AttributeModel) -> str:
    """sha256 of every weight and buffer (name, dtype, shape, bytes, in name order): equal exactly when
    the weights are, whatever file they were saved in (the file also holds a description and may
    carry a template: a byte hash of it would compare those too)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()
