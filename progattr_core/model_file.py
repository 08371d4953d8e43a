"""The one saved-file format: every file progattr writes weights to, and the one reader of them.

Each is a dict with `format: progattr-model/1`, written atomically (`atomic_save`) and read with
`weights_only=True` (`read`: no code runs on load) and no defaults from code:
- a model (`save_model`, `load_model`): config, weights, extra state (the registered file);
- a stage checkpoint (`save_checkpoint`, `load_checkpoint`): a model and the schedule stage that made it;
- a fit state (`save_fit_state`, `load_fit_state`): what `train.fit` needs to continue an interrupted fit
  (pretraining's per-epoch checkpoint);
- and, for `model.init`, a backbone's weights (`backbone_state`) from a saved model (its Base and tail)
  or from a torchvision ResNet state_dict as it is."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .backbone import tail_template_state
from .errors import ModelError
from .model import AttributeModel, MultiLabelResNet, ProgressiveResNet

if TYPE_CHECKING:
    from .schedule import Stage
    from .train import FitResult

FORMAT = "progattr-model/1"


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


def read(path: str | Path, map_location: str = "cpu") -> Any:
    """A saved file's content, loaded with weights_only=True (a file carrying code fails here, unrun)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def _checked(blob: Any, source: str, *kinds: str) -> dict[str, Any]:
    """`blob` if it is a saved file of one of `kinds` (a model and a checkpoint both hold a model)."""
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{source}: not a {FORMAT} file")
    kind = blob.get("kind", "checkpoint" if "stage" in blob else "model")  # files saved before `kind`: by content
    if kind not in kinds:
        raise ModelError(f"{source}: a {kind.replace('_', ' ')} file, not a {' or '.join(kinds).replace('_', ' ')}")
    return blob


def model_blob(model: AttributeModel) -> dict[str, Any]:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    extra = {k: {n: t.detach().cpu() for n, t in v.items()} for k, v in model.extra_state().items()}
    return {"format": FORMAT, "config": model.describe(), "state_dict": state, "extra": extra}


def save_model(model: AttributeModel, path: str | Path) -> Path:
    """One self-describing file: config + weights, loadable with weights_only=True."""
    return atomic_save(model_blob(model), path)


def model_from_blob(blob: dict[str, Any], source: str = "<blob>") -> AttributeModel:
    cfg = _checked(blob, source, "model", "checkpoint")["config"]
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
    return model_from_blob(_checked(read(path, map_location), str(path), "model", "checkpoint"), str(path))


def save_checkpoint(path: str | Path, model: ProgressiveResNet, stage: Stage,
                    result: FitResult | None = None) -> Path:
    """The model after `stage` (weights + self-description) and the stage that produced it."""
    blob = {**model_blob(model), "kind": "checkpoint", "stage": stage.to_dict(),
            "result": {k: v for k, v in (result.to_dict() if result else {}).items()
                       if k in ("seconds", "image_passes", "epoch_losses")}}
    return atomic_save(blob, path)


def load_checkpoint(path: str | Path) -> tuple[ProgressiveResNet, dict[str, Any]]:
    """(model, stage dict) from a checkpoint; continue with stages[stage['index'] + 1:]."""
    blob = _checked(read(path), str(path), "checkpoint")
    model = model_from_blob(blob, str(path))
    if not isinstance(model, ProgressiveResNet):
        raise ModelError(f"{path}: a {model.kind} model, not a progressive stage checkpoint")
    return model, blob["stage"]


def save_fit_state(path: str | Path, state: dict[str, Any]) -> Path:
    """`train.fit`'s state after an epoch (its `on_epoch_end` hook's argument)."""
    return atomic_save({"format": FORMAT, "kind": "fit_state", **state}, path)


def load_fit_state(path: str | Path) -> dict[str, Any]:
    """What `fit(..., resume=...)` continues from."""
    blob = dict(_checked(read(path), str(path), "fit_state"))
    del blob["format"], blob["kind"]
    return blob


def backbone_state(path: Path) -> dict[str, Tensor]:
    """A torchvision ResNet state_dict (without `fc`) from a saved progattr model (its Base + tail
    template) or from a ResNet state_dict as it is: what a `model.init` file gives a new model."""
    blob = read(path)
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        cfg = blob["config"]
        if cfg["kind"] == "multilabel":
            return {k[len("net."):]: v for k, v in blob["state_dict"].items() if k.startswith("net.") and
                    not k.startswith("net.fc.")}
        state = {k[len("base."):]: v for k, v in blob["state_dict"].items() if k.startswith("base.")}
        tail = blob["extra"].get("tail_template") or tail_template_state(cfg["arch"], cfg["split_point"], cfg["seed"])
        if cfg["split_point"] == "layer4.1":
            n_blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layer4."))
            state.update({f"layer4.{n_blocks}.{k.split('.', 1)[1]}": v for k, v in tail.items()})
        else:
            state.update(tail)
        return state
    if isinstance(blob, dict) and all(isinstance(v, Tensor) for v in blob.values()):
        return {k: v for k, v in blob.items() if not k.startswith("fc.")}
    raise ModelError(f"{path}: neither a progattr model nor a ResNet state_dict")


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
