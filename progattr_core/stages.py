"""One schedule stage at a time (progattr_core.schedule's stages, on train.fit): add the stage's Branch,
set what learns, train; run a schedule from any stage (its checkpoints: model_file.save_checkpoint).
Each stage's shuffling and augmentation come from (seed, stage), so running stage k from the checkpoint
of stage k-1 reproduces an uninterrupted run exactly (on CPU)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from .config import Params
from .distill import Distillation
from .errors import DataValidationError, ModelError
from .losses import class_weights, masked_cross_entropy
from .model import ProgressiveResNet, _seed_for
from .schedule import Stage
from .train import FitResult, FitSpec, LabelledImages, Progress, fit, lr_ramp


def _prepare_stage(model: ProgressiveResNet, stage: Stage, data: LabelledImages) -> None:
    """Add the stage's new Branch if needed and set what learns: Base (unless frozen) + its Branches."""
    model.check_vocabulary({a: data.classes[a] for a in data.attributes if a in model.classes})
    adds = [stage.new_attribute] if stage.new_attribute is not None else \
        list(stage.attributes) if stage.kind == "first" else []
    for attr in adds:
        if attr in model.classes:
            continue
        if attr not in data.classes:
            raise DataValidationError(f"stage {stage.name}: no labels for attribute {attr!r}")
        model.add_branch(attr, data.classes[attr])
    missing = [a for a in stage.attributes if a not in model.classes]
    if missing:
        raise ModelError(f"stage {stage.name}: model has no branch for {missing}; run the earlier stages first")
    if stage.freeze_base:
        model.freeze_base()
    else:
        model.unfreeze_base()
    for attr, branch in model.branches.items():
        branch.requires_grad_(attr in stage.attributes)


def stage_seed(seed: int, stage: Stage) -> int:
    return _seed_for(seed, f"stage{stage.index}:{stage.name}")


def train_stage(model: ProgressiveResNet, stage: Stage, data: LabelledImages, p: Params, seed: int,
                device: torch.device | str = "cpu", val: LabelledImages | None = None,
                progress: Progress | None = None, teachers: Mapping[str, np.ndarray] | None = None) -> FitResult:
    """Train one schedule stage in place: its Branches (and the Base unless frozen) on their images.
    With `teachers` (attribute -> class probabilities on every training image, `train.distill`) every
    image trains every Branch of the stage against the annealed mix of gold and teacher (distill.py)."""
    device = torch.device(device)
    model.to(device)
    _prepare_stage(model, stage, data)
    groups = model.layer_groups(stage.attributes)
    lrs = lr_ramp(len(groups), p.optimizer.lr * stage.lr_factor, p.optimizer.lr_base_ratio)
    if stage.freeze_base:
        groups, lrs = groups[-1:], lrs[-1:]
    weights = class_weights(data, p.train.class_weighting)
    distill = None if teachers is None else \
        Distillation({a: teachers[a] for a in stage.attributes}, data.attributes, p.train.distill_temperature, weights)
    spec = FitSpec(stage.name, stage.attributes,
                   data.labelled_for(stage.attributes) if distill is None else torch.arange(len(data)), groups, lrs,
                   masked_cross_entropy(data, weights), stage.epochs, stage_seed(seed, stage),
                   branch_rows=p.train.branch_images == "labelled" and len(stage.attributes) > 1 and distill is None,
                   frozen_base=stage.freeze_base, distill=distill)
    result = fit(model, spec, data, p, device, val, progress)
    if stage.freeze_base:
        model.unfreeze_base()
    return result


def run_schedule(model: ProgressiveResNet, stages: Sequence[Stage], data: LabelledImages, p: Params,
                 seed: int, device: torch.device | str = "cpu", val: LabelledImages | None = None,
                 start: int = 0, on_stage_end: Callable[[Stage, FitResult], None] | None = None,
                 progress: Progress | None = None, teachers: Mapping[str, np.ndarray] | None = None
                 ) -> list[FitResult]:
    """Run stages[start:] in order (resume: pass the model restored from stage start-1's checkpoint);
    `teachers` as for train_stage."""
    results = []
    for stage in stages[start:]:
        if progress:
            progress(f"stage {stage.index + 1}/{len(stages)} {stage.name} ({stage.kind}, {stage.epochs} epoch(s))")
        result = train_stage(model, stage, data, p, seed, device, val, progress, teachers)
        results.append(result)
        if on_stage_end:
            on_stage_end(stage, result)
    return results
