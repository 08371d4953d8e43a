"""`progattr`: the project's command line, one sub-command per thing a user runs.

    data synth|import|slice    build the manifest            pretrain      a Base for model.init
    pipeline run|<stage>       the training flow / one step  demo          `make demo`
    nightly                    the nightly retrain           branch-add    add one attribute's Branch
    tag                        batch-tag a catalogue         serve         the HTTP service
    registry ...               approvals                     attribute add announce a new attribute
    deploy, worker             Prefect deployments and a worker
    retention                  delete old checkpoints and cache entries (params `retention:`)

Each group's parser and handlers live in one module here (`data`, `pipeline`, `ops`, `serve`);
handlers take the parsed args and return an exit status. Heavy imports (torch, pandas, prefect,
mlflow) stay inside handlers so `progattr --help` is fast. Errors raised on purpose (ProgattrError)
become a one-line message and their exit code, never a traceback. Every command starts a watchdog
(`watchdog.py`) that stops whatever the command started once it is gone, even after a SIGKILL.
"""

from __future__ import annotations

import argparse
import logging
import sys

from progattr_core.errors import ProgattrError

from . import watchdog
from .data import add_data_parser, add_pretrain_parser
from .ops import add_attribute_parser, add_deploy_parsers, add_registry_parser, add_retention_parser
from .pipeline import add_flow_parsers, add_pipeline_parser
from .serve import add_serve_parser

GROUPS = (add_data_parser, add_pretrain_parser, add_pipeline_parser, add_flow_parsers, add_serve_parser,
          add_registry_parser, add_attribute_parser, add_deploy_parsers, add_retention_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="progattr", description="Progressive fashion attribute extraction")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in GROUPS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    watchdog.start()  # whatever this command starts ends with it, SIGKILL included (watchdog.py)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except ProgattrError as exc:
        print(f"progattr: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
