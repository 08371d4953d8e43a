"""Evaluate the progressive model against the baselines on the same test images (paper section 4).

Writes under outputs/<article>/evaluation/: the paper's table of accuracy and the same tables of macro-F1
and balanced accuracy (comparison.csv / .md), metrics.json (DVC metrics: accuracy per attribute and
overall, model size, train and inference time per method, macro-F1 and balanced accuracy per attribute),
pr.csv (DVC plots), pr_curves.png and confusion/<method>.png; logs all of it
to the flow's MLflow run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from progattr_core.metrics import EvaluationReport, comparison_table, evaluate, not_learnt, predicted_mix
from progattr_core.model import resolve_device, weights_mb
from progattr_core.model_file import load_model
from progattr_core.predict import predict_proba
from tasks.context import DataRef, PipelineContext, task_logger
from tasks.training import TrainedRef, baseline_path, load_split
from tracking.store import Store


@dataclass(frozen=True)
class EvaluationRef:
    out_dir: str
    table_markdown: str
    accuracy: dict[str, dict[str, float]]   # method -> attribute (and "overall") -> test accuracy
    metrics: dict[str, dict[str, dict[str, float]]]  # method -> attribute (and "overall") -> summary metrics
    # progressive's predicted-class mix on the test images: serving's drift reference (tasks/registry.py)
    predicted_mix: dict[str, dict[str, float]] = field(default_factory=dict)


def _method_files(ctx: PipelineContext, trained: list[TrainedRef]) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {"progressive": [ctx.outputs("progressive", "model.pt")]}
    for ref in trained:
        if ref.kind == "baseline":
            files.setdefault(ref.name.split(":")[0], []).append(baseline_path(ctx, ref.name))
    return files


def _predict(paths: list[Path], images: np.ndarray, batch_size: int, device
             ) -> tuple[dict[str, np.ndarray], float, float]:
    """Probabilities per attribute from one method's model file(s), seconds spent predicting, and the
    megabytes of weights they predict with (`weights_mb`: not the files, which may carry templates)."""
    probs: dict[str, np.ndarray] = {}
    seconds = size = 0.0
    for path in paths:
        model = load_model(path)
        size += weights_mb(model)
        start = time.perf_counter()
        probs.update(predict_proba(model, images, batch_size, device))
        seconds += time.perf_counter() - start
    return probs, seconds, size


def evaluate_methods(ctx: PipelineContext, data: DataRef, trained: list[TrainedRef]) -> EvaluationRef:
    params = ctx.params()
    vocab = params.attributes(ctx.article)
    test = load_split(ctx, data, "test")
    images, labels = test.images.numpy(), test.labels.numpy()
    device = resolve_device(params.device)
    train_seconds: dict[str, float] = {}
    for ref in trained:
        method = "progressive" if ref.kind == "stage" else ref.name.split(":")[0]
        train_seconds[method] = train_seconds.get(method, 0.0) + ref.seconds
    reports: dict[str, EvaluationReport] = {}
    costs: dict[str, dict[str, float]] = {}
    mix: dict[str, dict[str, float]] = {}
    for method, paths in _method_files(ctx, trained).items():
        probs, seconds, size_mb = _predict(paths, images, params.train.batch_size, device)
        if method == "progressive":
            mix = {a: predicted_mix(probs[a], vocab[a]) for a in vocab if a in probs}
        reports[method] = evaluate(method, probs, labels, list(vocab), vocab, params.evaluation.pr_points)
        costs[method] = {"size_mb": size_mb,
                         "train_seconds": train_seconds.get(method, 0.0),
                         "inference_ms_per_image": 1000 * seconds / max(len(images), 1)}
    out = ctx.outputs("evaluation")
    out.mkdir(parents=True, exist_ok=True)
    markdown = _write_tables(out, reports, costs, params.registry.min_adjusted_balanced_accuracy)
    summaries = {m: r.summaries() for m, r in reports.items()}
    accuracy = {m: {a: v["accuracy"] for a, v in s.items()} for m, s in summaries.items()}
    extra = {m: {k: {a: v[k] for a, v in s.items()} for k in _EXTRA} for m, s in summaries.items()}
    (out / "metrics.json").write_text(json.dumps({m: {**accuracy[m], **costs[m], **extra[m]} for m in reports},
                                                 indent=1))
    _write_plots(out, reports)
    if ctx.flow_run_id:
        _log(Store(ctx.store), ctx.flow_run_id, out, summaries, costs)
    task_logger().info("evaluation on %d test images:\n%s", len(images), markdown)
    return EvaluationRef(str(out), markdown, accuracy, summaries, mix)


_EXTRA = ("macro_f1", "balanced_accuracy")  # beside accuracy in every table and metrics file
_TITLES = {"accuracy": "Test accuracy (%) per attribute and method (the paper's measure); costs below.",
           "macro_f1": "Macro-F1 (%): the mean F1 over the classes present; majority = always answering it.",
           "balanced_accuracy": "Balanced accuracy (%): the mean per-class recall; majority = 100/K, chance."}


def _write_tables(out: Path, reports: dict[str, EvaluationReport], costs: dict[str, dict[str, float]],
                  min_adjusted: float) -> str:
    """comparison.csv (accuracy and costs; comparison_<metric>.csv for the others) and comparison.md
    with all of them, and a line naming every attribute no better than the majority class."""
    cost = pd.DataFrame(costs).round(3)
    cost.index.name = "attribute"
    sections = []
    for metric in ("accuracy", *_EXTRA):
        table = comparison_table(reports, metric)
        if metric == "accuracy":
            table = pd.concat([table, cost.reindex(columns=table.columns)])
        table.to_csv(out / ("comparison.csv" if metric == "accuracy" else f"comparison_{metric}.csv"))
        sections.append(_TITLES[metric] + "\n\n" + (table.to_markdown() if _has_tabulate() else table.to_string()))
    sections.append(_learning_line(reports, min_adjusted))
    markdown = "\n\n".join(sections)
    (out / "comparison.md").write_text(markdown + "\n")
    return markdown


def _learning_line(reports: dict[str, EvaluationReport], min_adjusted: float) -> str:
    """Which (method, attribute) pairs have not learnt: chance-adjusted balanced accuracy at or below
    registry.min_adjusted_balanced_accuracy (0 when that gate is off)."""
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


def _write_plots(out: Path, reports: dict[str, EvaluationReport]) -> None:
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


def _log(store: Store, run_id: str, out: Path, summaries: dict, costs: dict) -> None:
    metrics = {f"test.{m}.{a}.{k}": v for m, attrs in summaries.items() for a, values in attrs.items()
               for k, v in values.items() if k in ("accuracy", *_EXTRA)}
    metrics.update({f"test.{m}.{k}": v for m, c in costs.items() for k, v in c.items()})
    store.log_metrics(run_id, {k: v for k, v in metrics.items() if not np.isnan(v)})
    store.log_artifacts(run_id, out, "evaluation")


evaluate_task = task(evaluate_methods, name="evaluate")
