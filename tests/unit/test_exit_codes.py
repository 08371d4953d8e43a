"""One table of exit codes: every error class's code is in progattr_core.errors.EXIT_CODES, named there,
codes are not shared between classes, and docs/operations.md shows the table as it is."""

from __future__ import annotations

import importlib
import re

from progattr_core.errors import EXIT_CODES, ProgattrError
from tests.paths import ROOT


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def test_every_error_class_exits_with_a_code_of_the_table():
    for module in ("progattr_core.locks", "progattr_core.pretrain", "tasks.approvals", "tasks.dvc_store",
                   "tasks.rebuild", "tasks.s3_source", "tracking.store"):  # every module defining an error class
        importlib.import_module(module)
    own = {c for c in (ProgattrError, *_subclasses(ProgattrError)) if "exit_code" in vars(c)}  # the rest inherit a parent's
    assert len(own) >= 9
    for cls in own:
        assert cls.exit_code in EXIT_CODES, f"{cls.__name__}: exit code {cls.exit_code} is not in EXIT_CODES"
        assert cls.__name__ in EXIT_CODES[cls.exit_code] or cls is ProgattrError, cls.__name__
    codes = [c.exit_code for c in own]
    assert len(codes) == len(set(codes)), "two error classes share an exit code"


def test_the_docs_show_the_table_as_the_code_has_it():
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", text.split("## Exit codes", 1)[1].split("\n## ", 1)[0], re.M))
    assert {int(k): v for k, v in rows.items()} == EXIT_CODES
