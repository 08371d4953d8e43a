"""torchvision ResNets, the progressive model's raw material: build one from `model.init` (from scratch
with a seed, with ImageNet weights, or from the weights of a saved file; model_init.ModelInit tells the
forms apart) and split it into Base and tail."""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
import torchvision
from torch import Tensor, nn

from .config import ARCHS, SPLIT_POINTS
from .errors import ModelError, WeightsUnavailableError
from .model_init import ModelInit, imagenet_weights


def seeded_backbone(arch: str, seed: int) -> torchvision.models.ResNet:
    if arch not in ARCHS:
        raise ModelError(f"unknown architecture {arch!r}; allowed: {list(ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return getattr(torchvision.models, arch)(weights=None)


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
    start = ModelInit.parse(init)
    if start.kind == "scratch":
        return seeded_backbone(arch, seed)
    if start.kind == "imagenet":
        return imagenet_backbone(arch)
    from .model_file import backbone_state  # the file format module builds models from this one

    backbone = seeded_backbone(arch, seed)
    state = backbone_state(start.path)
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("fc.")]:
        raise ModelError(f"{start.path}: not a {arch} backbone (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return backbone
