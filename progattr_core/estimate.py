"""How long a training run will take on this machine, said before it starts.

The work is counted exactly from the labels (image passes per progressive stage and per baseline
model, as `train.fit` will make them); the cost of a pass is measured here, in a few seconds, by
timing training steps of the configured network with one and with two Branches. Machines of the
same kind differ by ~3x, so a fixed number of minutes in the docs would be wrong on most of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .config import Params
from .model import build_model
from .schedule import attribute_order, build_schedule

# Per pass, the frozen-Base final stage runs the Base forward only (no backward, no update): about a
# third of its training cost. Evaluation passes (best-epoch selection, the test split) likewise.
FORWARD_SHARE = 1 / 3


@dataclass(frozen=True)
class Throughput:
    """Seconds per image for one training pass of the whole network, and the Branch's share of it."""

    seconds_per_image: float
    branch_share: float

    @property
    def images_per_second(self) -> float:
        return 1.0 / self.seconds_per_image

    def pass_cost(self, branches: int, frozen_base: bool = False, train: bool = True) -> float:
        """Seconds for one image through the Base and `branches` Branches."""
        base = (1 - self.branch_share) * (FORWARD_SHARE if frozen_base or not train else 1.0)
        return self.seconds_per_image * (base + branches * self.branch_share * (1.0 if train else FORWARD_SHARE))


def measure_throughput(params: Params, steps: int = 6, warmup: int = 2) -> Throughput:
    """Time `steps` training steps (after `warmup` untimed ones) at the configured arch, split, image
    size and batch size, with one Branch and with two; the median step; a few seconds at 64 px."""
    size, batch = params.model.image_size, params.train.batch_size
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=gen)
    y = torch.randint(0, 2, (batch,), generator=gen)
    # the weights do not change the speed: never load model.init (an ImageNet download, a backbone file, or a
    # models:/ reference only the pipeline's context resolves)
    model = build_model(replace(params.model, init="scratch"), 0)
    seconds = []
    for names in (["a"], ["a", "b"]):
        for name in names:
            if name not in model.classes:
                model.add_branch(name, ["x", "y"])
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        model.train()
        times = []
        for _ in range(warmup + steps):
            start = time.perf_counter()
            out = model(x, names)
            loss = sum(F.cross_entropy(out[n], y) for n in names)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
        seconds.append(float(np.median(times[warmup:])) / batch)
    one, two = seconds
    return Throughput(one, float(np.clip((two - one) / one, 0.0, 1.0)))


@dataclass(frozen=True)
class Work:
    """One training run the pipeline will make: image passes (training) and evaluated images
    (best-epoch selection on the validation split after each epoch), with Branches per pass."""

    name: str
    passes: int
    branches: int
    frozen_base: bool = False
    evaluated: int = 0

    def seconds(self, throughput: Throughput) -> float:
        return (self.passes * throughput.pass_cost(self.branches, self.frozen_base)
                + self.evaluated * throughput.pass_cost(self.branches, train=False))


def planned_work(params: Params, article: str, labelled: np.ndarray, n_val: int) -> list[Work]:
    """Every progressive stage and baseline model of a training flow run, with its image passes.

    `labelled` is the training split's (N, A) mask of labelled cells, columns in taxonomy order;
    `n_val` the validation images, evaluated after each epoch of a run of more than one epoch when
    `train.select_best_epoch` is on (as `train.fit` does)."""
    attrs = list(params.attributes(article))
    col = {a: labelled[:, attrs.index(a)] for a in attrs}
    b = params.baselines

    def union(names: Sequence[str]) -> int:
        return int(np.any(np.stack([col[a] for a in names], 1), 1).sum())

    def run(name: str, epochs: int, images: int, branches: int, frozen: bool = False) -> Work:
        selects = params.train.select_best_epoch and epochs > 1
        return Work(name, epochs * images, branches, frozen, epochs * n_val if selects else 0)

    work = [run(s.name, s.epochs, union(s.attributes), len(s.attributes), s.freeze_base)
            for s in build_schedule(params, article)]
    order = attribute_order(params, article)
    for method in b.methods:
        if method == "individual":
            work += [run(f"individual:{a}", b.epochs, int(col[a].sum()), 1) for a in order]
        elif method == "multilabel":
            work.append(run(method, b.epochs, int(labelled.all(1).sum()), 1))
        else:
            work.append(run(method, b.epochs, union(order), 1))
    return work


def estimate_seconds(work: Sequence[Work], throughput: Throughput) -> float:
    """Seconds of training (and best-epoch evaluation) for `work` at `throughput`."""
    return sum(w.seconds(throughput) for w in work)
