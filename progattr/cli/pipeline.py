"""The flows a user runs: `progattr pipeline ...`, `demo`, `nightly`, `branch-add` and `tag`.

`progattr pipeline run` is the training flow in Prefect; `progattr pipeline <step>` runs one of the
steps tasks/pipeline.py declares, with the same task code, called directly (no Prefect engine): these
are the commands of the `dvc.yaml` stages, and `progattr pipeline dvc-yaml` checks (or writes) that file.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .common import common_parent, print_json, quiet_tool_logs

SOURCE_HELP = "a folder, or s3://bucket/prefix (default: params pipeline.source)"


def add_pipeline_parser(subparsers: argparse._SubParsersAction) -> None:
    common = common_parent()
    pipeline = subparsers.add_parser("pipeline", help="the training pipeline: the Prefect flow, or one step (dvc.yaml)")
    from tasks.pipeline import STEPS  # the steps, declared once (dvc.yaml is generated from them)

    names = [step.name for step in STEPS]
    sub = pipeline.add_subparsers(dest="pipeline_command", required=True,
                                  metavar="{run," + ",".join(names) + ",dvc-yaml}")
    for step in STEPS:
        p = sub.add_parser(step.name, parents=[common], help=f"{step.help} (the `{step.name}` step alone, a dvc.yaml "
                           "stage)")
        p.add_argument("--article", required=True)
        if step.name == "ingest":
            p.add_argument("--source", default="", help=SOURCE_HELP)
            p.add_argument("--no-track", action="store_true", help="do not `dvc add` the raw folder "
                           "(inside `dvc repro`, which holds DVC's lock)")
        p.set_defaults(handler=run_stage_command, stage=step.name)
    run = sub.add_parser("run", parents=[common], help="the whole training flow in Prefect")
    run.add_argument("--article", required=True)
    run.add_argument("--source", default="", help=SOURCE_HELP)
    run.set_defaults(handler=run_flow_command)
    generate = sub.add_parser("dvc-yaml", help="check (or --write) dvc.yaml and pretrain/dvc.yaml against the steps "
                              "tasks/pipeline.py declares")
    generate.add_argument("--write", action="store_true", help="write the files that differ")
    generate.set_defaults(handler=run_dvc_yaml)


def add_flow_parsers(subparsers: argparse._SubParsersAction) -> None:
    """`demo`, `nightly`, `branch-add` and `tag`: the flows besides the training pipeline."""
    demo = subparsers.add_parser("demo", parents=[common_parent()], help="synthetic catalogue -> DVC -> training "
                                 "flow -> comparison table and registry (`make demo`)")
    demo.add_argument("--article", default="tops")
    demo.set_defaults(handler=run_demo)
    nightly = subparsers.add_parser("nightly", parents=[common_parent()], help="the nightly flow: ingest; announce "
                                    "new attributes; retrain unless data and params are those of a registered version")
    nightly.add_argument("--article", required=True)
    nightly.add_argument("--source", default="", help=SOURCE_HELP)
    nightly.set_defaults(handler=run_nightly)
    branch = subparsers.add_parser("branch-add", parents=[common_parent()], help="add one attribute's Branch to the "
                                   "article's champion (else latest) model and register the result")
    branch.add_argument("--article", required=True)
    branch.add_argument("--attribute", required=True, help="must already be in the article's taxonomy in params")
    branch.add_argument("--source", default="", help=SOURCE_HELP)
    branch.add_argument("--mode", default="", choices=["", "frozen_base", "progressive"],
                        help="default: params branch_add.mode")
    branch.set_defaults(handler=run_branch_add)
    tag = subparsers.add_parser("tag", parents=[common_parent()], help="batch-tag a catalogue with the champion: "
                                "the accepted tags (tags.csv) and a review queue of the rest (review.csv)")
    tag.add_argument("--article", required=True)
    tag.add_argument("--source", required=True, help="a folder, s3://bucket/prefix, or 'manifest' (its unlabelled cells)")
    tag.add_argument("--only-missing", action="store_true", help="skip cells the manifest already labels")
    tag.add_argument("--output", help="output folder (default <serving.tag_output>/<article>)")
    tag.set_defaults(handler=run_tag)
    review = subparsers.add_parser("review", help="the review loop: the answers `tag` was least sure of, to people "
                                   "and back into the catalogue")
    rsub = review.add_subparsers(dest="review_command", required=True, metavar="{export,import}")
    export = rsub.add_parser("export", parents=[common_parent()], help="the queue's next N items as a contact sheet "
                             "(sheet.html) and a table to fill (labels.csv)")
    export.add_argument("--article", required=True)
    export.add_argument("--n", type=int, default=200, help="how many items, least sure first (default 200)")
    export.add_argument("--queue", help="review.csv (default <serving.tag_output>/<article>/review.csv)")
    export.add_argument("--out", help="folder for sheet.html and labels.csv (default <serving.tag_output>/<article>/"
                        "review-<UTC time>)")
    export.set_defaults(handler=run_review_export)
    imp = rsub.add_parser("import", parents=[common_parent()], help="a filled labels.csv into the catalogue the "
                          "pipeline ingests; the next nightly run retrains on it")
    imp.add_argument("--article", required=True)
    imp.add_argument("--table", required=True, help="the filled labels.csv (long format: sha256, attribute, value, "
                     "annotator)")
    imp.add_argument("--source", default="", help="the catalogue folder whose manifest gets the labels (default: "
                     "params pipeline.source)")
    imp.set_defaults(handler=run_review_import)


def run_stage_command(args: argparse.Namespace) -> int:
    from tasks.pipeline import run_step

    options = {"source": args.source, "track": not args.no_track} if args.stage == "ingest" else {}
    result = run_step(args.stage, args.params, args.article, args.overrides, **options)
    if result:
        print(result)
    return 0


def run_dvc_yaml(args: argparse.Namespace) -> int:
    from tasks import dvc_yaml

    if args.write:
        changed = dvc_yaml.write()
        print(f"wrote {', '.join(changed)}" if changed else "dvc.yaml and pretrain/dvc.yaml are up to date")
        return 0
    stale = dvc_yaml.stale()
    if stale:
        print(f"{', '.join(stale)} differ from tasks/pipeline.py's steps: run `progattr pipeline dvc-yaml --write`",
              file=sys.stderr)
        return 1
    print("dvc.yaml and pretrain/dvc.yaml are what tasks/pipeline.py's steps generate")
    return 0


def run_flow_command(args: argparse.Namespace) -> int:
    quiet_tool_logs()
    from flows.train_flow import run_train_flow

    result = run_train_flow(args.article, args.source, args.params, args.overrides)
    print(f"recipe: {result['recipe']}\n")
    print(result["table"])
    _print_registry(result, args)
    return 0


def _print_registry(result: dict, args: argparse.Namespace) -> None:
    reg = result["registry"]
    alias = "@challenger" if reg["challenger"] else "no alias (gates: " + "; ".join(reg["reasons"]) + ")"
    print(f"\nregistered: {reg['name']} version {reg['version']} -> {alias}")
    unlearnt = [r.split(":", 1)[0] for r in reg["reasons"] if ": has not learnt:" in r]
    if unlearnt:
        _print_learning_advice(unlearnt, reg["name"].removeprefix("progattr-"), result["resolved"], args)
    if reg["champion_version"] is None and not unlearnt:  # never advise approving a model that learnt nothing
        article = reg["name"].removeprefix("progattr-")
        gates = "" if reg["challenger"] else " --override-gates"
        print(f"no @champion yet for {reg['name']}: approving a version is a person's decision, e.g.\n"
              f"  .venv/bin/progattr registry approve --article {article} --version {reg['version']}"
              f" --reason '...'{gates}")


def _print_learning_advice(unlearnt: list[str], article: str, resolved: dict[str, str], args: argparse.Namespace
                           ) -> None:
    """What to train next when attributes answer the majority class, best measured first (gates.learning_advice),
    from what the run resolved (`resolved`: params key -> value, `profile: auto` applied)."""
    from progattr_core.gates import learning_advice

    advice = learning_advice(resolved)
    print(f"{', '.join(unlearnt)}: not learnt (always the majority class or no better). "
          + ("Try, best measured first:" if advice else "Every measured remedy is in use: more labelled images of "
             "the rare classes, or a larger model.image_size, are what is left."))
    given = " ".join(shlex.quote(o) for o in args.overrides)
    where = "" if args.params == "params.yaml" else f" --params {shlex.quote(str(args.params))}"
    for why, sets in advice:
        print(f"  {why}:\n    .venv/bin/progattr pipeline run --article {article}{where} --set "
              f"{given + ' ' if given else ''}{' '.join(sets)}")


def run_nightly(args: argparse.Namespace) -> int:
    """Exit 75 (EX_TEMPFAIL) when another nightly run of the article holds its lock: this one did nothing."""
    quiet_tool_logs()
    from flows.nightly import nightly_flow
    from progattr_core.locks import LockBusy

    result = nightly_flow(args.article, args.source, args.params, args.overrides)
    print_json(result)
    if result.get("reason") == "busy":
        print(f"progattr nightly: {result['message']}; this run did nothing", file=sys.stderr)
        return LockBusy.exit_code
    return 0


def run_branch_add(args: argparse.Namespace) -> int:
    quiet_tool_logs()
    from flows.branch_add import branch_add_flow

    print_json(branch_add_flow(args.article, args.attribute, args.source, args.mode, args.params, args.overrides))
    return 0


def run_tag(args: argparse.Namespace) -> int:
    quiet_tool_logs()
    from flows.tag_catalogue import tag_catalogue_flow

    print_json(tag_catalogue_flow(args.source, args.article, args.params, args.overrides, args.only_missing,
                                  args.output))
    return 0


def run_review_export(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from tasks.review import export_review

    from .common import load

    p = load(args)
    folder = Path(p.serving.tag_output) / args.article
    out = args.out or folder / f"review-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    result = export_review(args.queue or folder / "review.csv", args.n, out, args.article, p)
    print_json(result)
    print(f"open {result['sheet']}, fill value and annotator in {result['labels']}, then:\n"
          f"  progattr review import --article {args.article} --table {result['labels']}", file=sys.stderr)
    return 0


def run_review_import(args: argparse.Namespace) -> int:
    from tasks.review import import_review

    from .common import load

    p = load(args)
    result = import_review(args.table, args.source or p.pipeline.source, args.article, p)
    print_json(result)
    if result["applied"]:
        print(f"the next nightly run retrains on the new labels: progattr nightly --article {args.article}",
              file=sys.stderr)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Synthetic catalogue -> DVC -> the training flow -> table, registry, and where to look."""
    import time

    from progattr_core.config import load_params
    from progattr_core.data.manifest import relative_inside
    from tasks import dvc_store

    start = time.perf_counter()
    params_path = Path(args.params).resolve()
    root = params_path.parent
    quiet_tool_logs()
    # the demo's own recipe, whatever the project holds (`profile: auto` would pick up a registered Base):
    # the sections as committed, sized for its 10-minute budget; a --set profile=... still wins
    overrides = ["profile=", *args.overrides]
    params = load_params(params_path, overrides)
    raw = root / params.pipeline.source
    manifest = _ensure_synth(params, args.article, raw)
    _say_expected_time(params, args.article, manifest)
    if not dvc_store.is_repo(root):
        dvc_store.run_dvc(root, "init", "-q", *([] if (root / ".git").exists() else ["--no-scm"]))
    from flows.train_flow import run_train_flow

    result = run_train_flow(args.article, relative_inside(raw, root) or str(raw), str(params_path), overrides)
    pushed = "tracked and pushed to the default remote" if dvc_store.has_remote(root) else "tracked; no remote"
    print("\n== progattr demo: test accuracy, macro-F1 and balanced accuracy (%) per attribute and method ==")
    print(result["table"])
    _print_registry(result, args)
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
# images/s in the runs of bench/JOURNAL.md ("Demo and test times"), rounded.
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
