"""Add one attribute's Branch to a registered model (paper: "it is very easy to add a new attribute by
just adding a branch"), as Prefect tasks: base model, new-attribute validation, stages, evaluation,
registration.

Modes (params branch_add.mode, stages from `progattr_core.schedule.branch_add_stages`):
- `frozen_base`: only the new Branch trains; the old Branches' predictions stay bit-identical to the
  base model's, which the evaluation checks on every test image and the gate requires.
- `progressive`: add, fine-tune everything, frozen-Base final; the old attributes are re-evaluated
  against the base model on the same test images and gated on no regression.
Stage checkpoints go to MLflow keyed like the training flow's (here: article + data version + base
version + attribute + mode + params), so a rerun reuses the stages already completed.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field

import numpy as np
from prefect import task

from progattr_core.calibration import calibrate_attributes, coverage_at, temper
from progattr_core.config import TRAINING_SECTIONS
from progattr_core.data.manifest import read_manifest
from progattr_core.errors import DataValidationError, ModelError
from progattr_core.gates import decide_branch_add
from progattr_core.model import resolve_device
from progattr_core.model_file import load_checkpoint, load_model, save_model
from progattr_core.predict import predict_proba
from progattr_core.schedule import Stage, branch_add_stages
from tasks.context import DataRef, PipelineContext, task_logger, training_key
from tasks.evaluation import EvaluationRef, scored, targets, write_plots, write_precision_coverage
from tasks.registry import RegistryRef, champion_or_latest, publish_tags, register_version
from tasks.training import MODEL, TrainedRef, fetch, load_split, train_checkpointed
from tasks.validation import ValidationOutcome, memo_path, validate_manifest
from tracking.registry import Registry, model_name
from tracking.store import Store


@dataclass(frozen=True)
class BaseModelRef:
    """The registered version a branch is added to, copied locally."""

    name: str
    version: str
    chosen_as: str                 # "champion", or "latest" when no champion is set yet
    path: str
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class BranchEvaluation:
    accuracy: dict[str, float]             # new model: attribute (and "overall") -> test accuracy
    base_accuracy: dict[str, float]        # base model on the same test images
    old_predictions_identical: bool        # old attributes' probabilities equal bit for bit
    n_test: int
    learning: dict[str, dict[str, float]]  # new model: attribute -> AttributeMetrics.summary()
    publish: dict[str, dict[str, float]] = field(default_factory=dict)      # new model: coverage, ECE, ...
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)  # new model's, fitted on val
    base_coverage: dict[str, float] = field(default_factory=dict)  # base, with its own calibration, same images
    out_dir: str = ""                      # outputs/<article>/branch_add/evaluation: curves, confusion, report
    overall: dict[str, float] = field(default_factory=dict)  # new model: EvaluationReport.summaries()["overall"]

    def as_report_input(self) -> EvaluationRef:
        """The approval report's view (tasks/report.py): this version as METHOD, the base model beside it."""
        return EvaluationRef(self.out_dir, "", {METHOD: self.accuracy, "base model": self.base_accuracy},
                             {METHOD: {**self.learning, "overall": self.overall}}, publish={METHOD: self.publish},
                             calibration=self.calibration)


METHOD = "branch_add"  # the new model's name in the evaluation's files and the approval report


def load_base(ctx: PipelineContext, attribute: str) -> BaseModelRef:
    """The article's champion (or latest) model, which must not already have `attribute`."""
    store = Store.of(ctx.store)
    name = model_name(ctx.article)
    found = champion_or_latest(Registry.of(ctx.store), name)
    if found is None:
        raise ModelError(f"{name} has no registered version to add {attribute!r} to: train the article first "
                         f"(progattr pipeline run --article {ctx.article})")
    mv, chosen_as = found
    local = fetch(store, mv.run_id, MODEL, ctx.outputs("branch_add", f"base-v{mv.version}.pt"))
    attributes = tuple(load_model(local).classes)
    if attribute in attributes:
        raise ModelError(f"{name} version {mv.version} (@{chosen_as}) already has attribute {attribute!r}")
    task_logger().info("adding %r to %s version %s (@%s, attributes %s)", attribute, name, mv.version, chosen_as,
                       list(attributes))
    return BaseModelRef(name, str(mv.version), chosen_as, str(local), attributes)


def validate_attribute(ctx: PipelineContext, data: DataRef, attribute: str) -> ValidationOutcome:
    """The training flow's Great Expectations checks, for the new attribute's labels."""
    params = ctx.params()
    vocab = params.attributes(ctx.article)
    if attribute not in vocab:
        raise DataValidationError(f"attribute {attribute!r} is not in taxonomy.{ctx.article} {list(vocab)}: add "
                                  "its class vocabulary to params.yaml first")
    df = read_manifest(ctx.path(data.manifest))
    outcome = validate_manifest(df, ctx.path(data.data_root), ctx.article, {attribute: vocab[attribute]},
                                params.validation, ctx.outputs("branch_add", f"validation-{attribute}"),
                                memo_path(ctx.path(params.data.cache), f"{ctx.article}-{attribute}"))
    if ctx.flow_run_id:
        store = Store.of(ctx.store)
        store.log_artifacts(ctx.flow_run_id, outcome.report_dir, f"validation-{attribute}")
        store.set_tags(ctx.flow_run_id, {"validation": "passed" if outcome.success else "failed"})
    if not outcome.success:
        raise DataValidationError(f"{data.manifest}: labels of the new attribute {attribute!r} fail "
                                  f"{len(outcome.failures)} expectation(s):\n  " + "\n  ".join(outcome.failures))
    task_logger().info("labels of %r pass %d expectations (coverage %.3f)", attribute, outcome.n_expectations,
                       outcome.coverage[attribute])
    return outcome


def branch_schedule(ctx: PipelineContext, base: BaseModelRef, attribute: str, mode: str) -> list[Stage]:
    return branch_add_stages(list(base.attributes), attribute, ctx.params(), mode)


def branch_key(ctx: PipelineContext, data: DataRef, base: BaseModelRef, attribute: str, mode: str) -> str:
    """Identity of one branch-add training: resume and re-registration key on it, never on a run id."""
    p = ctx.params()
    return training_key(p, ctx.article, data.data_version, f"{base.name}:{base.version}", attribute, mode,
                        p.digest(*TRAINING_SECTIONS, "branch_add"))


def run_branch_stage(ctx: PipelineContext, data: DataRef, key: str, base: BaseModelRef, attribute: str,
                     mode: str, index: int, previous: TrainedRef | None) -> TrainedRef:
    """Branch-add stage `index`, from the base model (or the previous stage's checkpoint)."""
    stage = branch_schedule(ctx, base, attribute, mode)[index]
    return train_checkpointed(ctx, data, stage, {"kind": "branch_stage", "train_key": key, "stage_index": index},
                              f"branch-{index}-{stage.name}", {"added_attribute": attribute, "branch_add_mode": mode,
                                                               "base_version": base.version}, previous,
                              lambda: load_model(base.path))


def export_branch_model(ctx: PipelineContext, stages: list[TrainedRef]) -> str:
    """The last stage's checkpoint as a plain saved model: outputs/<article>/branch_add/model.pt."""
    store = Store.of(ctx.store)
    with tempfile.TemporaryDirectory(prefix="progattr-branch-final-") as tmp:
        model, _ = load_checkpoint(store.download(stages[-1].run_id, stages[-1].artifact, tmp))
    return str(save_model(model, ctx.outputs("branch_add", "model.pt")))


def evaluate_branch_add(ctx: PipelineContext, data: DataRef, base: BaseModelRef, model_path: str) -> BranchEvaluation:
    """Both models on the same test images: accuracies, and whether old predictions are unchanged."""
    params = ctx.params()
    device = resolve_device(params.compute.device)
    test, val = load_split(ctx, data, "test"), load_split(ctx, data, "val")
    new, old = load_model(model_path), load_model(base.path)
    old_attrs = list(base.attributes)
    batch = params.train.batch_size
    p_new, report_new = scored(METHOD, new, test, params, device, list(new.classes))
    p_old, report_old = scored("base", old, test, params, device, old_attrs)
    identical = all(np.array_equal(p_new[a], p_old[a]) for a in old_attrs)
    labels = test.labels.numpy()
    goals = targets(ctx)
    fitted, publish = calibrate_attributes(
        predict_proba(new, val.images, batch, device, list(new.classes), calibrated=False), val.labels.numpy(),
        p_new, labels, test.attributes, goals)
    base_coverage = {a: coverage_at(temper(p_old[a], c["temperature"]), labels[:, test.attributes.index(a)],
                                    c["threshold"])[0] for a, c in old.calibration.items() if a in p_old}
    summaries = report_new.summaries()
    learning = {a: v for a, v in summaries.items() if a != "overall"}
    out = ctx.outputs("branch_add", "evaluation")
    out.mkdir(parents=True, exist_ok=True)
    write_plots(out, {METHOD: report_new})
    write_precision_coverage(out, {METHOD: {a: temper(p_new[a], c.temperature) for a, c in fitted.items()},
                                   "base model": {a: temper(p_old[a], c["temperature"])
                                                  for a, c in old.calibration.items() if a in p_old}},
                             labels, test.attributes, goals)
    evaluation = BranchEvaluation({**{a: v["accuracy"] for a, v in learning.items()}, "overall": report_new.overall},
                                  {**{a: m.accuracy for a, m in report_old.per_attribute.items()},
                                   "overall": report_old.overall}, identical, len(test), learning, publish,
                                  {a: c.to_dict() for a, c in fitted.items()}, base_coverage, str(out),
                                  summaries.get("overall", {}))
    if ctx.flow_run_id:
        store = Store.of(ctx.store)
        store.log_metrics(ctx.flow_run_id, {**{f"test.{a}.accuracy": v for a, v in evaluation.accuracy.items()},
                                            **{f"test.base.{a}.accuracy": v for a, v in evaluation.base_accuracy.items()},
                                            "old_predictions_identical": float(identical)})
    task_logger().info("on %d test images: new %s, base %s, old attributes' predictions %s", len(test),
                       _rounded(evaluation.accuracy), _rounded(evaluation.base_accuracy),
                       "bit-identical" if identical else "changed")
    return evaluation


def _rounded(acc: dict[str, float]) -> dict[str, float]:
    return {a: round(v, 4) for a, v in acc.items()}


def register_branch_add(ctx: PipelineContext, data: DataRef, key: str, base: BaseModelRef, attribute: str,
                        mode: str, model_path: str, evaluation: BranchEvaluation, schedule: list[str]) -> RegistryRef:
    """A new version tagged with the added attribute and mode; `challenger` when the gates pass."""
    rules = ctx.params().gates
    gate = decide_branch_add(evaluation.accuracy, evaluation.base_accuracy, evaluation.learning,
                             evaluation.old_predictions_identical, mode, ctx.params().branch_add.max_regression_vs_base,
                             rules.min_adjusted_balanced_accuracy,
                             {a: m["coverage"] for a, m in evaluation.publish.items()}, evaluation.base_coverage,
                             rules.max_coverage_regression_vs_champion)
    tags = {"data_version": data.data_version, "data_raw": data.raw_dir, "data_layout": data.layout,
            "params_hash": ctx.params().digest(*TRAINING_SECTIONS),
            "schedule": " > ".join(schedule), "added_attribute": attribute, "branch_add_mode": mode,
            "base_version": base.version, "old_predictions_identical": str(evaluation.old_predictions_identical).lower(),
            **{f"accuracy.{a}": f"{v:.4f}" for a, v in evaluation.accuracy.items() if not math.isnan(v)},
            **publish_tags(evaluation.publish)}
    ref = register_version(ctx, {"train_key": key}, model_path, tags, gate.passed, gate.reasons,
                           evaluation.calibration)
    if ref.newly_registered and ctx.flow_run_id:
        from tasks.report import publish_report

        publish_report(ctx, data, evaluation.as_report_input(), model_path, ref.version,
                       "passed" if gate.passed else "; ".join(gate.reasons), METHOD)
    return ref


load_base_task = task(load_base, name="load-base-model")
validate_attribute_task = task(validate_attribute, name="validate-new-attribute")
branch_stage_task = task(run_branch_stage, name="branch-stage", task_run_name="branch-stage-{index}")
export_branch_task = task(export_branch_model, name="export-branch-model")
evaluate_branch_task = task(evaluate_branch_add, name="evaluate-branch-add")
register_branch_task = task(register_branch_add, name="register-branch-add")
