"""Ingest, validate and slice: the data half of the pipeline, as Prefect tasks.

A source is a folder (local, or an S3 prefix synced by tasks/s3_source.py) holding images and a
manifest, `<article>/manifest.parquet` or `manifest.parquet`, whose paths are relative to the folder
or, for a folder already under the data root, to the data root (what `progattr data synth` writes); or
an import folder in the partitioned layout (`index/manifest.parquet` and `parts/`: what `progattr data
import` writes, progattr_core/data/import_files.py). Ingest brings it under `data.raw`, tracks it with
DVC (a partitioned folder part by part: its new parts and its index), and writes the article's canonical
manifest with paths relative to `data.root`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path, PurePosixPath

from prefect import task

from progattr_core.data.import_files import INDEX, PARTS, is_partitioned, parts_named
from progattr_core.data.manifest import read_manifest, relative_inside, write_manifest
from progattr_core.data.slicing import slice_by_attribute
from progattr_core.errors import DataValidationError
from progattr_core.pretrain import check_no_leakage
from tasks import dvc_store
from tasks.context import DataRef, PipelineContext, task_logger
from tasks.validation import ValidationOutcome, memo_path, validate_manifest
from tracking.store import Store


def _bring_in(ctx: PipelineContext, source: str) -> Path:
    """The raw folder for `source` under data.raw (S3 prefixes are synced, other folders copied)."""
    raw_base = ctx.path(ctx.params().data.raw).resolve()
    if source.startswith("s3://"):
        from tasks.s3_source import sync_prefix

        raw = raw_base / PurePosixPath(source.rstrip("/")).name
        sync_prefix(source, raw)
        return raw
    src = ctx.path(source).resolve()
    if not src.is_dir():
        raise DataValidationError(f"ingest source {source!r} is not a folder (resolved to {src})")
    if relative_inside(src, raw_base) is not None:
        return src
    raw = raw_base / src.name
    copied = _sync_tree(src, raw)
    task_logger().info("brought %s in: %d new or changed files copied to %s", source, copied, raw)
    return raw


def _sync_tree(src: Path, dst: Path) -> int:
    """Copy the files of `src` that `dst` lacks or holds with another size or mtime (copy2 keeps the mtime,
    so the next night skips them: a nightly copies what changed, not the catalogue). Returns the count."""
    copied = 0
    for folder, _, files in os.walk(src, followlinks=True):
        for name in files:
            path = Path(folder) / name
            target = dst / path.relative_to(src)
            try:
                a, b = path.stat(), target.stat()
                if a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns:
                    continue
            except FileNotFoundError:
                pass
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copy2(path, tmp)
            os.replace(tmp, target)
            copied += 1
    return copied


def source_manifest(raw: Path, article: str) -> Path:
    """The manifest of a source folder: <folder>/<article>/manifest.parquet, else <folder>/manifest.parquet,
    else a partitioned import's <folder>/index/manifest.parquet."""
    for candidate in (raw / article / "manifest.parquet", raw / "manifest.parquet", raw / INDEX / "manifest.parquet"):
        if candidate.is_file():
            return candidate
    raise DataValidationError(f"no manifest in {raw}: expected {article}/manifest.parquet, manifest.parquet or "
                              f"{INDEX}/manifest.parquet (`progattr data import`)")


def _relative_to_data_root(df, data_root: Path) -> bool:
    """True when the manifest's paths already start at the data root (`progattr data synth` default)."""
    first = next((p for p in df["path"] if isinstance(p, str)), None)
    return first is not None and (data_root / first).is_file()


def ingest(ctx: PipelineContext, source: str, track: bool = True) -> DataRef:
    """Source -> DVC-tracked raw folder -> the article's manifest; records the data version."""
    log = task_logger()
    params = ctx.params()
    raw = _bring_in(ctx, source)
    root = Path(ctx.root)
    df = read_manifest(source_manifest(raw, ctx.article))
    parts = parts_named(df["path"]) if is_partitioned(raw) else None
    tracked = raw / INDEX if parts is not None else raw  # what the data version is the DVC hash of
    if track and dvc_store.is_repo(root):
        if parts is None:
            version = dvc_store.track(root, raw)
            _push(root, [raw], version)
        else:
            version = dvc_store.track_parts(root, raw, parts)
            _push(root, [*(raw / PARTS / part for part in parts), tracked], version)
    else:
        version = dvc_store.tracked_hash(tracked) or dvc_store.folder_hash(raw)
    if "article" in df:
        df = df[df["article"] == ctx.article].reset_index(drop=True)
    data_root = ctx.path(params.data.root).resolve()
    prefix = relative_inside(raw, data_root)
    if prefix is None:
        raise DataValidationError(f"raw folder {raw} is not under the data root {data_root} (params data.root)")
    if "path" in df and not _relative_to_data_root(df, data_root):
        df["path"] = f"{prefix}/" + df["path"]
    out = write_manifest(df, ctx.outputs("manifest.parquet"))
    splits = df["split"].value_counts().to_dict() if "split" in df else {}
    rel = ctx.relative
    ref = DataRef(rel(out), rel(data_root), version, rel(raw), len(df), {str(k): int(v) for k, v in splits.items()},
                  "folder" if parts is None else "parts")
    ctx.outputs("data_version.json").write_text(json.dumps(asdict(ref), indent=1))
    log.info("ingested %d %s images from %s into %s (data version %s)", len(df), ctx.article, source, raw, version)
    return ref


def _push(root: Path, tracked: list[Path], version: str) -> None:
    """The data version (its tracked folders) to the default DVC remote, if there is one, so that any version
    trained from it can be rebuilt elsewhere (`progattr registry rebuild` pulls it). A remote that fails does
    not stop training: the warning says what to push later."""
    targets = [f"{relative_inside(folder, root)}.dvc" for folder in tracked]
    try:
        dvc_store.push(root, *targets)  # no default remote: nothing to do
    except dvc_store.DvcError as exc:
        task_logger().warning("data version %s was not pushed (a rebuild of what trains on it needs it: "
                              "`dvc push %s` later): %s", version, " ".join(targets), exc)


def validate(ctx: PipelineContext, data: DataRef) -> ValidationOutcome:
    """Run the generated GX suite; log its report to MLflow pass or fail; raise on failure."""
    params = ctx.params()
    df = read_manifest(ctx.path(data.manifest))
    outcome = validate_manifest(df, ctx.path(data.data_root), ctx.article, params.attributes(ctx.article),
                                params.validation, ctx.outputs("validation"),
                                memo_path(ctx.path(params.data.cache), ctx.article))
    if ctx.flow_run_id:
        store = Store.of(ctx.store)
        store.log_artifacts(ctx.flow_run_id, outcome.report_dir, "validation")
        store.log_metrics(ctx.flow_run_id, {"validation.fully_labelled_fraction": outcome.fully_labelled_fraction,
                                            **{f"validation.coverage.{a}": c for a, c in outcome.coverage.items()}})
        store.set_tags(ctx.flow_run_id, {"validation": "passed" if outcome.success else "failed"})
    if not outcome.success:
        raise DataValidationError(
            f"{data.manifest}: {len(outcome.failures)} of {outcome.n_expectations} expectations failed "
            f"(report: {outcome.report_dir}):\n  " + "\n  ".join(outcome.failures) + _remedies(ctx.article, outcome))
    check_no_leakage(params.model.init, df.loc[df["split"] == "test", "sha256"],
                     f"{ctx.article} (data version {data.data_version})")
    task_logger().info("validation passed%s: %d expectations, fully-labelled fraction %.3f, coverage %s",
                       " (the checked content equals the last run's: its report reused)" if outcome.reused else "",
                       outcome.n_expectations, outcome.fully_labelled_fraction,
                       {a: round(c, 3) for a, c in outcome.coverage.items()})
    return outcome


def _remedies(article: str, outcome: ValidationOutcome) -> str:
    """What a data team does about the failures a real catalogue hits first (a long tail of rare classes,
    an attribute few images carry), as lines after them; "" when none applies."""
    lines = []
    sparse = sorted({f.split("(", 1)[1].split(",", 1)[0] for f in outcome.failures
                     if f.startswith("expect_column_values_to_not_be_null(") and "mostly=" in f})
    if sparse:
        floors = ", ".join(f"{a}: {max(0.0, round(outcome.coverage.get(a, 0.0) - 0.05, 2))}" for a in sparse)
        lines.append(f"too few images labelled for {', '.join(sparse)}: label more, or, if sparse by nature, give "
                     f"each its own floor: --set 'validation.min_label_coverage_by_attribute={{{floors}}}'")
    if any(f.startswith("expect_column_values_to_be_between(train_count") for f in outcome.failures):
        lines.append(f"classes with too few training images (the attribute=class pairs above): drop them from "
                     f"taxonomy.{article}.<attribute> in params.yaml (a new import then drops their labels and keeps "
                     f"the rows), merge them into a broader class at import, or lower validation.min_class_count")
    return "".join(f"\nwhat to do: {line}" for line in lines)


def slice_data(ctx: PipelineContext, data: DataRef) -> str:
    """Per-attribute slices (core slicing) under data.slices/<article>/; class counts go to MLflow."""
    params = ctx.params()
    df = read_manifest(ctx.path(data.manifest), params.taxonomy)
    out = ctx.path(params.data.slices)
    summary = slice_by_attribute(df, ctx.article, params.attributes(ctx.article), out)
    if ctx.flow_run_id:
        Store.of(ctx.store).log_artifacts(ctx.flow_run_id, out / ctx.article, "slices")
    task_logger().info("slices: %s", summary["attributes"])
    return str(out / ctx.article)


ingest_task = task(ingest, name="ingest")
slice_task = task(slice_data, name="slice")
validate_task = task(validate, name="validate")
