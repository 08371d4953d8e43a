"""Dependencies point one way: the core never imports the pipeline's outside systems."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("prefect", "mlflow", "dvc", "great_expectations", "boto3", "botocore")
ROOT = Path(__file__).resolve().parents[2]


def test_core_imports_no_pipeline_tools():
    modules = ["progattr_core", "progattr_core.data", "progattr_core.data.importers", "progattr_core.data.synth",
               "progattr_core.data.slicing", "progattr_core.cli"]
    modules += [f"progattr_core.{p.stem}" for p in (ROOT / "progattr_core").glob("*.py") if p.stem != "__init__"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
