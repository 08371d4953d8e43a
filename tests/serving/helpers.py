"""Tiny registered models, made the way tasks/registry.py registers them (model/model.pt + model.json)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from progattr_core.model import ProgressiveResNet, save_model
from tasks.mlflow_store import Store, StoreConfig

ATTRIBUTES = {"sleeve_length": ["sleeveless", "short", "elbow", "three-quarter", "long"],
              "pattern": ["solid", "checked", "floral"], "neck": ["round", "v-neck", "boat", "halter"]}


def tiny_model(seed: int, size: int = 32) -> ProgressiveResNet:
    """An untrained ResNet-18 progressive model; different seeds give different predictions."""
    model = ProgressiveResNet("resnet18", "layer3", size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], seed=seed)
    for attr, classes in ATTRIBUTES.items():
        model.add_branch(attr, classes)
    return model.eval()


def register_versions(root: Path, article: str, seeds: list[int]) -> tuple[str, list[str]]:
    """(tracking URI, versions): one registered version of progattr-<article> per seed, under `root`."""
    uri = f"sqlite:///{root}/mlflow.db"
    store = Store(StoreConfig(uri, "progattr", (root / "artifacts").as_uri(), 2, 0.1))
    versions = []
    for seed in seeds:
        folder = root / f"model-{seed}" / "model"
        folder.mkdir(parents=True)
        model = tiny_model(seed)
        save_model(model, folder / "model.pt")
        (folder / "model.json").write_text(json.dumps(model.describe()))
        run_id = store.start_run(f"flow-{seed}", {"kind": "flow", "article": article})
        store.log_artifacts(run_id, folder, "model")
        versions.append(store.register(f"progattr-{article}", run_id, "model", {"article": article, "seed": seed}))
        store.finish_run(run_id)
    return uri, versions


def set_alias(uri: str, article: str, alias: str, version: str) -> None:
    store = Store(StoreConfig(uri, "progattr", None, 2, 0.1))
    store.set_alias(f"progattr-{article}", alias, version)


def png_bytes(width: int = 40, height: int = 52, seed: int = 0, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()
