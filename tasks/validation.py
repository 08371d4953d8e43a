"""The project's one Great Expectations module: label-sparsity validation of a manifest.

The suite is generated from the taxonomy (issue 4, step 2): required columns, unique image ids,
values inside each attribute's vocabulary, every image file present, per-attribute label coverage
and per-class minimum training counts above thresholds from params, and the fully-labelled fraction.
Results are written as JSON plus GX Data Docs HTML, whether the data passes or not.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from progattr_core.config import ValidationParams

# Great Expectations' one setting, before it is first imported (lazily, below): no telemetry (offline).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

BASE_COLUMNS = ("image_id", "path", "sha256", "article", "split")
SPLITS = ("train", "val", "test")
_KEY = "key"  # row identifier GX reports for unexpected rows: the image id, or attribute=class


@dataclass(frozen=True)
class ValidationOutcome:
    success: bool
    failures: tuple[str, ...]          # one readable line per failing expectation, with its observed value
    n_expectations: int
    fully_labelled_fraction: float
    coverage: dict[str, float]         # attribute -> fraction of images labelled
    report_dir: str                    # result.json, summary.json, data_docs/


def prepare_frames(manifest: pd.DataFrame, data_root: str | Path,
                   vocab: dict[str, tuple[str, ...]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables the suite checks: one row per image, and one row per (attribute, class)."""
    missing = [c for c in (*BASE_COLUMNS, *vocab) if c not in manifest]
    images = manifest.copy()
    for col in missing:  # derived columns need them; dropped again so the column-set check sees the gap
        images[col] = pd.Series([None] * len(images), dtype="object")
    root = Path(data_root)
    images[_KEY] = images["image_id"].astype("string")
    images["file_present"] = [isinstance(p, str) and (root / p).is_file() for p in images["path"]]
    labelled = images[list(vocab)].notna()
    images["fully_labelled"] = labelled.all(axis=1).astype(float)
    train = images[images["split"] == "train"]
    rows = [{_KEY: f"{attr}={cls}", "attribute": attr, "train_count": int((train[attr] == cls).sum())}
            for attr, classes in vocab.items() for cls in classes]
    images = images.astype({a: "object" for a in vocab}).drop(columns=missing)
    return images, pd.DataFrame(rows)


def build_suites(article: str, vocab: dict[str, tuple[str, ...]], limits: ValidationParams) -> dict[str, list]:
    """Expectations per table, generated from the taxonomy and thresholds."""
    import great_expectations.expectations as gxe

    images = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*BASE_COLUMNS, *vocab], exact_match=False),
        gxe.ExpectColumnValuesToBeUnique(column="image_id"),
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("image_id", "path", "sha256", "split")],
        gxe.ExpectColumnValuesToBeInSet(column="article", value_set=[article]),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        gxe.ExpectColumnValuesToBeInSet(column="file_present", value_set=[True]),
        gxe.ExpectColumnMeanToBeBetween(column="fully_labelled", min_value=limits.min_full_label_fraction),
    ]
    for attr, classes in vocab.items():
        images.append(gxe.ExpectColumnValuesToBeInSet(column=attr, value_set=list(classes)))
        images.append(gxe.ExpectColumnValuesToNotBeNull(column=attr, mostly=limits.min_coverage(attr)))
    counts = [gxe.ExpectColumnValuesToBeBetween(column="train_count", min_value=limits.min_class_count)]
    return {"images": images, "class_counts": counts}


def validate_manifest(manifest: pd.DataFrame, data_root: str | Path, article: str,
                      vocab: dict[str, tuple[str, ...]], limits: ValidationParams,
                      report_dir: str | Path) -> ValidationOutcome:
    """Run the generated suite; write result.json, summary.json and Data Docs under `report_dir`."""
    frames = dict(zip(("images", "class_counts"), prepare_frames(manifest, data_root, vocab), strict=True))
    suites = {name: [e for e in exps if getattr(e, "column", None) in (None, *frames[name].columns)]
              for name, exps in build_suites(article, vocab, limits).items()}
    report_dir = Path(report_dir)
    if report_dir.exists():
        shutil.rmtree(report_dir)
    report_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="progattr-gx-") as tmp:
        results = _run_checkpoint(frames, suites, tmp)
        docs = Path(tmp) / "gx" / "uncommitted" / "data_docs" / "local_site"
        if docs.is_dir():
            shutil.copytree(docs, report_dir / "data_docs")
    failures = tuple(_describe(r) for res in results.values() for r in res["results"] if not r["success"])
    images = frames["images"]
    outcome = ValidationOutcome(
        success=not failures, failures=failures,
        n_expectations=sum(len(s) for s in suites.values()),
        fully_labelled_fraction=float(images["fully_labelled"].mean()) if len(images) else 0.0,
        coverage={a: float(images[a].notna().mean()) if len(images) and a in images else 0.0 for a in vocab},
        report_dir=str(report_dir))
    (report_dir / "result.json").write_text(json.dumps(results, indent=1, default=str))
    (report_dir / "summary.json").write_text(json.dumps(asdict(outcome), indent=1))
    return outcome


def _run_checkpoint(frames: dict[str, pd.DataFrame], suites: dict[str, list], project_dir: str) -> dict[str, Any]:
    """One GX checkpoint over both tables in a throw-away file context (Data Docs need one)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="file", project_root_dir=project_dir)
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("manifest")
    definitions = []
    for name, expectations in suites.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = ctx.suites.add(gx.ExpectationSuite(name=name))
        for exp in expectations:
            suite.add_expectation(exp)
        definitions.append(ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite)))
    results = {}
    for name, definition in zip(suites, definitions, strict=True):
        checkpoint = ctx.checkpoints.add(gx.Checkpoint(
            name=f"progattr-{name}", validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="data_docs")],
            # SUMMARY: counts and the first 20 unexpected rows with their keys. COMPLETE listed every one (the
            # ~20,000 unlabelled cells of a 100,000-image article), which cost most of the run's time
            result_format={"result_format": "SUMMARY", "unexpected_index_column_names": [_KEY]}))
        run = checkpoint.run(batch_parameters={"dataframe": frames[name]})
        results[name] = next(iter(run.run_results.values())).to_json_dict()
    return results


def _describe(result: dict[str, Any]) -> str:
    """`type(column, limits): observed ...` for one failing expectation result (JSON form)."""
    cfg = result["expectation_config"]
    kwargs = {k: v for k, v in cfg["kwargs"].items() if k not in ("batch_id", "column", "value_set")}
    head = cfg["type"] + "(" + ", ".join([str(cfg["kwargs"].get("column", "table"))]
                                         + [f"{k}={v}" for k, v in kwargs.items() if k != "column_set"]) + ")"
    res = result.get("result") or {}
    if result.get("exception_info", {}).get("raised_exception"):
        return f"{head}: raised {result['exception_info'].get('exception_message')}"
    if "observed_value" in res:
        extra = f" {res['details']}" if res.get("details") else ""
        return f"{head}: observed {res['observed_value']}{extra}"
    keys = [row.get(_KEY) for row in (res.get("partial_unexpected_index_list") or [])[:5] if isinstance(row, dict)]
    values = (res.get("partial_unexpected_list") or [])[:5]
    return (f"{head}: observed {res.get('unexpected_count')} unexpected rows "
            f"({res.get('unexpected_percent', 0):.1f}%), e.g. values {values} at {keys}")
