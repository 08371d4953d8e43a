"""Orchestration overhead (issue 8): the training flow's wall time versus the compute inside it.

Runs the real training flow (flows/train_flow.py: Prefect tasks, MLflow on SQLite, a checkpoint per
stage, evaluation, registration) on the built-in catalogue in a scratch project, one task at a time
(`pipeline.max_workers=1`, so the parts add up to the wall time), then splits the wall time with
Prefect's own task-run records and MLflow's per-run `seconds` metric (the fit loops alone):

    training compute   fit loops of every progressive stage and baseline (MLflow metric `seconds`)
    data steps         the ingest, validate and slice tasks (decoding, Great Expectations)
    evaluation         the evaluate task (predicting the test split with every method) and each
                       stage's validation pass after training (MLflow metric `val_seconds`)
    orchestration      the rest: Prefect, MLflow logging, checkpoint files and uploads, registry

The goal (<= 5%) is on orchestration / wall.

    .venv/bin/python -m bench.orchestration --profile quick
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import common
from progattr.cli.common import quiet_tool_logs

log = logging.getLogger("bench.orchestration")
# Prefect task keys start with the task function's name
FIT_TASKS = ("run_stage", "run_baseline")
DATA_TASKS = ("ingest", "validate", "slice_data")
EVALUATE_TASK = "evaluate_methods"
SMALL_DATA = ["validation.min_class_count=1", "validation.min_label_coverage=0.3"]

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"article": "jeans", "n": 40, "set": ["model.image_size=32", "model.split_point=layer4.1",
                                                   "train.batch_size=32", "train.epochs_first=1",
                                                   "baselines.epochs=1", "baselines.methods=[individual]",
                                                   *SMALL_DATA]},
    "quick": {"article": "tops", "n": 600, "set": ["model.image_size=32", *SMALL_DATA]},
    "full": {"article": "tops", "n": None, "set": []},  # params' catalogue size and image size: the demo's flow
}


def make_project(folder: Path, params: Any, article: str, n: int) -> str:
    """A scratch project: params.yaml and the built-in catalogue under data/raw/bench; the source."""
    from progattr_core.data.synth import generate_catalogue

    shutil.copyfile(common.ROOT / "params.yaml", folder / "params.yaml")
    raw = folder / "data" / "raw" / "bench"
    s = params.synth
    generate_catalogue(article, n, raw, params.taxonomy, s.image_size, s.full_label_fraction, s.label_rate,
                       s.label_noise, s.seed, params.data.split, root=raw)
    return "data/raw/bench"


def task_seconds(flow_run_id: str) -> dict[str, float]:
    """Seconds per task name (summed over its runs) from the Prefect API's task-run records."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out: dict[str, float] = {}
    for r in runs:
        name = r.task_key.rsplit("-", 1)[0]
        seconds = (r.total_run_time or timedelta()).total_seconds()
        if r.start_time and r.end_time:  # a cached (resumed) task has no run time but a span
            seconds = max(seconds, (r.end_time - r.start_time).total_seconds())
        out[name] = out.get(name, 0.0) + seconds
    return out


def run_metric(store: Any, name: str) -> float:
    """Sum of an MLflow metric over every stage and baseline run (`seconds`: the fit loops;
    `val_seconds`: a stage's validation pass after training)."""
    return float(sum(r.data.metrics.get(name, 0.0) for kind in ("stage", "baseline")
                     for r in store.search({"kind": kind})))


def run_flow(folder: Path, article: str, overrides: list[str]) -> dict[str, Any]:
    """Warm the Prefect API, then time the training flow; its result, wall seconds and ids."""
    from prefect import get_client

    from flows.train_flow import run_train_flow
    from tasks.context import make_context
    from tracking.store import TAG, Store

    with get_client(sync_client=True) as client:  # an ephemeral server starts here, not inside the timing
        client.api_healthcheck()
    # a new project's MLflow database is created here (a nightly run finds it in place)
    store = Store.of(make_context(folder / "params.yaml", article, overrides, resolve_profile=False).store)
    start = time.perf_counter()
    result = run_train_flow(article, "", str(folder / "params.yaml"), overrides)
    wall = time.perf_counter() - start
    tags = store.client.get_run(result["mlflow_run_id"]).data.tags
    flow_run_id = tags.get("prefect_flow_run_id") or tags.get(TAG + "prefect_flow_run_id")
    return {"wall_s": wall, "fit_s": run_metric(store, "seconds"), "val_s": run_metric(store, "val_seconds"),
            "tasks": task_seconds(flow_run_id),
            "flow_run_id": flow_run_id, "stages": result["stages_trained"]}


def breakdown(run: dict[str, Any]) -> dict[str, float]:
    tasks, wall = run["tasks"], run["wall_s"]
    data = sum(v for k, v in tasks.items() if k in DATA_TASKS)
    evaluation = tasks.get(EVALUATE_TASK, 0.0) + run["val_s"]
    rest = wall - run["fit_s"] - data - evaluation
    return {"wall_s": wall, "training_compute_s": run["fit_s"], "data_steps_s": data, "evaluation_s": evaluation,
            "orchestration_s": rest, "orchestration_pct": 100 * rest / wall,
            "not_fit_pct": 100 * (wall - run["fit_s"]) / wall,
            "fit_tasks_s": sum(v for k, v in tasks.items() if k in FIT_TASKS)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    quiet_tool_logs()
    args, info, started = common.start("Orchestration overhead: training flow wall time vs its compute", argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    prof = PROFILES[args.profile]
    overrides = [*prof["set"], *args.set, "pipeline.max_workers=1"]
    params = common.bench_params(overrides)
    n = prof["n"] or params.synth.n_images
    with tempfile.TemporaryDirectory(prefix="progattr-orch-") as tmp:
        folder = Path(tmp)
        # Prefect creates its home but not the folders above it (a fresh clone has no data/bench yet)
        Path(os.environ.setdefault("PREFECT_HOME", str(common.DATA / "prefect-home"))).mkdir(parents=True,
                                                                                            exist_ok=True)
        source = make_project(folder, params, prof["article"], n)
        overrides.append(f"pipeline.source={source}")  # MLflow: the default SQLite store in the project
        run = run_flow(folder, prof["article"], overrides)
    b = breakdown(run)
    log.info("flow %.1f s: fit %.1f s, orchestration %.1f%%", b["wall_s"], b["training_compute_s"],
             b["orchestration_pct"])
    rows = [[k, round(v, 2), round(100 * v / b["wall_s"], 2)] for k, v in b.items()
            if k.endswith("_s") and k not in ("wall_s", "fit_tasks_s")]
    rows.append(["wall (the flow, end to end)", round(b["wall_s"], 2), 100.0])
    task_rows = [[k, round(v, 2), round(100 * v / b["wall_s"], 2)] for k, v in sorted(run["tasks"].items())]
    title = (f"Training flow, synthetic {prof['article']} ({n} images, {params.model.image_size} px, "
             f"{len(run['stages'])} stages, baselines {list(params.baselines.methods)}; tasks one at a time)")
    tables = [common.table(title, ["part", "seconds", "% of wall"], rows),
              common.table("Prefect task runs (seconds per task, summed over its runs)",
                           ["task", "seconds", "% of wall"], task_rows)]
    goals = [common.goal("orchestration overhead (% of the flow's wall time)", b["orchestration_pct"], 5.0, "<=")]
    notes = ["orchestration = wall - fit loops - data tasks - evaluation (evaluate task + stage validation "
             "passes): Prefect, MLflow logging, checkpoint files and uploads, model export and registration",
             "not timed: the Prefect server's and a new MLflow database's start-up (a nightly run finds both up)",
             f"wall time not spent in fit loops at all: {b['not_fit_pct']:.1f}%",
             "the fit tasks also log metrics and checkpoints: their task time minus the fit loops and validation "
             f"passes is orchestration ({b['fit_tasks_s'] - b['training_compute_s'] - run['val_s']:.1f} s here)"]
    return common.write_results("orchestration", args, {"profile": prof, "overrides": overrides,
                                                        "values": params.to_dict()},
                                tables, {"orchestration / wall": b["orchestration_pct"] / 100}, goals, notes,
                                {"breakdown": b, "tasks": run["tasks"], "stages": run["stages"]}, info, started)


if __name__ == "__main__":
    main()
