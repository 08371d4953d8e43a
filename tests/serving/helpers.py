"""Tiny registered models, made the way tasks/registry.py registers them (model/model.pt + model.json)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from progattr_core.calibration import NEVER
from progattr_core.model import ProgressiveResNet
from progattr_core.model_file import save_model
from tracking.registry import Registry
from tracking.store import Store, StoreConfig

ATTRIBUTES = {"sleeve_length": ["sleeveless", "short", "elbow", "three-quarter", "long"],
              "pattern": ["solid", "checked", "floral"], "neck": ["round", "v-neck", "boat", "halter"]}
# what registration stores (progattr_core.calibration): sleeve_length and neck accept every answer (neck's
# probabilities sharpened by T=0.5), pattern none (its target precision was never reached): every answer
# of pattern goes to review, and the acceptance rates are 1, 0 and 1
CALIBRATION = {"sleeve_length": {"temperature": 1.0, "threshold": 0.0, "target_precision": 0.9},
               "pattern": {"temperature": 1.0, "threshold": NEVER, "target_precision": 0.9},
               "neck": {"temperature": 0.5, "threshold": 0.0, "target_precision": 0.9}}


def tiny_model(seed: int, size: int = 32) -> ProgressiveResNet:
    """An untrained ResNet-18 progressive model with CALIBRATION; different seeds give different predictions."""
    model = ProgressiveResNet("resnet18", "layer3", size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], seed=seed)
    for attr, classes in ATTRIBUTES.items():
        model.add_branch(attr, classes)
    model.calibration = {a: dict(c) for a, c in CALIBRATION.items()}
    return model.eval()


def _store(uri: str, root: Path | None = None) -> Store:
    return Store(StoreConfig(uri, "progattr", (root / "artifacts").as_uri() if root else None, 2, 0.1))


def register_folder(uri: str, root: Path, article: str, folder: Path, tags: dict) -> str:
    """A new version of progattr-<article> whose files are `folder` (model.pt, model.json)."""
    store = _store(uri, root)
    run_id = store.start_run(f"flow-{folder.parent.name}", {"kind": "flow", "article": article})
    store.log_artifacts(run_id, folder, "model")
    version = Registry.of(store.cfg).register(f"progattr-{article}", run_id, {"article": article, **tags})
    store.finish_run(run_id)
    return version


def register_versions(root: Path, article: str, seeds: list[int]) -> tuple[str, list[str]]:
    """(tracking URI, versions): one registered version of progattr-<article> per seed, under `root`."""
    uri = f"sqlite:///{root}/mlflow.db"
    versions = []
    for seed in seeds:
        folder = root / f"model-{seed}" / "model"
        folder.mkdir(parents=True)
        model = tiny_model(seed)
        save_model(model, folder / "model.pt")
        (folder / "model.json").write_text(json.dumps(model.describe()))
        # the drift reference tasks/registry.py records: here, every class equally often
        mix = {f"predicted_mix.{a}": json.dumps({c: 1 / len(cs) for c in cs}) for a, cs in ATTRIBUTES.items()}
        versions.append(register_folder(uri, root, article, folder, {"seed": seed, **mix}))
    return uri, versions


def set_alias(uri: str, article: str, alias: str, version: str) -> None:
    Registry(uri).move_alias(f"progattr-{article}", alias, version)


def png_bytes(width: int = 40, height: int = 52, seed: int = 0, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()
