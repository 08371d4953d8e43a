"""torchvision ResNets, the progressive model's raw material: build one (from scratch with a seed,
with ImageNet weights, or from the weights of a saved model file) and split it into Base and tail."""

from __future__ import annotations

import functools
import hashlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from .config import ARCHS, SPLIT_POINTS
from .errors import ModelError, WeightsUnavailableError

FORMAT = "progattr-model/1"  # a saved model file's format (model_file.py); read here to start from one


def seeded_backbone(arch: str, seed: int) -> torchvision.models.ResNet:
    if arch not in ARCHS:
        raise ModelError(f"unknown architecture {arch!r}; allowed: {list(ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return getattr(torchvision.models, arch)(weights=None)


def imagenet_weights(arch: str) -> tuple[str, Path]:
    """(url, local file) of torchvision's ImageNet weights for `arch`: where torchvision downloads them
    to and reads them from ($TORCH_HOME/hub/checkpoints); the file may not exist yet."""
    weights = getattr(torchvision.models, f"ResNet{arch.removeprefix('resnet')}_Weights").DEFAULT
    return weights.url, Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]


def imagenet_backbone(arch: str) -> torchvision.models.ResNet:
    """torchvision's ImageNet weights; offline, a clear message naming the file and TORCH_HOME."""
    weights = getattr(torchvision.models, f"ResNet{arch.removeprefix('resnet')}_Weights").DEFAULT
    try:
        return getattr(torchvision.models, arch)(weights=weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a corrupt file a RuntimeError
        url, file = imagenet_weights(arch)
        raise WeightsUnavailableError(
            f"cannot load ImageNet weights for {arch} ({type(exc).__name__}: {exc}). Offline, download "
            f"{url} elsewhere and place it at {file} (the folder is $TORCH_HOME/hub/"
            f"checkpoints; TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}), or use "
            f"model.init=scratch"
        ) from None


def split_backbone(backbone: torchvision.models.ResNet, split_point: str) -> tuple[list, list]:
    """(base, tail) lists of (name, module). `layer4.1`: the Branch is layer4's last block only."""
    stem = [("conv1", backbone.conv1), ("bn1", backbone.bn1), ("relu", backbone.relu),
            ("maxpool", backbone.maxpool)]
    layers = [(f"layer{i}", getattr(backbone, f"layer{i}")) for i in range(1, 5)]
    if split_point == "layer2":
        return stem + layers[:2], layers[2:]
    if split_point == "layer3":
        return stem + layers[:3], layers[3:]
    if split_point == "layer4.1":
        blocks = list(backbone.layer4.children())
        return stem + layers[:3] + [("layer4", nn.Sequential(*blocks[:-1]))], [("layer4_last", blocks[-1])]
    raise ModelError(f"unknown split point {split_point!r}; allowed: {list(SPLIT_POINTS)}")


def tail_template_state(arch: str, split_point: str, seed: int) -> dict[str, Tensor]:
    """The initial weights a scratch model's new Branches start from, rebuilt from (arch, seed)."""
    _, tail = split_backbone(seeded_backbone(arch, seed), split_point)
    return nn.Sequential(OrderedDict(tail)).state_dict()


def load_backbone(arch: str, init: str, seed: int) -> torchvision.models.ResNet:
    if arch not in ARCHS:
        raise ModelError(f"unknown architecture {arch!r}; allowed: {list(ARCHS)}")
    if init == "scratch":
        return seeded_backbone(arch, seed)
    if init == "imagenet":
        return imagenet_backbone(arch)
    path = Path(init)
    if not path.is_file():
        raise ModelError(f"model.init={init!r} is neither 'scratch', 'imagenet' nor an existing file")
    backbone = seeded_backbone(arch, seed)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = _backbone_state_from(blob, path)
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("fc.")]:
        raise ModelError(f"{path}: not a {arch} backbone (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return backbone


def _backbone_state_from(blob: Any, path: Path) -> dict[str, Tensor]:
    """A torchvision ResNet state_dict from a saved progattr model (its Base + tail template) or as is."""
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


def init_identity(init: str) -> str:
    """What a model starts from, as part of a training's identity: `scratch` and `imagenet` as they
    are (torchvision names one ImageNet weight file per architecture), a file by the sha256 of its
    content, so a backbone pretrained again at the same path makes a new training, not a resume."""
    if init in ("scratch", "imagenet"):
        return init
    path = Path(init)
    if not path.is_file():
        raise ModelError(f"model.init={init!r} is neither 'scratch', 'imagenet' nor an existing file")
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    """A run asks for its backbone's identity several times (training and baseline keys, the
    registered version's tags): hashed once per file version (its mtime and size are in the key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
