"""Handlers of `progattr registry ...`, `progattr attribute add`, `progattr deploy` and `progattr
worker` (registered in progattr_core/cli.py). Heavy imports stay inside the handlers."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys


def add_registry_arguments(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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


def _store_and_log(args: argparse.Namespace):
    from tasks.approvals import AuditLog
    from tasks.context import make_context
    from tasks.mlflow_store import Store

    ctx = make_context(args.params, args.article, args.overrides)
    return Store(ctx.store), AuditLog(ctx.path(ctx.params().operations.audit_log))


def _by(args: argparse.Namespace) -> str:
    from tasks.approvals import default_user

    return args.by or default_user()


def _print_moves(moves) -> None:
    for m in moves:
        print(f"{m.model} @{m.alias}: {m.from_version or '-'} -> {m.to_version or '-'} "
              f"({m.action} by {m.by} at {m.at}{', gates overridden' if m.override else ''}: {m.reason})")


def _show(args: argparse.Namespace) -> int:
    from tasks.approvals import describe

    store, _ = _store_and_log(args)
    print(json.dumps(describe(store, args.article), indent=1))
    return 0


def _history(args: argparse.Namespace) -> int:
    from tasks.registry import model_name

    _, audit = _store_and_log(args)
    moves = audit.read(model_name(args.article))
    if not moves:
        print(f"no alias moves recorded for {model_name(args.article)} in {audit.path}")
    _print_moves(moves)
    return 0


def _approve(args: argparse.Namespace) -> int:
    from tasks.approvals import approve

    store, audit = _store_and_log(args)
    _print_moves(approve(store, audit, args.article, args.version, _by(args), args.reason, args.override_gates))
    return 0


def _reject(args: argparse.Namespace) -> int:
    from tasks.approvals import reject

    store, audit = _store_and_log(args)
    _print_moves(reject(store, audit, args.article, args.version, _by(args), args.reason))
    print(f"version {args.version} rejected")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from tasks.approvals import rollback

    store, audit = _store_and_log(args)
    _print_moves(rollback(store, audit, args.article, _by(args), args.reason))
    return 0


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


def add_attribute_arguments(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    add = sub.add_parser("add", parents=[common], help="emit progattr.attribute.added (runs the branch-add "
                         "deployment through its trigger)")
    add.add_argument("--article", required=True)
    add.add_argument("--attribute", required=True, help="must already be in the article's taxonomy in params")
    add.add_argument("--source", default="", help="where its labels are (default: params pipeline.source)")
    add.set_defaults(handler=_attribute_add)


def _attribute_add(args: argparse.Namespace) -> int:
    from progattr_core.config import load_params
    from progattr_core.errors import ConfigError
    from tasks.approvals import default_user
    from tasks.attribute_events import EVENT, emit_attribute_added

    params = load_params(args.params, args.overrides)
    vocab = params.attributes(args.article)
    if args.attribute not in vocab:
        raise ConfigError(f"attribute {args.attribute!r} is not in taxonomy.{args.article} {list(vocab)}: add it "
                          f"and its classes to {args.params} first")
    event_id = emit_attribute_added(args.article, args.attribute, args.source or params.pipeline.source, "",
                                    default_user())
    print(f"emitted {EVENT} for {args.article}.{args.attribute} (event {event_id})")
    return 0


def add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=_deploy)


def _deploy(args: argparse.Namespace) -> int:
    from flows.deploy import deploy_all

    for name in deploy_all(args.params, args.overrides):
        print(f"deployed {name}")
    return 0


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    """Replace this process with `prefect worker start` on the params' work pool."""
    from progattr_core.config import load_params

    pool = load_params(args.params, args.overrides).operations.work_pool
    prefect = shutil.which("prefect", path=os.path.dirname(sys.executable)) or "prefect"
    os.execv(prefect, [prefect, "worker", "start", "--pool", pool, "--type", "process"])
    return 0
