"""Evaluate the progressive model against the baselines on the same test images (paper section 4).

Writes under outputs/<article>/evaluation/: the paper's table (comparison.csv / .md), metrics.json
(DVC metrics: accuracy per attribute and overall, model size, train and inference time per method),
pr.csv (DVC plots), pr_curves.png and confusion/<method>.png; logs all of it
to the flow's MLflow run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from progattr_core.metrics import EvaluationReport, comparison_table, evaluate
from progattr_core.model import load_model, resolve_device
from progattr_core.predict import predict_proba
from tasks.context import DataRef, PipelineContext, task_logger
from tasks.mlflow_store import Store
from tasks.training import TrainedRef, baseline_path, load_split


@dataclass(frozen=True)
class EvaluationRef:
    out_dir: str
    table_markdown: str
    accuracy: dict[str, dict[str, float]]   # method -> attribute (and "overall") -> test accuracy


def _method_files(ctx: PipelineContext, trained: list[TrainedRef]) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {"progressive": [ctx.outputs("progressive", "model.pt")]}
    for ref in trained:
        if ref.kind == "baseline":
            files.setdefault(ref.name.split(":")[0], []).append(baseline_path(ctx, ref.name))
    return files


def _predict(paths: list[Path], images: np.ndarray, batch_size: int, device) -> tuple[dict[str, np.ndarray], float]:
    """Probabilities per attribute from one method's model file(s), and seconds spent predicting."""
    probs: dict[str, np.ndarray] = {}
    seconds = 0.0
    for path in paths:
        model = load_model(path)
        start = time.perf_counter()
        probs.update(predict_proba(model, images, batch_size, device))
        seconds += time.perf_counter() - start
    return probs, seconds


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
    for method, paths in _method_files(ctx, trained).items():
        probs, seconds = _predict(paths, images, params.train.batch_size, device)
        reports[method] = evaluate(method, probs, labels, list(vocab), vocab, params.evaluation.pr_points)
        costs[method] = {"size_mb": sum(p.stat().st_size for p in paths) / 2**20,
                         "train_seconds": train_seconds.get(method, 0.0),
                         "inference_ms_per_image": 1000 * seconds / max(len(images), 1)}
    out = ctx.outputs("evaluation")
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(reports)
    markdown = _write_tables(out, table, costs)
    accuracy = {m: {**{a: r.per_attribute[a].accuracy for a in r.per_attribute}, "overall": r.overall}
                for m, r in reports.items()}
    (out / "metrics.json").write_text(json.dumps({m: {**accuracy[m], **costs[m]} for m in reports}, indent=1))
    _write_plots(out, reports)
    if ctx.flow_run_id:
        _log(Store(ctx.store), ctx.flow_run_id, out, accuracy, costs)
    task_logger().info("evaluation on %d test images:\n%s", len(images), markdown)
    return EvaluationRef(str(out), markdown, accuracy)


def _write_tables(out: Path, table: pd.DataFrame, costs: dict[str, dict[str, float]]) -> str:
    cost = pd.DataFrame(costs).round(3)
    cost.index.name = "attribute"
    full = pd.concat([table, cost.reindex(columns=table.columns)])
    full.to_csv(out / "comparison.csv")
    markdown = full.to_markdown() if _has_tabulate() else full.to_string()
    (out / "comparison.md").write_text("Test accuracy (%) per attribute and method; costs below.\n\n" + markdown + "\n")
    return markdown


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


def _log(store: Store, run_id: str, out: Path, accuracy: dict, costs: dict) -> None:
    metrics = {f"test.{m}.{a}.accuracy": v for m, accs in accuracy.items() for a, v in accs.items()}
    metrics.update({f"test.{m}.{k}": v for m, c in costs.items() for k, v in c.items()})
    store.log_metrics(run_id, {k: v for k, v in metrics.items() if not np.isnan(v)})
    store.log_artifacts(run_id, out, "evaluation")


evaluate_task = task(evaluate_methods, name="evaluate")
