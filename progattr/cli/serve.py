"""`progattr serve`: start the service. Light imports only, so --help is fast."""

from __future__ import annotations

import argparse

from .common import common_parent


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", parents=[common_parent()], help="serve each article's champion model "
                                   "over HTTP")
    parser.set_defaults(handler=run_serve)
    parser.add_argument("--articles", nargs="+", default=[], help="articles to serve (default: train.article)")
    parser.add_argument("--host", help="overrides serving.host")
    parser.add_argument("--port", type=int, help="overrides serving.port")
    parser.add_argument("--workers", type=int, help="overrides serving.workers")


def run_serve(args: argparse.Namespace) -> int:
    """Handler: --host/--port/--workers become params overrides, so every worker reads the same values."""
    from serving.server import serve

    overrides = list(args.overrides)
    for key in ("host", "port", "workers"):
        if getattr(args, key) is not None:
            overrides.append(f"serving.{key}={getattr(args, key)}")
    serve(args.params, overrides, args.articles)
    return 0
