"""The progressive model: a torchvision ResNet split into a shared Base and one Branch per attribute.

Paper section 3.1: the Base is the network's trunk; a Branch is a copy of the network's tail plus a
softmax classifier for one attribute. The Base runs once per batch; every Branch reads its features.
The backbones come from backbone.py; saving and loading is model_file.py.
"""

from __future__ import annotations

import copy
import logging
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .backbone import load_backbone, split_backbone
from .config import SPLIT_POINTS
from .errors import ModelError
from .model_init import ModelInit

log = logging.getLogger(__name__)



def _seed_for(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31)


def make_classifier(in_features: int, num_classes: int, seed: int) -> nn.Linear:
    """A Linear head initialised like torch's default, but from its own seeded generator."""
    layer = nn.Linear(in_features, num_classes)
    gen = torch.Generator().manual_seed(seed)
    bound = in_features**-0.5
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        layer.bias.uniform_(-bound, bound, generator=gen)
    return layer


class _Normalise(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


class AttributeModel(nn.Module):
    """What both model kinds share: input checks, normalisation, the class vocabularies."""

    kind = "abstract"

    def __init__(self, arch: str, image_size: int, mean: Sequence[float], std: Sequence[float], seed: int):
        super().__init__()
        self.arch, self.image_size, self.seed = arch, int(image_size), int(seed)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self.normalise = _Normalise(self.mean, self.std)
        self.classes: dict[str, list[str]] = {}
        # attribute -> AttributeCalibration.to_dict(): set when a version is registered (tasks/registry.py),
        # applied by progattr_core.predict; training and evaluation read the raw probabilities
        self.calibration: dict[str, dict[str, float]] = {}

    @property
    def attributes(self) -> dict[str, list[str]]:
        return dict(self.classes)

    def prepare(self, x: Tensor) -> Tensor:
        """uint8 (N,3,S,S) images -> normalised float; float input is taken as already normalised."""
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (
            self.image_size, self.image_size):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ModelError(f"expected images of shape (N, 3, {self.image_size}, {self.image_size}), got {shape}")
        return self.normalise(x) if x.dtype == torch.uint8 else x

    def _check_attributes(self, attributes: Sequence[str] | None) -> list[str]:
        if attributes is None:
            return list(self.classes)
        unknown = [a for a in attributes if a not in self.classes]
        if unknown:
            raise ModelError(f"unknown attribute(s) {unknown}; this model has {list(self.classes)}")
        return list(attributes)

    def check_vocabulary(self, vocab: dict[str, Sequence[str]]) -> None:
        """Raise if a class vocabulary disagrees with the model's (order matters: it is the label code)."""
        for attr, classes in vocab.items():
            if attr in self.classes and list(classes) != self.classes[attr]:
                raise ModelError(
                    f"attribute {attr!r}: data vocabulary {list(classes)} disagrees with the model's "
                    f"{self.classes[attr]} (same classes in the same order are required)")

    def probabilities(self, logits: dict[str, Tensor]) -> dict[str, Tensor]:
        return {a: torch.softmax(v, dim=1) for a, v in logits.items()}

    def describe(self) -> dict[str, Any]:
        out = {"kind": self.kind, "arch": self.arch, "image_size": self.image_size,
               "mean": self.mean, "std": self.std, "seed": self.seed,
               "attributes": [[a, list(c)] for a, c in self.classes.items()]}
        if self.calibration:
            out["calibration"] = {a: dict(c) for a, c in self.calibration.items() if a in self.classes}
        return out


class ProgressiveResNet(AttributeModel):
    """A ResNet split into a shared Base and per-attribute Branches (tail copy + classifier).

    Args:
        arch: torchvision ResNet name (resnet18 / resnet34 / resnet50).
        split_point: where the Base ends: layer2, layer3 (default in params) or layer4.1.
        image_size: square input size the model was built for.
        mean: per-channel normalisation mean (for 0-1 scaled RGB).
        std: per-channel normalisation std.
        init: scratch, imagenet, or a path to a saved progattr model / a torchvision ResNet state_dict.
        seed: seeds the scratch weights and every new classifier, so builds are reproducible.
        split_points: attribute -> an earlier split point for that attribute's Branch (`model.split_points`):
            it reads the Base's output at that layer and owns copies of the Base's later layers, taken when
            it is added (sharing less where sharing costs the attribute). Others read the Base's end.
    """

    kind = "progressive"

    def __init__(self, arch: str, split_point: str, image_size: int, mean: Sequence[float],
                 std: Sequence[float], init: str = "scratch", seed: int = 0,
                 split_points: Mapping[str, str] | None = None) -> None:
        super().__init__(arch, image_size, mean, std, seed)
        if split_point not in SPLIT_POINTS:
            raise ModelError(f"unknown split point {split_point!r}; allowed: {list(SPLIT_POINTS)}")
        self.split_point = split_point
        backbone = load_backbone(arch, init, seed)
        base, tail = split_backbone(backbone, split_point)
        self.base = nn.Sequential(OrderedDict(base))
        self.feature_dim = backbone.fc.in_features
        template = nn.Sequential(OrderedDict(tail)).requires_grad_(False)
        object.__setattr__(self, "tail_template", template)  # not a submodule: never trained
        # A scratch template is rebuilt from (arch, seed) on load, so saved files leave it out (a
        # third of a layer3 model's weights); an ImageNet or file-initialised one is saved with the model.
        self.template_from_seed = ModelInit.parse(init).kind == "scratch"
        self.branches = nn.ModuleDict()
        self.base_frozen = False
        self.split_points: dict[str, str] = {}
        self.plan_split_points(split_points or {})

    def plan_split_points(self, split_points: Mapping[str, str]) -> None:
        """Where the Branches of attributes not yet added will start (attribute -> split point no deeper
        than the Base's end); a Branch already added keeps its own."""
        depth = SPLIT_POINTS.index(self.split_point)
        for attr, point in split_points.items():
            if point not in SPLIT_POINTS or SPLIT_POINTS.index(point) > depth:
                raise ModelError(f"split point {point!r} for {attr!r}: allowed {list(SPLIT_POINTS[:depth + 1])} "
                                 f"(a Branch can start at the Base's end, {self.split_point}, or earlier)")
            if attr not in self.branches:
                self.split_points[attr] = point

    def branch_split(self, attribute: str) -> str:
        """Where `attribute`'s Branch reads the Base: its own split point, or the Base's end."""
        return self.split_points.get(attribute, self.split_point)

    def add_branch(self, attribute: str, classes: Sequence[str]) -> None:
        """Add Branch(attribute): a copy of the tail's initial weights plus a new softmax classifier; a
        Branch with an earlier split point (`split_points`) first copies the Base's layers after it."""
        classes = [str(c) for c in classes]
        if attribute in self.branches:
            raise ModelError(f"branch {attribute!r} already exists")
        if len(classes) < 2:
            raise ModelError(f"attribute {attribute!r} needs at least 2 classes, got {classes}")
        if len(set(classes)) != len(classes):
            raise ModelError(f"attribute {attribute!r} has duplicate class names: {classes}")
        if not attribute.isidentifier():
            raise ModelError(f"attribute name {attribute!r} must be a Python identifier (letters, digits, _)")
        point = self.branch_split(attribute)
        layers = list(self.base.named_children())
        own = layers[[n for n, _ in layers].index(point) + 1:] if point != self.split_point else []
        tail = nn.Sequential(OrderedDict([(n, copy.deepcopy(m)) for n, m in own] +
                                         [(n, copy.deepcopy(m)) for n, m in self.tail_template.named_children()]))
        tail.requires_grad_(True)
        head = make_classifier(self.feature_dim, len(classes), _seed_for(self.seed, attribute))
        branch = nn.Sequential(OrderedDict([("tail", tail), ("pool", nn.AdaptiveAvgPool2d(1)),
                                            ("flatten", nn.Flatten()), ("fc", head)]))
        device = next(self.base.parameters()).device
        self.branches[attribute] = branch.to(device)
        self.classes[attribute] = classes

    def forward(self, x: Tensor, attributes: Sequence[str] | None = None,
                rows: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Logits per attribute (all, or the named subset); the Base runs once.

        With `rows` (attribute -> boolean mask over the batch), each Branch runs only on its rows and
        returns logits for those rows only; a Branch with no row is left out, and one with a single
        row (too few for BatchNorm in training) runs on the whole batch."""
        return self.heads(self.trunk(self.prepare(x)), attributes, rows)

    def trunk(self, x: Tensor) -> dict[str, Tensor]:
        """The Base's outputs the Branches read, by split point: its end, and the earlier layers that a
        Branch with its own split point starts from. The Base runs once."""
        taps = set(self.trunk_points()) - {self.split_point}
        out = {}
        for name, module in self.base.named_children():
            x = module(x)
            if name in taps:
                out[name] = x
        out[self.split_point] = x
        return out

    def trunk_points(self) -> tuple[str, ...]:
        """The keys of `trunk`'s output: the split points the current Branches read."""
        return tuple(sorted({self.split_point, *(self.branch_split(a) for a in self.branches)}))

    def heads(self, features: Mapping[str, Tensor], attributes: Sequence[str] | None = None,
              rows: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The Branches on the Base's outputs (`trunk`'s; `forward` without the Base: frozen-Base training
        reuses them)."""
        names = self._check_attributes(attributes)
        if rows is None:
            return {a: self.branches[a](features[self.branch_split(a)]) for a in names}
        out = {}
        for a in names:
            f = features[self.branch_split(a)]
            n = int(rows[a].sum())
            if n:
                out[a] = self.branches[a](f[rows[a]] if 2 <= n < len(f) else f)
        return out

    def freeze_base(self) -> None:
        """Stop the Base learning: no gradients, and BatchNorm statistics stay fixed."""
        self.base.requires_grad_(False)
        self.base_frozen = True
        self.base.eval()

    def unfreeze_base(self) -> None:
        self.base.requires_grad_(True)
        self.base_frozen = False
        self.base.train(self.training)

    def train(self, mode: bool = True) -> ProgressiveResNet:
        super().train(mode)
        if self.base_frozen:
            self.base.eval()
        return self

    def layer_groups(self, attributes: Sequence[str]) -> list[list[nn.Parameter]]:
        """Parameters from the lowest Base layer to the Branches: the ramp of differential LRs."""
        groups = [list(self.base.conv1.parameters()) + list(self.base.bn1.parameters())]
        groups += [list(m.parameters()) for n, m in self.base.named_children() if n.startswith("layer")]
        groups.append([p for a in attributes for p in self.branches[a].parameters()])
        return groups

    def describe(self) -> dict[str, Any]:
        own = {a: self.split_points[a] for a in self.branches if self.branch_split(a) != self.split_point}
        return {**super().describe(), "split_point": self.split_point, **({"split_points": own} if own else {})}

    def extra_state(self) -> dict[str, Tensor]:
        return {} if self.template_from_seed else {"tail_template": self.tail_template.state_dict()}


class MultiLabelResNet(AttributeModel):
    """The multi-label baseline: one ResNet whose head has one output per (attribute, class).

    Args:
        arch: torchvision ResNet name.
        attributes: ordered mapping attribute -> class vocabulary; the head's outputs follow it.
        image_size: square input size.
        mean: normalisation mean.
        std: normalisation std.
        init: scratch, imagenet or a backbone path (as for ProgressiveResNet).
        seed: seeds scratch weights and the head.
        masked: recorded in the description (trained with per-cell masked BCE instead of the paper's loss).
    """

    kind = "multilabel"

    def __init__(self, arch: str, attributes: dict[str, Sequence[str]], image_size: int,
                 mean: Sequence[float], std: Sequence[float], init: str = "scratch", seed: int = 0,
                 masked: bool = False) -> None:
        super().__init__(arch, image_size, mean, std, seed)
        self.masked = bool(masked)
        for attr, classes in attributes.items():
            if len(classes) < 2:
                raise ModelError(f"attribute {attr!r} needs at least 2 classes, got {list(classes)}")
            self.classes[attr] = [str(c) for c in classes]
        backbone = load_backbone(arch, init, seed)
        width = sum(len(c) for c in self.classes.values())
        backbone.fc = make_classifier(backbone.fc.in_features, width, _seed_for(seed, "multilabel-head"))
        self.net = backbone

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for attr, classes in self.classes.items():
            out[attr] = slice(start, start + len(classes))
            start += len(classes)
        return out

    def forward(self, x: Tensor, attributes: Sequence[str] | None = None) -> dict[str, Tensor]:
        names = self._check_attributes(attributes)
        logits = self.net(self.prepare(x))
        cuts = self.slices()
        return {a: logits[:, cuts[a]] for a in names}

    def probabilities(self, logits: dict[str, Tensor]) -> dict[str, Tensor]:
        """Sigmoid per output (how it was trained), renormalised over the attribute's classes."""
        out = {}
        for a, v in logits.items():
            p = torch.sigmoid(v)
            out[a] = p / p.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return out

    def layer_groups(self, attributes: Sequence[str] | None = None) -> list[list[nn.Parameter]]:
        n = self.net
        return [list(n.conv1.parameters()) + list(n.bn1.parameters()), *[
            list(getattr(n, f"layer{i}").parameters()) for i in range(1, 5)], list(n.fc.parameters())]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "masked": self.masked}

    def extra_state(self) -> dict[str, Tensor]:
        return {}


def build_model(model_params: Any, seed: int = 0) -> ProgressiveResNet:
    """A branch-less ProgressiveResNet from the `model:` section of params."""
    return ProgressiveResNet(model_params.arch, model_params.split_point, model_params.image_size,
                             model_params.mean, model_params.std, model_params.init, seed,
                             model_params.split_points)


def weights_mb(model: nn.Module) -> float:
    """Megabytes (10^6 bytes) of what the model needs to predict: its state_dict's tensors (BatchNorm
    buffers included). A saved file can hold more: the tail template kept for adding Branches later
    (file- or ImageNet-initialised models), which is no part of the predicting model's size."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; nothing here assumes CUDA exists."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)
