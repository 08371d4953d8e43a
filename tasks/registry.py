"""Registering a trained model: the one path both the training flow and the branch-add flow take.

A new version of `progattr-<article>` holds the core's self-describing model (weights + config in
one .pt, loaded with `weights_only=True`) and its config as JSON: no pickled code, no MLflow flavour
(MLflow 3.17 would save torch as `pt2`, which breaks on dict outputs). Every new version is pending
approval; it gets the `challenger` alias when its gates pass. `champion` is never set here:
promoting a version is an approval, made by a person (tasks/approvals.py).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task

from progattr_core.config import TRAINING_SECTIONS
from progattr_core.determinism import device_kind, resolved_threads
from progattr_core.gates import decide_challenger
from progattr_core.model import resolve_device
from progattr_core.model_file import FORMAT, load_model, save_model, weights_digest
from progattr_core.model_init import ModelInit
from tasks.context import (
    PARAMS_SNAPSHOT,
    DataRef,
    PipelineContext,
    baseline_key,
    git_commit,
    git_dirty,
    task_logger,
    train_key,
)
from tasks.evaluation import EvaluationRef
from tasks.notify import notify
from tracking.registry import CHALLENGER, CHAMPION, MODEL_FOLDER, PREDICTED_MIX, Registry, model_name
from tracking.store import TAG, Store


@dataclass(frozen=True)
class RegistryRef:
    name: str
    version: str
    challenger: bool
    reasons: tuple[str, ...]
    champion_version: str | None
    newly_registered: bool


def champion_or_latest(registry: Registry, name: str) -> tuple[Any, str] | None:
    """The champion version of `name`, else its latest version, with which of the two it is."""
    champion = registry.at_alias(name, CHAMPION)
    if champion is not None:
        return champion, CHAMPION
    found = registry.versions(name)
    return (found[-1], "latest") if found else None


def register_version(ctx: PipelineContext, identity: dict[str, str], model_path: str, tags: dict[str, Any],
                     passed: bool, reasons: tuple[str, ...], calibration: dict[str, dict[str, float]]) -> RegistryRef:
    """A new version (or the one already registered with the same `identity` tags: a rerun registers
    nothing twice) with `tags`, its gate result, pending approval; `challenger` when `passed`. Its
    model file is `model_path`'s with `calibration` (attribute -> AttributeCalibration.to_dict()) in it."""
    log = task_logger()
    registry = Registry.of(ctx.store)
    name = model_name(ctx.article)
    existing = registry.versions_with_tags(name, identity)
    if existing:
        version, new = str(existing[-1].version), False
        log.info("%s version %s already holds this training (%s)", name, version, identity)
    else:
        tags = {**identity, **tags, "git_commit": git_commit(ctx.root), "git_dirty": git_dirty(ctx.root),
                "flow_run_id": ctx.flow_run_id,
                "article": ctx.article, **rebuild_facts(ctx, model_path),
                "gate": "passed" if passed else "; ".join(reasons)}
        _log_model_folder(Store.of(ctx.store), ctx.flow_run_id, model_path, calibration)
        version, new = registry.register(name, ctx.flow_run_id, tags), True
    if passed:
        registry.move_alias(name, CHALLENGER, version)
        log.info("%s version %s is now @%s", name, version, CHALLENGER)
    else:
        log.warning("%s version %s did not pass its gates:\n  %s", name, version, "\n  ".join(reasons))
    if new:
        _announce(ctx, name, version, passed, reasons)
    return RegistryRef(name, version, passed, reasons, registry.alias_version(name, CHAMPION), new)


def _announce(ctx: PipelineContext, name: str, version: str, passed: bool, reasons: tuple[str, ...]) -> None:
    """The webhook message of a new version: it waits for a person's approval, or it failed its gates."""
    fields = {"article": ctx.article, "model": name, "version": version}
    if passed:
        notify(ctx.params(), "awaiting_approval", f"progattr: {name} version {version} passed its gates and is "
               f"@{CHALLENGER}, waiting for approval: progattr registry approve --article {ctx.article} "
               f"--version {version} --reason '...'", **fields)
    else:
        notify(ctx.params(), "gate_failed", f"progattr: {name} version {version} failed its gates:\n"
               + "\n".join(f"- {r}" for r in reasons), reasons=list(reasons), **fields)


def rebuild_facts(ctx: PipelineContext, model_path: str) -> dict[str, str]:
    """What `progattr registry rebuild` needs besides the data version and git commit: where the
    params snapshot is (the flow run's `params.json`), what the model started from (a backbone pinned
    to its version, and the file's content hash), the compute it trained with, and the weights'
    checksum to compare against."""
    import platform

    import torch
    import torchvision

    p = ctx.params()
    return {"params_snapshot": PARAMS_SNAPSHOT, "params_digest": p.digest(),
            "model_init": ctx.model_init, "model_init_version": ctx.model_init_version, "recipe": ctx.recipe,
            "model_init_identity": ModelInit.parse(p.model.init).identity(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version(),
            "threads": str(resolved_threads(p.compute.threads)), "deterministic": str(p.compute.deterministic),
            "device_kind": device_kind(resolve_device(p.compute.device)),
            "weights_sha256": weights_digest(load_model(model_path))}


def _log_model_folder(store: Store, run_id: str, model_path: str, calibration: dict[str, dict[str, float]]) -> None:
    """model/model.pt (with its calibration) + model/model.json in the run: the registry format
    serving and tagging load. The weights are `model_path`'s, unchanged."""
    with tempfile.TemporaryDirectory(prefix="progattr-register-") as tmp:
        folder = Path(tmp) / MODEL_FOLDER
        folder.mkdir()
        model = load_model(model_path)
        model.calibration = {a: dict(c) for a, c in calibration.items()}
        save_model(model, folder / "model.pt")
        (folder / "model.json").write_text(json.dumps({"format": FORMAT, **model.describe()}, indent=1))
        store.log_artifacts(run_id, folder, MODEL_FOLDER)


def _champion_tags(registry: Registry, name: str, metric: str) -> dict[str, float] | None:
    """The champion's `<metric>.<attribute>` tags as attribute -> value; None without a champion."""
    champ = registry.at_alias(name, CHAMPION)
    if champ is None:
        return None
    prefix = f"{TAG}{metric}."
    return {k.removeprefix(prefix): float(v) for k, v in champ.tags.items() if k.startswith(prefix)}


def publish_tags(publish: dict[str, dict[str, float]]) -> dict[str, str]:
    """A version's calibration and coverage tags: coverage, precision at threshold, ECE (calibrated and
    raw), threshold, target precision and temperature per attribute."""
    keys = ("coverage", "precision_at_threshold", "ece", "ece_raw", "threshold", "target_precision", "temperature")
    return {f"{k}.{a}": f"{m[k]:.4f}" for a, m in publish.items() for k in keys
            if k in m and not math.isnan(m[k])}


def register(ctx: PipelineContext, data: DataRef, key: str, baseline_key: str, model_path: str,
             evaluation: EvaluationRef, schedule: list[str]) -> RegistryRef:
    """The training flow's progressive model, gated against the baselines and the champion."""
    params = ctx.params()
    prog = evaluation.accuracy["progressive"]
    baselines = {m: a["overall"] for m, a in evaluation.accuracy.items() if m != "progressive"}
    registry, name = Registry.of(ctx.store), model_name(ctx.article)
    champion = _champion_tags(registry, name, "accuracy")
    rules = params.gates
    publish = evaluation.publish.get("progressive", {})
    gate = decide_challenger(prog, baselines, champion, rules.max_gap_to_best_baseline, rules.max_regression_vs_champion,
                             evaluation.metrics["progressive"], rules.min_adjusted_balanced_accuracy,
                             # as its tags hold it, so equal coverage never reads as a regression of rounding
                             {a: round(m["coverage"], 4) for a, m in publish.items()},
                             _champion_tags(registry, name, "coverage"),
                             rules.max_coverage_regression_vs_champion)
    tags = {"data_version": data.data_version, "data_raw": data.raw_dir, "data_layout": data.layout, "params_hash": params.digest(*TRAINING_SECTIONS),
            "schedule": " > ".join(schedule),
            **{f"accuracy.{a}": f"{v:.4f}" for a, v in prog.items() if not math.isnan(v)},
            **{f"{k}.{a}": f"{m[k]:.4f}" for a, m in evaluation.metrics["progressive"].items()
               for k in ("macro_f1", "balanced_accuracy") if not math.isnan(m[k])},
            **{f"baseline.{m}.overall": f"{v:.4f}" for m, v in baselines.items()},
            **{f"{PREDICTED_MIX}{a}": json.dumps({c: round(f, 4) for c, f in m.items()})
               for a, m in evaluation.predicted_mix.items()},
            **publish_tags(publish)}
    ref = register_version(ctx, {"train_key": key, "baseline_key": baseline_key}, model_path, tags, gate.passed,
                           gate.reasons, evaluation.calibration)
    if ref.newly_registered and ctx.flow_run_id:
        from tasks.report import publish_report

        publish_report(ctx, data, evaluation, model_path, ref.version, "passed" if gate.passed else "; ".join(gate.reasons))
    return ref


def registered_training(ctx: PipelineContext, data: DataRef) -> dict[str, str] | None:
    """The latest version trained from this data version with these params (same training and
    baseline keys), or None when training would produce something new: the nightly flow's cheap
    "nothing changed" check."""
    key = train_key(ctx, data)
    found = Registry.of(ctx.store).versions_with_tags(model_name(ctx.article),
                                                      {"train_key": key, "baseline_key": baseline_key(ctx, data)})
    if not found:
        return None
    latest = found[-1]
    return {"version": str(latest.version), "data_version": data.data_version,
            "params_hash": latest.tags.get(TAG + "params_hash", ""), "train_key": key}


register_task = task(register, name="register")
registered_training_task = task(registered_training, name="registered-training")
