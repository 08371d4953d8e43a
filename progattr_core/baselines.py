"""The paper's baselines (section 4): one ResNet per attribute, and one multi-label ResNet.

Budget matching: every baseline model trains for `baselines.epochs` epochs over its own images with
the same backbone, image size, optimiser, LR ramp, LR schedule, augmentation and best-epoch rule as
the progressive stages (progattr_core.train.fit). `individual` model k sees A_k's labelled training
images; it is a one-Branch model (Base + Branch is the whole ResNet) split at `baselines.lr_grouping`,
which sets only its LR ramp's layer groups, so the baseline keeps its best grouping whatever split the
progressive model uses; `multilabel` (the paper's) sees only the fully-labelled images (it needs every label);
`multilabel_masked` sees every image labelled for any attribute and ignores the missing cells.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import Params
from .losses import class_weights
from .model import MultiLabelResNet, ProgressiveResNet, _seed_for, build_model
from .schedule import Stage, attribute_order
from .stages import train_stage
from .train import FitResult, FitSpec, LabelledImages, Progress, fit, lr_ramp


def train_individual(params: Params, data: LabelledImages, device: torch.device | str = "cpu",
                     val: LabelledImages | None = None, attributes: list[str] | None = None,
                     progress: Progress | None = None) -> tuple[dict[str, ProgressiveResNet], dict[str, FitResult]]:
    """One full ResNet per attribute (a one-Branch model: Base + Branch is exactly the whole ResNet)."""
    models, results = {}, {}
    for attr in attributes or attribute_order(params):
        models[attr], results[attr] = train_one_individual(params, data, attr, device, val, progress)
    return models, results


def train_one_individual(params: Params, data: LabelledImages, attribute: str,
                         device: torch.device | str = "cpu", val: LabelledImages | None = None,
                         progress: Progress | None = None) -> tuple[ProgressiveResNet, FitResult]:
    model = build_model(dataclasses.replace(params.model, split_point=params.baselines.lr_grouping), params.seed)
    stage = Stage(0, f"individual:{attribute}", "first", attribute, (attribute,), params.baselines.epochs,
                  1.0, False)
    result = train_stage(model, stage, data, params, params.seed, device, val, progress)
    return model, result


def _multilabel_loss(data: LabelledImages, model: MultiLabelResNet, masked: bool,
                     weights: dict[str, Tensor] | None) -> Callable:
    """The multi-label losses; with class `weights` each labelled (image, attribute) pair's cells weigh
    its class's weight, as a weighted cross-entropy weighs that image; without weights, the losses as before."""
    cuts = model.slices()
    index = {a: i for i, a in enumerate(data.attributes)}
    width = sum(len(c) for c in model.classes.values())

    def loss(outputs: dict[str, Tensor], y: Tensor) -> Tensor:
        logits = torch.cat([outputs[a] for a in model.classes], dim=1)
        target = torch.zeros(len(y), width, device=logits.device)
        mask = torch.zeros_like(target)
        for attr, cut in cuts.items():
            col = y[:, index[attr]]
            keep = col >= 0
            rows = torch.nonzero(keep).flatten()
            target[rows, cut.start + col[keep]] = 1.0
            w = 1.0 if weights is None else weights[attr].to(logits.device)[col[keep]][:, None]
            mask[rows, cut] = w
        if not masked:  # the paper: all classes one-hot, sigmoid, multi-label soft-margin loss
            if weights is None:
                return F.multilabel_soft_margin_loss(logits, target)
            cell = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            return (cell * mask).sum() / mask.sum().clamp_min(1e-12)  # the same mean, weighted
        cell = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return (cell * mask).sum() / mask.sum().clamp_min(1.0) * len(cuts)

    return loss


def train_multilabel(params: Params, data: LabelledImages, masked: bool, device: torch.device | str = "cpu",
                     val: LabelledImages | None = None, progress: Progress | None = None,
                     attributes: list[str] | None = None, epochs: int | None = None, name: str | None = None,
                     ) -> tuple[MultiLabelResNet, FitResult]:
    """`masked=False`: the paper's baseline on fully-labelled images; True: all images, masked BCE.
    By default over the training article's attributes for `baselines.epochs`."""
    model, spec = multilabel_spec(params, data, masked, attributes, epochs, name)
    result = fit(model.to(device), spec, data, params, torch.device(device), val, progress)
    return model, result


def multilabel_spec(params: Params, data: LabelledImages, masked: bool, attributes: list[str] | None = None,
                    epochs: int | None = None, name: str | None = None) -> tuple[MultiLabelResNet, FitSpec]:
    """The multi-label network and its FitSpec (pretraining fits it with its own epochs and checkpoints)."""
    order = attributes or attribute_order(params)
    name = name or ("multilabel_masked" if masked else "multilabel")
    m = params.model
    model = MultiLabelResNet(m.arch, {a: data.classes[a] for a in order}, m.image_size, m.mean, m.std,
                             m.init, params.seed, masked)
    groups = model.layer_groups()
    indices = data.labelled_for(order, every=not masked)
    spec = FitSpec(name, order, indices, groups, lr_ramp(len(groups), params.optimizer.lr, params.optimizer.lr_base_ratio),
                   _multilabel_loss(data, model, masked, class_weights(data, params.train.class_weighting)),
                   params.baselines.epochs if epochs is None else epochs, _seed_for(params.seed, name))
    return model, spec
