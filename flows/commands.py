"""Handlers of `progattr pipeline ...` and `progattr demo` (registered in progattr_core/cli.py).

`progattr pipeline <stage>` runs one pipeline step with the same task code as the Prefect flow, but
called directly (no Prefect engine): these are the commands of the `dvc.yaml` stages. Each step
records an MLflow run `dvc-<stage>`; state between steps travels in files under outputs/<article>/.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

STAGES = ("ingest", "validate", "slice", "train", "baselines", "evaluate")


def add_pipeline_arguments(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    for stage in STAGES:
        p = sub.add_parser(stage, parents=[common], help=f"the `{stage}` step alone (a dvc.yaml stage)")
        p.add_argument("--article", required=True)
        if stage == "ingest":
            p.add_argument("--source", default="", help="a folder, or s3://bucket/prefix (default: params pipeline.source)")
            p.add_argument("--no-track", action="store_true", help="do not `dvc add` the raw folder "
                           "(inside `dvc repro`, which holds DVC's lock)")
        p.set_defaults(handler=run_stage_command, stage=stage)
    run = sub.add_parser("run", parents=[common], help="the whole training flow in Prefect")
    run.add_argument("--article", required=True)
    run.add_argument("--source", default="", help="a folder, or s3://bucket/prefix (default: params pipeline.source)")
    run.set_defaults(handler=run_flow_command)


def run_stage_command(args: argparse.Namespace) -> int:
    from tasks.context import end_flow_run, make_context, start_flow_run

    ctx = make_context(args.params, args.article, args.overrides)
    ctx = start_flow_run(ctx, f"dvc-{args.stage}-{args.article}", {"dvc_stage": args.stage})
    try:
        result = _STEPS[args.stage](ctx, args)
    except BaseException:
        end_flow_run(ctx, ok=False)
        raise
    end_flow_run(ctx, ok=True)
    if result:
        print(result)
    return 0


def _data(ctx):
    from tasks.context import DataRef

    path = ctx.outputs("data_version.json")
    if not path.is_file():
        from progattr_core.errors import DataValidationError

        raise DataValidationError(f"{path} not found: run `progattr pipeline ingest` first")
    return DataRef(**json.loads(path.read_text()))


def _ingest(ctx, args) -> str:
    from tasks.ingest import ingest

    data = ingest(ctx, args.source or ctx.params().pipeline.source, track=not args.no_track)
    return f"{data.n_images} images, data version {data.data_version}"


def _validate(ctx, args) -> str:
    from tasks.ingest import validate

    outcome = validate(ctx, _data(ctx))
    return f"validation passed ({outcome.n_expectations} expectations); report {outcome.report_dir}"


def _slice(ctx, args) -> str:
    from tasks.ingest import slice_data

    return f"slices in {slice_data(ctx, _data(ctx))}"


def _train(ctx, args) -> str:
    from progattr_core.schedule import build_schedule
    from tasks.context import train_key
    from tasks.training import export_progressive, run_stage

    data = _data(ctx)
    key = train_key(ctx, data)
    stages = []
    for stage in build_schedule(ctx.params(), ctx.article):
        stages.append(run_stage(ctx, data, key, stage.index, stages[-1] if stages else None))
    return f"progressive model {export_progressive(ctx, stages)}"


def _baselines(ctx, args) -> str:
    from tasks.context import baseline_key
    from tasks.training import baseline_jobs, run_baseline, write_refs

    data = _data(ctx)
    key = baseline_key(ctx, data)
    refs = [run_baseline(ctx, data, key, method, attr) for method, attr in baseline_jobs(ctx)]
    write_refs(ctx.outputs("baselines", "baselines.json"), refs)
    return f"{len(refs)} baseline models in {ctx.outputs('baselines')}"


def _evaluate(ctx, args) -> str:
    from tasks.evaluation import evaluate_methods
    from tasks.training import read_refs

    refs = read_refs(ctx.outputs("progressive", "stages.json")) + read_refs(ctx.outputs("baselines", "baselines.json"))
    return evaluate_methods(ctx, _data(ctx), refs).table_markdown


_STEPS: dict[str, Callable] = {"ingest": _ingest, "validate": _validate, "slice": _slice, "train": _train,
                               "baselines": _baselines, "evaluate": _evaluate}


def _prefect_defaults(root: Path) -> None:
    """What the Makefile exports, for runs that do not come through it: no telemetry (the offline
    server logs errors otherwise), a start-up timeout that fits 2 cores, state in <project>/.prefect."""
    import logging
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    for noisy in ("httpx", "great_expectations"):  # a line per API call / per GX config save otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_flow_command(args: argparse.Namespace) -> int:
    _prefect_defaults(Path(args.params).resolve().parent)
    from flows.train_flow import run_train_flow

    result = run_train_flow(args.article, args.source, args.params, args.overrides)
    print(result["table"])
    _print_registry(result)
    return 0


def _print_registry(result: dict) -> None:
    reg = result["registry"]
    alias = "@challenger" if reg["challenger"] else "no alias (gates: " + "; ".join(reg["reasons"]) + ")"
    print(f"\nregistered: {reg['name']} version {reg['version']} -> {alias}")
    if reg["champion_version"] is None:
        article = reg["name"].removeprefix("progattr-")
        gates = "" if reg["challenger"] else " --override-gates"
        print(f"no @champion yet for {reg['name']}: approving a version is a person's decision, e.g.\n"
              f"  .venv/bin/progattr registry approve --article {article} --version {reg['version']}"
              f" --reason '...'{gates}")


def run_demo(args: argparse.Namespace) -> int:
    """Synthetic catalogue -> DVC -> the training flow -> table, registry, and where to look."""
    import time

    from progattr_core.config import load_params
    from tasks import dvc_store

    start = time.perf_counter()
    params_path = Path(args.params).resolve()
    root = params_path.parent
    _prefect_defaults(root)
    params = load_params(params_path, args.overrides)
    raw = root / params.pipeline.source
    manifest = _ensure_synth(params, args.article, raw)
    _say_expected_time(params, args.article, manifest)
    if not dvc_store.is_repo(root):
        dvc_store.run_dvc(root, "init", "-q", *([] if (root / ".git").exists() else ["--no-scm"]))
    from flows.train_flow import run_train_flow

    result = run_train_flow(args.article, str(raw.relative_to(root)), str(params_path), list(args.overrides))
    pushed = _push(root)
    print("\n== progattr demo: test accuracy, macro-F1 and balanced accuracy (%) per attribute and method ==")
    print(result["table"])
    _print_registry(result)
    print(f"\ndata version {result['data']['data_version']} (DVC: {pushed})")
    print(f"stages trained this run: {result['stages_trained'] or 'none (all reused from MLflow)'}")
    print(f"\nMLflow UI:  .venv/bin/mlflow ui --backend-store-uri {result['tracking_uri']} --port 5000"
          "  -> http://127.0.0.1:5000")
    print("Prefect UI: PREFECT_HOME=.prefect .venv/bin/prefect server start  -> http://127.0.0.1:4200"
          " (this run's flow and task runs are in the .prefect database)")
    print(f"demo finished in {time.perf_counter() - start:.0f}s")
    return 0


def _ensure_synth(params, article: str, raw: Path):
    from progattr_core.data.synth import ensure_catalogue

    return ensure_catalogue(params, article, raw, say=print)[0]


# The demo's work besides training (drawing the catalogue, Prefect's server, validation, DVC, MLflow
# logging, evaluation), in training image passes of the demo's network: ~70 s of such work at ~116
# images/s in the runs of bench/README.md ("Demo and test times"), rounded.
DEMO_OVERHEAD_PASSES = 8000


def _say_expected_time(params, article: str, manifest) -> None:
    """Print, before training, how long the demo should take on this machine."""
    from progattr_core.estimate import estimate_seconds, measure_throughput, planned_work

    attrs = list(params.attributes(article))
    train = manifest[manifest["split"] == "train"]
    work = planned_work(params, article, train[attrs].notna().to_numpy(),
                        int((manifest["split"] == "val").sum()))
    speed = measure_throughput(params)
    training = estimate_seconds(work, speed)
    total = training + DEMO_OVERHEAD_PASSES * speed.seconds_per_image
    m = params.model
    print(f"this machine trains {m.arch} at {m.image_size} px at {speed.images_per_second:.0f} images/s; the demo "
          f"makes {sum(w.passes for w in work):,} training image passes in {len(work)} runs: expect about "
          f"{total / 60:.1f} min (training {training / 60:.1f} min)")


def _push(root: Path) -> str:
    from tasks import dvc_store

    if "remote" not in (root / ".dvc" / "config").read_text(errors="ignore"):
        return "tracked; no remote configured, nothing pushed"
    dvc_store.push(root)
    return "tracked and pushed to the default remote"
