"""What every `progattr` command shares: --params/--set, reading params, paths inside the data root."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from progattr_core.errors import ProgattrError


def common_parent() -> argparse.ArgumentParser:
    """Options every leaf command accepts: the params file and overrides (`--set a=1 b=2` and
    `--set a=1 --set b=2` both give both)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    common.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override params, e.g. --set synth.seed=1 data.split.val_fraction=0.2")
    return common


def load(args: argparse.Namespace):
    """The params of this command: the file and its overrides, validated."""
    from progattr_core.config import load_params

    return load_params(args.params, args.overrides)


def under_root(path: Path, root: Path) -> str:
    """`path` relative to the data root; ProgattrError if it is outside."""
    rel = Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    if rel.startswith(".."):
        raise ProgattrError(f"{path} is not inside the data root {root}; pass --dest")
    return rel


def only(items: list[str], what: str) -> str:
    if len(items) != 1:
        raise ProgattrError(f"{what} has {items}: choose one with --article")
    return items[0]


def quiet_tool_logs() -> None:
    """A line per HTTP call (httpx, under Prefect) or per config save (Great Expectations) otherwise.
    The tools' settings are in pyproject.toml ([tool.prefect]) and where each tool is used."""
    for noisy in ("httpx", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def print_json(value) -> None:
    import json

    print(json.dumps(value, indent=1, default=str))
