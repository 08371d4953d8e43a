"""Evaluate the progressive model against the baselines on the same test images (paper section 4).

Writes under outputs/<article>/evaluation/: the paper's table of accuracy and the same tables of macro-F1
and balanced accuracy (comparison.csv / .md), metrics.json (DVC metrics: accuracy per attribute and
overall, model size, train and inference time per method, macro-F1 and balanced accuracy per attribute),
pr.csv (DVC plots), pr_curves.png and confusion/<method>.png; logs all of it
to the flow's MLflow run.

Beside them, what a team publishing tags gets (progattr_core.calibration): per method and attribute a
temperature and threshold fitted on the validation split to reach `serving.target_precision`, and on
the test split the coverage and precision at that threshold and the ECE before and after:
comparison_coverage.csv, calibration.json (progressive's calibration, which registration puts in the
model file), precision_coverage.csv and precision_coverage.png.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import task

from progattr_core.calibration import PUBLISH_METRICS, calibrate_attributes, precision_coverage, temper
from progattr_core.data.arrays import CachedImages
from progattr_core.metrics import (
    EvaluationReport,
    comparison_table,
    evaluate,
    labelled_accuracy,
    not_learnt,
    predicted_mix,
)
from progattr_core.model import resolve_device, weights_mb
from progattr_core.model_file import load_model
from progattr_core.predict import predict_proba
from progattr_core.sharing import advice
from tasks.context import DataRef, PipelineContext, task_logger
from tasks.training import TrainedRef, baseline_path, load_split
from tracking.store import Store

if TYPE_CHECKING:
    import torch
    from torch import nn

    from progattr_core.config import Params
    from progattr_core.train import LabelledImages


@dataclass(frozen=True)
class EvaluationRef:
    out_dir: str
    table_markdown: str
    accuracy: dict[str, dict[str, float]]   # method -> attribute (and "overall") -> test accuracy
    metrics: dict[str, dict[str, dict[str, float]]]  # method -> attribute (and "overall") -> summary metrics
    # progressive's predicted-class mix on the test images: serving's drift reference (tasks/registry.py)
    predicted_mix: dict[str, dict[str, float]] = field(default_factory=dict)
    # method -> attribute (and "overall") -> coverage, precision at threshold, ECE raw/calibrated, ...
    publish: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)  # progressive's, per attribute


def _method_files(ctx: PipelineContext, trained: list[TrainedRef]) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {"progressive": [ctx.outputs("progressive", "model.pt")]}
    for ref in trained:
        if ref.kind == "baseline":
            files.setdefault(ref.name.split(":")[0], []).append(baseline_path(ctx, ref.name))
    return files


def _predict(paths: list[Path], images: CachedImages, val_images: CachedImages, batch_size: int, device
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float, float]:
    """Raw probabilities per attribute on the test and validation images from one method's model
    file(s), seconds spent predicting the test images, and the megabytes of weights they predict with
    (`weights_mb`: not the files, which may carry templates)."""
    probs: dict[str, np.ndarray] = {}
    val: dict[str, np.ndarray] = {}
    seconds = size = 0.0
    for path in paths:
        model = load_model(path)
        size += weights_mb(model)
        start = time.perf_counter()
        probs.update(predict_proba(model, images, batch_size, device, calibrated=False))
        seconds += time.perf_counter() - start
        val.update(predict_proba(model, val_images, batch_size, device, calibrated=False))
    return probs, val, seconds, size


def scored(method: str, model: nn.Module, data: LabelledImages, params: Params, device: torch.device,
           attributes: list[str] | None = None) -> tuple[dict[str, np.ndarray], EvaluationReport]:
    """The one predict-and-score: `model`'s raw probabilities on a split (evaluation, calibration and the
    gates read the raw ones) for its attributes (or the named ones), and their EvaluationReport."""
    probs = predict_proba(model, data.images, params.train.batch_size, device, attributes, calibrated=False)
    return probs, evaluate(method, probs, data.labels.numpy(), data.attributes, data.classes,
                           params.evaluation.pr_points)


def targets(ctx: PipelineContext) -> dict[str, float]:
    """Each attribute's target precision (serving.target_precision, or its own)."""
    params = ctx.params()
    return {a: params.serving.target_for(a) for a in params.attributes(ctx.article)}


def evaluate_methods(ctx: PipelineContext, data: DataRef, trained: list[TrainedRef]) -> EvaluationRef:
    params = ctx.params()
    vocab = params.attributes(ctx.article)
    test, val = load_split(ctx, data, "test"), load_split(ctx, data, "val")
    images, labels = test.images, test.labels.numpy()
    device = resolve_device(params.compute.device)
    train_seconds: dict[str, float] = {}
    for ref in trained:
        method = "progressive" if ref.kind == "stage" else ref.name.split(":")[0]
        train_seconds[method] = train_seconds.get(method, 0.0) + ref.seconds
    reports: dict[str, EvaluationReport] = {}
    costs: dict[str, dict[str, float]] = {}
    mix: dict[str, dict[str, float]] = {}
    publish: dict[str, dict[str, dict[str, float]]] = {}
    curves: dict[str, dict[str, np.ndarray]] = {}
    calibration: dict[str, dict[str, float]] = {}
    goals = targets(ctx)
    val_accuracy: dict[str, dict[str, float]] = {}
    for method, paths in _method_files(ctx, trained).items():
        probs, val_probs, seconds, size_mb = _predict(paths, images, val.images, params.train.batch_size, device)
        val_accuracy[method] = labelled_accuracy(val_probs, val.labels.numpy(), list(vocab))
        fitted, publish[method] = calibrate_attributes(val_probs, val.labels.numpy(), probs, labels, list(vocab),
                                                       goals)
        curves[method] = {a: temper(probs[a], c.temperature) for a, c in fitted.items()}
        if method == "progressive":
            mix = {a: predicted_mix(probs[a], vocab[a]) for a in vocab if a in probs}
            calibration = {a: c.to_dict() for a, c in fitted.items()}
        reports[method] = evaluate(method, probs, labels, list(vocab), vocab, params.evaluation.pr_points)
        costs[method] = {"size_mb": size_mb,
                         "train_seconds": train_seconds.get(method, 0.0),
                         "inference_ms_per_image": 1000 * seconds / max(len(images), 1)}
    out = ctx.outputs("evaluation")
    out.mkdir(parents=True, exist_ok=True)
    markdown = _write_tables(out, reports, costs, params.gates.min_adjusted_balanced_accuracy, publish)
    if {"progressive", "individual"} <= set(val_accuracy):
        markdown += "\n\n" + advice(val_accuracy["progressive"], val_accuracy["individual"], params.model.split_point,
                                    params.model.split_points, params.evaluation.split_advice_margin)
    summaries = {m: r.summaries() for m, r in reports.items()}
    accuracy = {m: {a: v["accuracy"] for a, v in s.items()} for m, s in summaries.items()}
    extra = {m: {k: {a: v[k] for a, v in s.items()} for k in _EXTRA} for m, s in summaries.items()}
    shared = {m: {k: {a: v[k] for a, v in p.items()} for k in PUBLISH_METRICS} for m, p in publish.items()}
    (out / "metrics.json").write_text(json.dumps(
        {m: {**accuracy[m], **costs[m], **extra[m], **shared[m]} for m in reports}, indent=1))
    (out / "calibration.json").write_text(json.dumps(calibration, indent=1))
    write_plots(out, reports)
    write_precision_coverage(out, curves, labels, list(vocab), goals)
    if ctx.flow_run_id:
        _log(Store.of(ctx.store), ctx.flow_run_id, out, summaries, costs, publish)
    task_logger().info("evaluation on %d test images:\n%s", len(images), markdown)
    return EvaluationRef(str(out), markdown, accuracy, summaries, mix, publish, calibration)


_EXTRA = ("macro_f1", "balanced_accuracy")  # beside accuracy in every table and metrics file
_TITLES = {"accuracy": "Test accuracy (%) per attribute and method (the paper's measure); costs below.",
           "macro_f1": "Macro-F1 (%): the mean F1 over the classes present; majority = always answering it.",
           "balanced_accuracy": "Balanced accuracy (%): the mean per-class recall; majority = 100/K, chance."}


def _write_tables(out: Path, reports: dict[str, EvaluationReport], costs: dict[str, dict[str, float]],
                  min_adjusted: float, publish: dict[str, dict[str, dict[str, float]]]) -> str:
    """comparison.csv (accuracy and costs; comparison_<metric>.csv for the others, coverage included)
    and comparison.md with all of them, and a line naming every attribute no better than the majority
    class."""
    cost = pd.DataFrame(costs).round(3)
    cost.index.name = "attribute"
    sections = []
    for metric in ("accuracy", *_EXTRA):
        table = comparison_table(reports, metric)
        if metric == "accuracy":
            table = pd.concat([table, cost.reindex(columns=table.columns)])
        table.to_csv(out / ("comparison.csv" if metric == "accuracy" else f"comparison_{metric}.csv"))
        sections.append(_TITLES[metric] + "\n\n" + _markdown(table))
    coverage = coverage_table(publish)
    coverage.to_csv(out / "comparison_coverage.csv")
    sections.append(_COVERAGE_TITLE + "\n\n" + _markdown(coverage))
    sections.append(_learning_line(reports, min_adjusted))
    markdown = "\n\n".join(sections)
    (out / "comparison.md").write_text(markdown + "\n")
    return markdown


_COVERAGE_TITLE = ("Coverage (%): the share of test images whose answer clears its attribute's threshold (chosen on "
                   "validation to reach `target` precision); `precision` = how often those answers are right. "
                   "The rest go to review.")


def coverage_table(publish: dict[str, dict[str, dict[str, float]]]) -> pd.DataFrame:
    """Rows = attributes + overall; per method its coverage (%), then the target and progressive's
    achieved precision (%) on test."""
    attrs = list(dict.fromkeys(a for p in publish.values() for a in p))
    table = pd.DataFrame({m: [100 * p[a]["coverage"] if a in p else np.nan for a in attrs] for m, p in publish.items()},
                         index=attrs)
    first = publish.get("progressive") or next(iter(publish.values()), {})
    table["target"] = [100 * first[a].get("target_precision", np.nan) if a in first else np.nan for a in attrs]
    table["precision"] = [100 * first[a]["precision_at_threshold"] if a in first else np.nan for a in attrs]
    table.index.name = "attribute"
    return table.round(2)


def _markdown(table: pd.DataFrame) -> str:
    return table.to_markdown() if _has_tabulate() else table.to_string()


def write_precision_coverage(out: Path, probs: dict[str, dict[str, np.ndarray]], labels: np.ndarray,
                             attributes: list[str], targets: dict[str, float]) -> None:
    """precision_coverage.csv (method, attribute, confidence, precision, coverage: the calibrated
    test answers at each threshold) and precision_coverage.png, one panel per attribute."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    shown = [a for a in attributes if any(a in p for p in probs.values())]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(4 * max(len(shown), 1), 3.6), squeeze=False)
    for ax, attr in zip(axes[0], shown, strict=False):
        j = attributes.index(attr)
        low = targets[attr]
        for method, per_attr in probs.items():
            if attr not in per_attr:
                continue
            conf, precision, coverage = precision_coverage(per_attr[attr], labels[:, j])
            ax.plot(coverage, precision, label=method)
            low = min(low, float(precision.min())) if len(precision) else low
            rows += [{"method": method, "attribute": attr, "confidence": float(c), "precision": float(p),
                      "coverage": float(v)} for c, p, v in zip(conf, precision, coverage, strict=True)]
        ax.axhline(targets[attr], color="grey", linestyle="--", linewidth=0.8, label=f"target {targets[attr]:.2f}")
        ax.set(title=attr, xlabel="coverage", ylabel="precision", xlim=(0, 1), ylim=(max(0.0, low - 0.05), 1.01))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "precision_coverage.png", dpi=90)
    plt.close(fig)
    pd.DataFrame(rows, columns=["method", "attribute", "confidence", "precision", "coverage"]).to_csv(
        out / "precision_coverage.csv", index=False)


def _learning_line(reports: dict[str, EvaluationReport], min_adjusted: float) -> str:
    """Which (method, attribute) pairs have not learnt: chance-adjusted balanced accuracy at or below
    gates.min_adjusted_balanced_accuracy (0 when that gate is off)."""
    threshold = max(min_adjusted, 0.0)
    flagged = [f"{method}.{a} (balanced accuracy {100 * m.balanced_accuracy:.1f}% vs chance "
               f"{100 * m.majority_score('balanced_accuracy'):.1f}%; accuracy {100 * m.accuracy:.1f}%, majority "
               f"{100 * m.majority_rate:.1f}%)"
               for method, r in reports.items() for a, m in not_learnt(r, threshold).items()]
    if not flagged:
        return f"Every attribute of every method learnt (chance-adjusted balanced accuracy > {threshold})."
    return (f"NOT LEARNT (no better than the majority class; chance-adjusted balanced accuracy <= {threshold}):\n"
            + "\n".join(f"- {f}" for f in flagged))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def write_plots(out: Path, reports: dict[str, EvaluationReport]) -> None:
    """pr_curves.png + pr.csv (every method), and confusion/<method>.png (one panel per attribute)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attrs = list(next(iter(reports.values())).per_attribute)
    rows = []
    fig, axes = plt.subplots(1, len(attrs), figsize=(4 * len(attrs), 3.6), squeeze=False)
    for ax, attr in zip(axes[0], attrs, strict=True):
        for method, report in reports.items():
            m = report.per_attribute[attr]
            ax.plot(m.pr_recall, m.pr_precision, label=f"{method} (AP {m.average_precision:.2f})")
            rows += [{"method": method, "attribute": attr, "recall": r, "precision": p}
                     for r, p in zip(m.pr_recall, m.pr_precision, strict=True)]
        ax.set(title=attr, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pr_curves.png", dpi=90)
    plt.close(fig)
    pd.DataFrame(rows).to_csv(out / "pr.csv", index=False)
    for method, report in reports.items():
        fig, axes = plt.subplots(1, len(attrs), figsize=(4.2 * len(attrs), 4), squeeze=False)
        for ax, attr in zip(axes[0], attrs, strict=True):
            m = report.per_attribute[attr]
            ax.imshow(m.confusion, cmap="Blues")
            ax.set(title=f"{attr} (acc {m.accuracy:.2f})", xlabel="predicted", ylabel="true",
                   xticks=range(len(m.classes)), yticks=range(len(m.classes)))
            ax.set_xticklabels(m.classes, rotation=90, fontsize=6)
            ax.set_yticklabels(m.classes, fontsize=6)
        fig.suptitle(f"confusion matrices: {method}")
        fig.tight_layout()
        (out / "confusion").mkdir(exist_ok=True)
        fig.savefig(out / "confusion" / f"{method}.png", dpi=80)
        plt.close(fig)


def _log(store: Store, run_id: str, out: Path, summaries: dict, costs: dict, publish: dict) -> None:
    metrics = {f"test.{m}.{a}.{k}": v for m, attrs in summaries.items() for a, values in attrs.items()
               for k, v in values.items() if k in ("accuracy", *_EXTRA)}
    metrics.update({f"test.{m}.{a}.{k}": v for m, attrs in publish.items() for a, values in attrs.items()
                    for k, v in values.items() if k in PUBLISH_METRICS})
    metrics.update({f"test.{m}.{k}": v for m, c in costs.items() for k, v in c.items()})
    store.log_metrics(run_id, {k: v for k, v in metrics.items() if not np.isnan(v)})
    store.log_artifacts(run_id, out, "evaluation")


evaluate_task = task(evaluate_methods, name="evaluate")
