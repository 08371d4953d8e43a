"""Operations: `progattr registry ...` (approvals), `attribute add`, `deploy`, `worker` and `retention`.
Heavy imports stay inside the handlers."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from .common import common_parent, load, print_json, quiet_tool_logs


def add_registry_parser(subparsers: argparse._SubParsersAction) -> None:
    registry = subparsers.add_parser("registry", help="approvals: show, history, approve, reject, rollback, "
                                     "request/answer the approval flow; rebuild a version")
    sub = registry.add_subparsers(dest="registry_command", required=True)
    common = common_parent()

    def leaf(name: str, text: str, handler, version: bool = False, decision: bool = False):
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.add_argument("--article", required=True)
        if version:
            p.add_argument("--version", required=True)
        if decision:
            p.add_argument("--by", default=None, help="who decides (default: $PROGATTR_USER or the login name)")
            p.add_argument("--reason", required=True, help="why: recorded in the registry and the audit log")
        p.set_defaults(handler=handler)
        return p

    leaf("show", "aliases and every version's approval state, gates and accuracy", _show)
    leaf("history", "every alias move (who, when, from, to, why) from the audit log", _history)
    approve = leaf("approve", "move champion to a version (the old champion becomes previous)", _approve, True, True)
    approve.add_argument("--override-gates", action="store_true",
                         help="approve a version that failed its gates (recorded as an override)")
    leaf("reject", "mark a version rejected (and drop its challenger alias)", _reject, True, True)
    leaf("rollback", "move champion back to previous (run again to undo)", _rollback, False, True)
    rebuild = leaf("rebuild", "train a registered version again from its tags (commit, DVC data version, params "
                   "snapshot) in a scratch worktree and compare weights and accuracy; registers nothing", _rebuild, True)
    rebuild.add_argument("--keep", action="store_true", help="keep the scratch worktree (its path is printed)")
    rebuild.add_argument("--json", action="store_true", help="print the comparison as JSON")
    request = leaf("request", "start the approval flow (a deployment run) that pauses for a decision", _request)
    request.add_argument("--version", default="", help="default: the @challenger version")
    ans = sub.add_parser("answer", help="answer a paused approval flow run (as the Prefect UI's form does)")
    ans.add_argument("--flow-run", required=True, help="the paused approval flow run's id")
    choice = ans.add_mutually_exclusive_group(required=True)
    choice.add_argument("--approve", action="store_true")
    choice.add_argument("--reject", action="store_true")
    ans.add_argument("--by", default=None)
    ans.add_argument("--reason", required=True)
    ans.add_argument("--override-gates", action="store_true")
    ans.set_defaults(handler=_answer)


def _registry_and_log(args: argparse.Namespace):
    from tasks.approvals import AuditLog
    from tasks.context import make_context
    from tracking.registry import Registry

    ctx = make_context(args.params, args.article, args.overrides, resolve_profile=False)
    return Registry.of(ctx.store), AuditLog(ctx.path(ctx.params().operations.audit_log))


def _by(args: argparse.Namespace) -> str:
    from tasks.approvals import default_user

    return args.by or default_user()


def _print_moves(moves) -> None:
    for m in moves:
        print(f"{m.model} @{m.alias}: {m.from_version or '-'} -> {m.to_version or '-'} "
              f"({m.action} by {m.by} at {m.at}{', gates overridden' if m.override else ''}: {m.reason})")


def _show(args: argparse.Namespace) -> int:
    """The registry's view, and beside each aliased version what serving measured on live traffic."""
    from tasks.approvals import describe, live_evidence, metrics_url

    registry, _ = _registry_and_log(args)
    shown = describe(registry, args.article)
    url = metrics_url(load(args))
    shown["live"] = {alias: live_evidence(url, args.article, version)
                     for alias, version in shown["aliases"].items() if version}
    print(json.dumps(shown, indent=1))
    return 0


def _history(args: argparse.Namespace) -> int:
    from tracking.registry import model_name

    _, audit = _registry_and_log(args)
    moves = audit.read(model_name(args.article))
    if not moves:
        print(f"no alias moves recorded for {model_name(args.article)} in {audit.path}")
    _print_moves(moves)
    return 0


def _approve(args: argparse.Namespace) -> int:
    from tasks.approvals import approve

    registry, audit = _registry_and_log(args)
    _print_moves(approve(registry, audit, args.article, args.version, _by(args), args.reason, args.override_gates))
    return 0


def _reject(args: argparse.Namespace) -> int:
    from tasks.approvals import reject

    registry, audit = _registry_and_log(args)
    _print_moves(reject(registry, audit, args.article, args.version, _by(args), args.reason))
    print(f"version {args.version} rejected")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from tasks.approvals import rollback

    registry, audit = _registry_and_log(args)
    _print_moves(rollback(registry, audit, args.article, _by(args), args.reason))
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    """Exit 0 when the rebuilt weights equal the registered ones, 1 when they differ."""
    quiet_tool_logs()
    from flows.rebuild import rebuild_flow
    from tasks.rebuild import report

    result = rebuild_flow(args.article, args.version, args.params, args.overrides, args.keep)
    print(json.dumps(result, indent=1) if args.json else report(result))
    return 0 if result["identical"] else 1


def _request(args: argparse.Namespace) -> int:
    from prefect.deployments import run_deployment

    run = run_deployment("progattr-approval/approval", timeout=0,
                         parameters={"article": args.article, "version": args.version})
    print(f"approval flow run {run.id} started; once it is Paused, answer it in the Prefect UI or with\n"
          f"  progattr registry answer --flow-run {run.id} --approve --reason '...'")
    return 0


def _answer(args: argparse.Namespace) -> int:
    from flows.approval import answer

    answer(args.flow_run, args.approve, _by(args), args.reason, args.override_gates)
    print(f"flow run {args.flow_run} resumed: {'approve' if args.approve else 'reject'}")
    return 0


def add_attribute_parser(subparsers: argparse._SubParsersAction) -> None:
    attribute = subparsers.add_parser("attribute", help="announce a new attribute (starts the branch-add flow)")
    sub = attribute.add_subparsers(dest="attribute_command", required=True)
    add = sub.add_parser("add", parents=[common_parent()], help="emit progattr.attribute.added (runs the branch-add "
                         "deployment through its trigger)")
    add.add_argument("--article", required=True)
    add.add_argument("--attribute", required=True, help="must already be in the article's taxonomy in params")
    add.add_argument("--source", default="", help="where its labels are (default: params pipeline.source)")
    add.set_defaults(handler=_attribute_add)


def _attribute_add(args: argparse.Namespace) -> int:
    from progattr_core.errors import ConfigError
    from tasks.approvals import default_user
    from tasks.attribute_events import EVENT, emit_attribute_added

    params = load(args)
    vocab = params.attributes(args.article)
    if args.attribute not in vocab:
        raise ConfigError(f"attribute {args.attribute!r} is not in taxonomy.{args.article} {list(vocab)}: add it "
                          f"and its classes to {args.params} first")
    event_id = emit_attribute_added(args.article, args.attribute, args.source or params.pipeline.source, "",
                                    default_user())
    print(f"emitted {EVENT} for {args.article}.{args.attribute} (event {event_id})")
    return 0


def add_deploy_parsers(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser("deploy", parents=[common_parent()], help="apply the Prefect deployments (nightly per "
                          "article, branch-add, approval) to PREFECT_API_URL").set_defaults(handler=_deploy)
    subparsers.add_parser("worker", parents=[common_parent()], help="run a Prefect process worker on the params' "
                          "work pool").set_defaults(handler=_worker)


def _deploy(args: argparse.Namespace) -> int:
    from flows.deploy import deploy_all

    for name in deploy_all(args.params, args.overrides):
        print(f"deployed {name}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    """Replace this process with `prefect worker start` on the params' work pool."""
    pool = load(args).operations.work_pool
    prefect = shutil.which("prefect", path=os.path.dirname(sys.executable)) or "prefect"
    os.execv(prefect, [prefect, "worker", "start", "--pool", pool, "--type", "process"])
    return 0


def add_retention_parser(subparsers: argparse._SubParsersAction) -> None:
    ret = subparsers.add_parser("retention", parents=[common_parent()],
                                help="delete old checkpoints, baseline models and cache entries (params `retention:`); "
                                "never a registered model, an aliased version's training or what a resume needs")
    ret.add_argument("--article", action="append", default=None,
                     help="only this article's MLflow runs (repeatable; default: every article in the taxonomy)")
    ret.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    ret.add_argument("--json", action="store_true", help="print the whole report as JSON")
    ret.set_defaults(handler=_retention)


def _retention(args: argparse.Namespace) -> int:
    quiet_tool_logs()
    from flows.retention import retention_flow

    report = retention_flow(args.article, args.params, args.overrides, args.dry_run)
    if args.json:
        print_json(report)
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for article, r in report["articles"].items():
        print(f"{article}: {verb} {len(r['pruned'])} runs' files, {r['freed_bytes'] / 2**20:.1f} MB; "
              f"kept the files of {len(r['kept_keys'])} trainings")
    print(f"pretraining: {verb} {len(report['pretrain']['pruned'])} checkpoints, "
          f"{report['pretrain']['freed_bytes'] / 2**20:.1f} MB")
    for article, parts in report["superseded_parts"].items():
        if "pruned" in parts:  # an article whose source is an import folder
            print(f"{article}: {verb} {len(parts['pruned'])} superseded import parts, "
                  f"{parts['freed_bytes'] / 2**20:.1f} MB")
    cache = report["decode_cache"]
    print("decode cache: " + (cache["skipped"] if "skipped" in cache else
                              f"{verb} {cache['deleted']} of {cache['entries']} entries, {cache['deleted_bytes'] / 2**20:.1f} MB"))
    dvc = report["dvc_cache"]
    if "would_run" in dvc:
        print(f"DVC cache: would run `{dvc['would_run']}` on its {dvc['cache_bytes'] / 2**20:.1f} MB")
    else:
        print("DVC cache: " + (dvc.get("skipped") or f"{verb} {dvc['freed_bytes'] / 2**20:.1f} MB"))
    print(f"in all: {verb} {report['freed_bytes'] / 2**20:.1f} MB")
    return 0
