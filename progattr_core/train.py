"""Training's fit loop: labelled images, one fit of chosen parameter groups (differential learning rates,
augmentation, AMP on a GPU, a frozen Base's features cached), and accuracy on a split.

A missing label never contributes to any loss: each Branch's loss is taken over the images labelled
for its attribute only (paper section 3.2: "each Branch learns only from images labelled for it";
losses.py). The schedule's stages run on this loop in stages.py; every fit draws its shuffling and
augmentation from a generator seeded by its own seed, so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import OptimizerParams, Params
from .data.arrays import CachedImages
from .determinism import reproducible
from .distill import Distillation
from .errors import DataValidationError
from .losses import LossFn
from .model import ProgressiveResNet
from .model_file import weights_digest
from .parallel import Meter, cpu_count

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
FEATURE_CACHE_BYTES = 2 << 30  # frozen-Base features kept for reuse up to this size (else recomputed per batch)
_features: dict[str, Any] = {}  # one entry: (Base digest, device, weakref to the images, their features)


@dataclass
class LabelledImages:
    """Images (uint8, N x 3 x S x S: in memory, or read from the decode cache a batch at a time) with one
    label column per attribute (class code, -1 = missing)."""

    images: Tensor | CachedImages
    labels: Tensor
    attributes: list[str]
    classes: dict[str, list[str]]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise DataValidationError(f"images must be uint8 (N, 3, S, S), got {self.images.dtype} "
                                      f"{tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images), len(self.attributes)):
            raise DataValidationError(f"labels shape {tuple(self.labels.shape)} != (N={len(self.images)}, "
                                      f"attributes={len(self.attributes)})")
        for j, attr in enumerate(self.attributes):
            col = self.labels[:, j]
            k = len(self.classes[attr])
            bad = col[(col < -1) | (col >= k)]
            if len(bad):
                raise DataValidationError(f"attribute {attr!r}: label code {int(bad[0])} outside [-1, {k - 1}]")

    @classmethod
    def from_arrays(cls, images: np.ndarray | CachedImages, labels: np.ndarray, attributes: Sequence[str],
                    classes: dict[str, Sequence[str]]) -> LabelledImages:
        return cls(images if isinstance(images, CachedImages) else torch.as_tensor(images), torch.as_tensor(labels, dtype=torch.int64), list(attributes),
                   {a: list(classes[a]) for a in attributes})

    def __len__(self) -> int:
        return len(self.images)

    def column(self, attribute: str) -> Tensor:
        if attribute not in self.attributes:
            raise DataValidationError(f"no labels for attribute {attribute!r}; data has {self.attributes}")
        return self.labels[:, self.attributes.index(attribute)]

    def labelled_for(self, attributes: Sequence[str], every: bool = False) -> Tensor:
        """Indices of images labelled for any (or, with every=True, all) of the attributes."""
        mask = torch.stack([self.column(a) >= 0 for a in attributes], dim=1)
        return torch.nonzero(mask.all(1) if every else mask.any(1)).flatten()


@dataclass
class FitResult:
    """What one training run (a stage or a baseline) did: time, image passes, losses, chosen epoch."""

    name: str
    epochs: int
    n_images: int
    seconds: float = 0.0
    image_passes: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    val_scores: list[float] = field(default_factory=list)
    best_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _augment(x: Tensor, gen: torch.Generator, hflip: bool, pad: int) -> Tensor:
    """Random horizontal flips and pad-and-crop, drawn from `gen` (so resumable runs repeat them).

    The draws come from the CPU generator whatever device `x` is on; the crops are one gather, so the
    batch can be augmented where it is trained (on a GPU the CPU would otherwise be the bottleneck)."""
    n, _, h, w = x.shape
    if hflip:
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    if pad > 0:
        padded = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).to(x.device)
        rows = (offsets[:, 0, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (offsets[:, 1, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
    return x


def _accelerated(model: nn.Module, amp: bool, device: torch.device) -> torch.dtype | None:
    """On CUDA with compute.amp: channels-last weights and the bf16 autocast dtype; else None (fp32)."""
    if not (amp and device.type == "cuda"):
        return None
    model.to(memory_format=torch.channels_last)
    return torch.bfloat16


def lr_ramp(n_groups: int, top_lr: float, base_ratio: float) -> list[float]:
    """Geometric ramp: the lowest layer gets top_lr * base_ratio, the Branch (last group) top_lr."""
    if n_groups == 1:
        return [top_lr]
    return [top_lr * base_ratio ** ((n_groups - 1 - i) / (n_groups - 1)) for i in range(n_groups)]


def _optimizer(op: OptimizerParams, groups: list[list[nn.Parameter]], lrs: list[float]) -> torch.optim.Optimizer:
    spec = [{"params": g, "lr": lr} for g, lr in zip(groups, lrs, strict=True) if g]
    # fused kernels: one pass over every parameter per step instead of a loop of small ops (AdamW on
    # 47M CPU parameters, about six layer3 Branches' worth: 0.045 s a step against 0.165 s)
    fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g) or None
    if op.name == "sgd":
        return torch.optim.SGD(spec, momentum=op.momentum, weight_decay=op.weight_decay, fused=fused)
    return torch.optim.AdamW(spec, weight_decay=op.weight_decay, fused=fused)


def _schedule(opt: torch.optim.Optimizer, kind: str, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def accuracy_on(model: nn.Module, data: LabelledImages, attributes: Sequence[str], device: torch.device,
                batch_size: int = 256) -> dict[str, float]:
    """Per-attribute accuracy on the images labelled for each (used for best-epoch selection)."""
    from .metrics import labelled_accuracy
    from .predict import predict_proba

    probs = predict_proba(model, data.images, batch_size=batch_size, device=device, attributes=attributes)
    labels = np.stack([data.column(a).numpy() for a in attributes], 1) if attributes else np.zeros((len(data), 0))
    return {a: v["accuracy"] for a, v in labelled_accuracy(probs, labels, attributes).items()}


@dataclass
class FitSpec:
    """Everything one training run needs beyond the model and the data."""

    name: str
    attributes: Sequence[str]
    indices: Tensor
    groups: list[list[nn.Parameter]]
    lrs: list[float]
    loss_fn: LossFn
    epochs: int
    seed: int
    branch_rows: bool = False  # a ProgressiveResNet's Branches run only on the rows labelled for them
    frozen_base: bool = False  # a ProgressiveResNet whose Base does not learn: its output can be reused
    distill: Distillation | None = None  # teachers' targets: their annealed loss replaces loss_fn (distill.py)


def frozen_features(model: ProgressiveResNet, data: LabelledImages, device: torch.device, batch_size: int,
                    amp: torch.dtype | None) -> dict[str, Tensor] | None:
    """The frozen Base's outputs (`ProgressiveResNet.trunk`) for every image of `data`, computed once per (Base weights, images) and
    reused by every later frozen-Base stage of the process (the stages of a `train.base_attributes`
    schedule, the final stage, a frozen-Base branch-add). None when it would exceed FEATURE_CACHE_BYTES."""
    key = (weights_digest(model.base), model.trunk_points(), str(device))
    entry = _features.get("entry")
    if entry and entry[0] == key and entry[1]() is data.images:
        return entry[2]
    _features.clear()
    fmt = torch.channels_last if amp is not None else torch.contiguous_format
    chunks: list[dict[str, Tensor]] = []
    with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        for start in range(0, len(data), batch_size):
            x = data.images[start:start + batch_size].to(device).contiguous(memory_format=fmt)
            chunks.append(model.trunk(model.prepare(x)))
            if start == 0 and sum(f[0].nbytes for f in chunks[0].values()) * len(data) > FEATURE_CACHE_BYTES:
                return None
    features = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
    _features["entry"] = (key, weakref.ref(data.images), features)
    return features


EpochHook = Callable[[int, dict[str, Any]], None]


class _Rows(torch.utils.data.Dataset):
    """A DataLoader's view of cached images: one read per batch of indices (`__getitems__`)."""

    def __init__(self, images: CachedImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, rows: list[int]) -> Tensor:
        return self.images[rows]


def _as_batch(x: Tensor) -> Tensor:
    return x


def _batch_images(images: Tensor | CachedImages, steps: list[Tensor], device: torch.device,
                  workers: int | None = None) -> Iterator[Tensor]:
    """The images of each step's indices, on `device`. From memory: indexed when asked. From the decode
    cache for a GPU (or with `workers`): a DataLoader whose worker processes read ahead into pinned
    memory, so the GPU does not wait on the disk; on a CPU the reads (~0.15 ms an image at 64 px) run
    in line, as the cores are busy training."""
    if workers is None:
        workers = min(4, cpu_count()) if isinstance(images, CachedImages) and device.type == "cuda" else 0
    if workers == 0:
        return (images[idx].to(device, non_blocking=True) for idx in steps)
    loader = torch.utils.data.DataLoader(
        _Rows(images), batch_sampler=[idx.tolist() for idx in steps], num_workers=workers,
        collate_fn=_as_batch, pin_memory=device.type == "cuda", prefetch_factor=4, persistent_workers=False)
    return (x.to(device, non_blocking=True) for x in loader)


def fit(model: nn.Module, spec: FitSpec, data: LabelledImages, p: Params, device: torch.device,
        val: LabelledImages | None = None, progress: Progress | None = None,
        on_epoch_end: EpochHook | None = None, resume: dict[str, Any] | None = None) -> FitResult:
    """The one training loop every method shares: same optimiser, LR schedule, augmentation, selection.

    `on_epoch_end(epoch, state)` gets, after each epoch, everything needed to continue exactly where
    it stands (weights, optimiser, LR schedule, shuffling generator, best epoch so far); `fit(...,
    resume=state)` continues from such a state (the model it is given is loaded from it) and ends
    with the same weights as a run that was never interrupted."""
    result = FitResult(spec.name, spec.epochs, len(spec.indices))
    if spec.epochs == 0 or len(spec.indices) == 0:
        return result
    if len(spec.indices) < 2:  # BatchNorm cannot train on a batch of one
        log.warning("%s: only %d image to train on; left untrained", spec.name, len(spec.indices))
        return result
    with reproducible(p.compute, device):  # compute.threads and compute.deterministic (determinism.py)
        return _fit(model, spec, data, p, device, result, val, progress, on_epoch_end, resume)


def _fit(model: nn.Module, spec: FitSpec, data: LabelledImages, p: Params, device: torch.device,
         result: FitResult, val: LabelledImages | None, progress: Progress | None,
         on_epoch_end: EpochHook | None = None, resume: dict[str, Any] | None = None) -> FitResult:
    tp = p.train  # the batch, selection and augmentation; p.optimizer and p.compute below
    bs = tp.batch_size
    steps_per_epoch = max(1, len(spec.indices) // bs if len(spec.indices) % bs == 1 else
                          math.ceil(len(spec.indices) / bs))
    opt = _optimizer(p.optimizer, spec.groups, spec.lrs)
    sched = _schedule(opt, p.optimizer.lr_schedule, spec.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(spec.seed)
    select = tp.select_best_epoch and val is not None and spec.epochs > 1
    best_state, best_score, start = None, -1.0, time.perf_counter()
    amp = _accelerated(model, p.compute.amp, device)
    fmt = torch.channels_last if amp is not None else torch.contiguous_format
    columns = {a: i for i, a in enumerate(data.attributes)}
    first_epoch, elapsed = 0, 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        gen.set_state(resume["generator"])
        best_state, best_score, first_epoch = resume["best_state"], resume["best_score"], resume["epoch"]
        for k in ("image_passes", "epoch_losses", "val_scores", "best_epoch", "seconds"):
            setattr(result, k, resume["result"][k])
        elapsed = result.seconds
    frozen = spec.frozen_base and isinstance(model, ProgressiveResNet)  # frozen by _prepare_stage: eval-mode BN
    # with a frozen Base the Branches are independent: best-epoch selection per Branch
    per_branch = {a: (-1.0, None) for a in spec.attributes} if select and frozen else None
    if resume is not None and per_branch is not None:
        per_branch = resume["per_branch"]
    augmented = tp.augment.hflip or tp.augment.crop_padding
    cached = frozen_features(model, data, device, bs, amp) if frozen and not augmented else None
    for epoch in range(first_epoch, spec.epochs):
        model.train()
        order = spec.indices[torch.randperm(len(spec.indices), generator=gen)]
        steps = [order[s * bs:(s + 1) * bs] if s < steps_per_epoch - 1 else order[s * bs:]
                 for s in range(steps_per_epoch)]
        images = _batch_images(data.images, steps, device) if cached is None else None
        meter = Meter(f"{spec.name}: epoch {epoch + 1}/{spec.epochs}", len(spec.indices), progress)
        total, count = 0.0, 0
        for step, idx in enumerate(steps):
            y = data.labels[idx].to(device)
            rows = {a: y[:, columns[a]] >= 0 for a in spec.attributes} if spec.branch_rows else None
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                if cached is not None:
                    out = model.heads({k: f[idx.to(f.device)] for k, f in cached.items()}, list(spec.attributes),
                                      rows=rows)
                else:
                    x = _augment(next(images), gen, tp.augment.hflip,  # type: ignore[arg-type]
                                 tp.augment.crop_padding).contiguous(memory_format=fmt)
                    out = model(x, list(spec.attributes), rows=rows) if rows else model(x, list(spec.attributes))
                if spec.distill is None:
                    loss = spec.loss_fn(out, y)
                else:  # the gold label's share rises from 0 to 1 over the fit's steps (teacher annealing)
                    done = (epoch * steps_per_epoch + step) / max(1, spec.epochs * steps_per_epoch - 1)
                    loss = spec.distill.loss(out, y, idx, min(1.0, done))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
            meter.add(len(idx))
        result.image_passes += count
        result.epoch_losses.append(total / max(count, 1))
        if select:
            per_attribute = accuracy_on(model, val, spec.attributes, device)
            score = float(np.nanmean(list(per_attribute.values())))
            result.val_scores.append(score)
            if score > best_score:
                best_score, result.best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
            if per_branch is not None:  # a frozen Base: each Branch keeps its own best epoch
                for attr, acc in per_attribute.items():
                    if not acc <= per_branch[attr][0]:  # the first epoch, a better one, or no val labels
                        per_branch[attr] = (acc, copy.deepcopy(model.branches[attr].state_dict()))
        if progress:
            extra = f", val acc {result.val_scores[-1]:.3f}" if select else ""
            progress(f"{spec.name}: epoch {epoch + 1}/{spec.epochs}, loss {result.epoch_losses[-1]:.4f}{extra}")
        result.seconds = elapsed + time.perf_counter() - start
        if on_epoch_end:  # its time (a checkpoint upload) is not training time
            hook_start = time.perf_counter()
            on_epoch_end(epoch, {"epoch": epoch + 1, "model": copy.deepcopy(model.state_dict()),
                                 "optimizer": copy.deepcopy(opt.state_dict()), "scheduler": sched.state_dict(),
                                 "generator": gen.get_state(), "best_state": best_state, "best_score": best_score,
                                 "per_branch": per_branch,
                                 "result": copy.deepcopy(result.to_dict())})
            elapsed -= time.perf_counter() - hook_start
    if per_branch is not None and all(state is not None for _, state in per_branch.values()):
        for attr, (_, state) in per_branch.items():
            model.branches[attr].load_state_dict(state)
    elif best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = elapsed + time.perf_counter() - start
    model.eval()
    return result
