"""Tiny in-memory fixtures for the core: a few dozen 32 px images with sparse labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from progattr_core.config import Params, load_params
from progattr_core.train import LabelledImages
from tests.paths import ROOT

TINY = ["model.arch=resnet18", "model.image_size=32", "train.batch_size=8", "train.epochs_first=1",
        "train.epochs_add=1", "train.epochs_finetune=1", "train.epochs_final=1", "baselines.epochs=2",
        "branch_add.epochs_add=1", "train.article=jeans", "synth.articles=[jeans]"]


@pytest.fixture
def tiny_params() -> Params:
    """The real params.yaml, shrunk: ResNet-18, 32 px, one epoch per stage, the 3-attribute article."""
    return load_params(ROOT / "params.yaml", TINY)


def make_images(params: Params, n: int, seed: int, full: float = 0.5) -> LabelledImages:
    """Images whose mean colour carries the labels (learnable), with ~half the cells missing."""
    rng = np.random.default_rng(seed)
    attrs = params.attributes(params.train.article)
    names = list(attrs)
    labels = np.stack([rng.integers(0, len(attrs[a]), n) for a in names], 1)
    size = params.model.image_size
    images = rng.integers(0, 64, (n, 3, size, size)).astype(np.uint8)
    for j, a in enumerate(names):
        images[:, j % 3, : size // 2, :] += (labels[:, j] * (150 // len(attrs[a]))).astype(np.uint8)[:, None, None]
    hide = (rng.random((n, len(names))) > 0.7) & (rng.random(n) > full)[:, None]
    labels[hide] = -1
    labels[labels[:, 0] < 0, 0] = 0  # every image labelled for something
    return LabelledImages.from_arrays(images, labels, names, {a: attrs[a] for a in names})


@pytest.fixture
def tiny_data(tiny_params: Params) -> LabelledImages:
    torch.manual_seed(0)
    return make_images(tiny_params, 40, seed=1)


@pytest.fixture
def tiny_val(tiny_params: Params) -> LabelledImages:
    return make_images(tiny_params, 24, seed=2)
