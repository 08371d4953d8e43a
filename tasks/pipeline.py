"""The training pipeline, declared once: its steps in order, what each reads and writes, and the params
its outputs depend on.

- `progattr pipeline <step>` runs one step (`run_step`): the commands of the DVC stages;
- `dvc.yaml` is generated from `STEPS` (`progattr pipeline dvc-yaml --write`, tasks/dvc_yaml.py), with
  each stage's code dependencies taken from the import graph of its step function;
- the Prefect flow (flows/train_flow.py) runs the same functions as tasks, in the same order, with the
  training and the baselines fanned out (one task per stage, baseline jobs concurrently).

State between steps travels in files under outputs/<article>/; each step records an MLflow run
`dvc-<step>-<article>`. The imports are inside the functions: a stage's code is what its function reaches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

OUT = "${pipeline.outputs}/${train.article}"


@dataclass(frozen=True)
class Step:
    """One step and its DVC stage: `deps` (data it reads), `params` (keys or sections; `# comment` kept),
    `outs`, and the stage's metrics and plots (path -> DVC options)."""

    name: str
    help: str
    run: Callable[..., str]
    deps: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    metrics: dict[str, dict] = field(default_factory=dict)
    plots: dict[str, dict] = field(default_factory=dict)
    cmd_args: str = ""                   # after `--article ${train.article}` in the stage's command


def run_step(name: str, params_path: str, article: str, overrides: list[str], **options) -> str:
    """`progattr pipeline <name>`: the step alone, with the same task code as the flow."""
    from tasks.context import flow_run, make_context

    ctx = make_context(params_path, article, overrides)
    with flow_run(ctx, f"dvc-{name}-{article}", {"dvc_stage": name}) as ctx:
        return BY_NAME[name].run(ctx, **options)


def _data(ctx):
    """What `ingest` recorded for the article (its manifest and data version)."""
    from progattr_core.errors import DataValidationError
    from tasks.context import DataRef

    path = ctx.outputs("data_version.json")
    if not path.is_file():
        raise DataValidationError(f"{path} not found: run `progattr pipeline ingest` first")
    return DataRef(**json.loads(path.read_text()))


def ingest_step(ctx, source: str = "", track: bool = True) -> str:
    from tasks.ingest import ingest

    data = ingest(ctx, source or ctx.params().pipeline.source, track=track)
    return f"{data.n_images} images, data version {data.data_version}"


def validate_step(ctx) -> str:
    from tasks.ingest import validate

    outcome = validate(ctx, _data(ctx))
    return f"validation passed ({outcome.n_expectations} expectations); report {outcome.report_dir}"


def slice_step(ctx) -> str:
    from tasks.ingest import slice_data

    return f"slices in {slice_data(ctx, _data(ctx))}"


def train_step(ctx) -> str:
    from tasks.training import export_progressive, run_stage, train_progressive

    return f"progressive model {export_progressive(ctx, train_progressive(ctx, _data(ctx), run_stage))}"


def baselines_step(ctx) -> str:
    from tasks.context import baseline_key
    from tasks.training import baseline_jobs, run_baseline, write_refs

    data = _data(ctx)
    key = baseline_key(ctx, data)
    refs = [run_baseline(ctx, data, key, method, attr) for method, attr in baseline_jobs(ctx)]
    write_refs(ctx.outputs("baselines", "baselines.json"), refs)
    return f"{len(refs)} baseline models in {ctx.outputs('baselines')}"


def evaluate_step(ctx) -> str:
    from tasks.evaluation import evaluate_methods
    from tasks.training import read_refs

    refs = read_refs(ctx.outputs("progressive", "stages.json")) + read_refs(ctx.outputs("baselines", "baselines.json"))
    return evaluate_methods(ctx, _data(ctx), refs).table_markdown


_SPLIT = (f"{OUT}/manifest.parquet", f"{OUT}/data_version.json", f"{OUT}/validation/summary.json")
_TRAINING = ("seed", "model", "train", "optimizer", "compute")
_RECIPE = ("taxonomy", "profile  # the named profile applied over model/train (and its values)", "profiles")
_EVAL = f"{OUT}/evaluation"

STEPS = (
    Step("ingest", "source -> the DVC-tracked raw folder -> the article's manifest and data version", ingest_step,
         deps=("${pipeline.source}",), params=("data", "pipeline.source"),
         outs=(f"{OUT}/manifest.parquet", f"{OUT}/data_version.json"),
         cmd_args="--source ${pipeline.source} --no-track"),
    Step("validate", "the Great Expectations gate on label coverage and class counts", validate_step,
         deps=(f"{OUT}/manifest.parquet",),
         params=("validation", "taxonomy", "model.init", "profile  # a profile may set model.init", "profiles"),
         outs=(f"{OUT}/validation",)),
    Step("slice", "per-attribute slices of the manifest", slice_step,
         deps=(f"{OUT}/manifest.parquet", f"{OUT}/validation/summary.json"), params=("taxonomy",),
         outs=("${data.slices}/${train.article}",)),
    Step("train", "the progressive schedule, each stage checkpointed to MLflow", train_step,
         deps=(*_SPLIT, f"{OUT}/baselines  # the teachers of train.distill: baselines run first (a re-run of this "
                        "stage with the same key reuses its MLflow stages)"),
         params=(*_TRAINING, *_RECIPE), outs=(f"{OUT}/progressive",)),
    Step("baselines", "the baselines.methods models, each checkpointed to MLflow", baselines_step,
         deps=_SPLIT, params=(*_TRAINING, "baselines", *_RECIPE), outs=(f"{OUT}/baselines",)),
    Step("evaluate", "every method on the test split: the comparison table, calibration, curves", evaluate_step,
         deps=(f"{OUT}/progressive", f"{OUT}/baselines", f"{OUT}/manifest.parquet"),
         params=("evaluation",
                 "gates.min_adjusted_balanced_accuracy  # which attributes comparison.md flags as not learnt",
                 "serving.target_precision  # each attribute's threshold is chosen to reach it",
                 "serving.target_precision_by_attribute"),
         outs=(f"{_EVAL}/comparison.md", f"{_EVAL}/calibration.json"),
         metrics={f"{_EVAL}/metrics.json": {"cache": False}},
         plots={f"{_EVAL}/comparison.csv": {"cache": False, "template": "bar_horizontal_sorted", "x": "progressive",
                                            "y": "attribute"},
                f"{_EVAL}/pr.csv": {"x": "recall", "y": "precision"},
                f"{_EVAL}/pr_curves.png": {},
                f"{_EVAL}/precision_coverage.csv": {"x": "coverage", "y": "precision"},
                f"{_EVAL}/precision_coverage.png": {},
                f"{_EVAL}/confusion": {}}),
)
BY_NAME = {s.name: s for s in STEPS}
