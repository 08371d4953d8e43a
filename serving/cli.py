"""`progattr serve` (and `python -m serving`): start the service. Light imports only, so --help is fast."""

from __future__ import annotations

import argparse
import sys


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """The serve options beside --params/--set (which `progattr`'s common parent provides)."""
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


def main(argv: list[str] | None = None) -> int:
    from progattr_core.errors import ProgattrError

    parser = argparse.ArgumentParser(prog="python -m serving", description="Serve the champion model of each article.")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="params overrides, e.g. serving.poll_interval_s=2")
    add_serve_options(parser)
    try:
        return run_serve(parser.parse_args(argv))
    except ProgattrError as exc:
        print(f"progattr serve: {exc}", file=sys.stderr)
        return exc.exit_code
