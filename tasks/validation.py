"""The project's one Great Expectations module: label-sparsity validation of a manifest.

The suite is generated from the taxonomy (issue 4, step 2): required columns, unique image ids,
values inside each attribute's vocabulary, every image file present, per-attribute label coverage
and per-class minimum training counts above thresholds from params, and the fully-labelled fraction.
Results are written as JSON plus GX Data Docs HTML, whether the data passes or not.

A run keeps its report in a memo folder with the digest of everything the suite reads: the checked
columns (an image's hash and path only as present or not: no expectation reads their values; a changed
image of an import folder gets a new path, in a new part), the file presence, the
class counts, the thresholds, the Great Expectations version and this module's code. The next run whose
digest is the same (a nightly where only image content changed, or nothing) reuses that report instead
of running Great Expectations again (bench/README.md, "Catalogue scale"); any other change runs the whole suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
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
    reused: bool = False               # the report of an earlier run whose checked content was the same


def prepare_frames(manifest: pd.DataFrame, data_root: str | Path,
                   vocab: dict[str, tuple[str, ...]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables the suite checks: one row per image, and one row per (attribute, class)."""
    missing = [c for c in (*BASE_COLUMNS, *vocab) if c not in manifest]
    images = manifest.copy()
    for col in missing:  # derived columns need them; dropped again so the column-set check sees the gap
        images[col] = pd.Series([None] * len(images), dtype="object")
    root = Path(data_root)
    images[_KEY] = images["image_id"].astype("string")
    images["file_present"] = files_present(root, images["path"].tolist())
    labelled = images[list(vocab)].notna()
    images["fully_labelled"] = labelled.all(axis=1).astype(float)
    train = images[images["split"] == "train"]
    rows = [{_KEY: f"{attr}={cls}", "attribute": attr, "train_count": int((train[attr] == cls).sum())}
            for attr, classes in vocab.items() for cls in classes]
    images = images.astype({a: "object" for a in vocab}).drop(columns=missing)
    return images, pd.DataFrame(rows)


def files_present(root: Path, paths: list[object]) -> list[bool]:
    """Whether each path (relative to `root`) is a file, symlinks followed. A folder holding many of them is
    listed once (`os.scandir`: no system call per file, ~10 µs each here), the others are stat'ed one by one."""
    by_folder: dict[str, list[tuple[int, str]]] = {}
    for i, path in enumerate(paths):
        if isinstance(path, str):
            head, _, name = path.rpartition("/")
            by_folder.setdefault(head, []).append((i, name))
    present = [False] * len(paths)
    for head, items in by_folder.items():
        folder = os.path.join(root, head)
        if len(items) < 64:
            for i, name in items:
                present[i] = os.path.isfile(os.path.join(folder, name))
            continue
        try:
            with os.scandir(folder) as entries:
                files = {e.name for e in entries if e.is_file()}
        except OSError:  # not there, or not a folder
            files = set()
        for i, name in items:
            present[i] = name in files
    return present


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


def memo_path(cache_dir: str | Path, name: str) -> Path:
    """Where the last report of the validations called `name` is kept: <data.cache>/validation/<name>."""
    return Path(cache_dir) / "validation" / name


def checked_digest(frames: dict[str, pd.DataFrame], article: str, vocab: dict[str, tuple[str, ...]],
                   limits: ValidationParams) -> str:
    """The digest of what the suite reads: equal digests give equal results."""
    h = hashlib.sha256()
    h.update(json.dumps([article, {a: list(v) for a, v in vocab.items()}, asdict(limits),
                         version("great_expectations")], sort_keys=True, default=str).encode())
    h.update(Path(__file__).read_bytes())  # the suite and how it runs
    for name, frame in sorted(frames.items()):
        # read only as present or not (file_present is its own column)
        frame = frame.assign(**{c: frame[c].notna() for c in ("sha256", "path") if c in frame})
        h.update(json.dumps([name, list(frame.columns), [str(t) for t in frame.dtypes]]).encode())
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        h.update(frame.isna().to_numpy().tobytes())  # a missing value apart from the text "None"
    return h.hexdigest()


def _reuse(memo: Path, digest: str, report_dir: Path) -> ValidationOutcome | None:
    """The memo's outcome, its report copied to `report_dir`, when its digest is `digest`; else None."""
    try:
        kept = json.loads((memo / "summary.json").read_text())
        if json.loads((memo / "digest.json").read_text()).get("digest") != digest:
            return None
        kept["failures"] = tuple(kept["failures"])
        outcome = replace(ValidationOutcome(**kept), report_dir=str(report_dir), reused=True)
    except (OSError, ValueError, TypeError, KeyError):
        return None  # none yet, or from another version of this module: run the suite
    if report_dir.exists():
        shutil.rmtree(report_dir)
    shutil.copytree(memo, report_dir, ignore=shutil.ignore_patterns("digest.json"))
    (report_dir / "summary.json").write_text(json.dumps(asdict(outcome), indent=1))
    return outcome


def _remember(memo: Path, digest: str, report_dir: Path) -> None:
    """The report into the memo folder (replaced whole: a reader sees the old memo or the new one)."""
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{memo.name}.", dir=memo.parent))
    shutil.copytree(report_dir, tmp, dirs_exist_ok=True)
    (tmp / "digest.json").write_text(json.dumps({"digest": digest}))
    old = memo.with_name(f".{memo.name}.old.{os.getpid()}")
    if memo.exists():
        os.replace(memo, old)
    os.replace(tmp, memo)
    shutil.rmtree(old, ignore_errors=True)


def validate_manifest(manifest: pd.DataFrame, data_root: str | Path, article: str,
                      vocab: dict[str, tuple[str, ...]], limits: ValidationParams,
                      report_dir: str | Path, memo: str | Path | None = None) -> ValidationOutcome:
    """Run the generated suite; write result.json, summary.json and Data Docs under `report_dir`.
    `memo`: a folder keeping the last report with its digest (`checked_digest`); a run whose digest is the
    memo's reuses that report (`reused` in the outcome) instead of running Great Expectations. None: always run."""
    frames = dict(zip(("images", "class_counts"), prepare_frames(manifest, data_root, vocab), strict=True))
    report_dir = Path(report_dir)
    digest = checked_digest(frames, article, vocab, limits) if memo is not None else ""
    if memo is not None and (kept := _reuse(Path(memo), digest, report_dir)) is not None:
        return kept
    suites = {name: [e for e in exps if getattr(e, "column", None) in (None, *frames[name].columns)]
              for name, exps in build_suites(article, vocab, limits).items()}
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
    if memo is not None:
        _remember(Path(memo), digest, report_dir)
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
