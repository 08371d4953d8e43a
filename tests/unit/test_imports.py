"""Dependencies point one way. Layers, lowest first:

    progattr_core  the library: data, model, training, metrics, gates (torch, numpy, pandas)
    tracking       MLflow: runs, retries, the model registry
    tasks, serving the pipeline's steps / the HTTP service: neither imports the other
    flows          Prefect flows wiring the tasks
    progattr       the command line, on top of everything
    bench          the benchmarks: any layer, never imported by one

A module may import its own package and the layers below it, never above or beside. The AST walk
sees every import, lazy ones inside functions included.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.paths import ROOT

PROJECT = ("progattr_core", "tracking", "tasks", "serving", "flows", "progattr", "bench", "tests")
ALLOWED = {"progattr_core": {"progattr_core"},
           "tracking": {"tracking", "progattr_core"},
           "tasks": {"tasks", "tracking", "progattr_core"},
           "serving": {"serving", "tracking", "progattr_core"},
           "flows": {"flows", "tasks", "tracking", "progattr_core"},
           "progattr": {"progattr", "flows", "tasks", "serving", "tracking", "progattr_core"},
           "bench": {"bench", "progattr", "flows", "tasks", "serving", "tracking", "progattr_core"}}
FORBIDDEN_IN_CORE = ("prefect", "mlflow", "dvc", "great_expectations", "boto3", "botocore", "fastapi", "uvicorn")


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, top-level name) of every import in the file; relative imports resolve to `package`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, package if node.level else (node.module or "").split(".")[0]))
    return found


def _edges() -> list[str]:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, name in _imports(path, package):
                if name in PROJECT and name not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
                if package == "progattr_core" and name in FORBIDDEN_IN_CORE:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name} (a pipeline tool, not the library's)")
    return wrong


def test_every_import_points_down_the_layers():
    assert _edges() == []


def test_the_walk_sees_lazy_imports(tmp_path):
    """The check itself: an import inside a function body is found and attributed to its line."""
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from tasks.context import make_context\n    from . import x\n")
    assert _imports(module, "serving") == [(1, "os"), (4, "tasks"), (5, "serving")]


def test_core_imports_no_pipeline_tools_at_run_time():
    """What the AST cannot see (an import by a dependency): load every core module in a fresh process."""
    modules = sorted({".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                      for p in (ROOT / "progattr_core").rglob("*.py")})
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_IN_CORE!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_data_steps_start_without_torch(tmp_path):
    """`progattr pipeline ingest|validate|slice` import no torch (it costs ~3-5 s of each step's start-up):
    their modules and `profile: auto` resolved against an empty registry, in a fresh process."""
    code = ("import sys\nfrom tasks.ingest import ingest, slice_data, validate\n"
            "from tasks.context import resolve_auto_profile\nfrom progattr_core.config import load_params\n"
            "from tracking.store import store_config\np = load_params('params.yaml')\n"
            f"print(resolve_auto_profile(p, store_config(p, {str(tmp_path)!r}), ())[2])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**env, "TORCH_HOME": str(tmp_path / "torch")})
    assert out.returncode == 0, out.stderr[-3000:]
    said, imported = out.stdout.strip().splitlines()[-2:]
    assert said.startswith("profile auto -> none: no pretrained") and imported == "[]"


def test_dvc_yaml_is_what_the_declared_steps_generate():
    """dvc.yaml and pretrain/dvc.yaml come from tasks/pipeline.py's steps, each stage's code deps from the import
    graph (tasks/dvc_yaml.py): a change to any code a stage runs makes `dvc repro` re-run it, and no stage re-runs
    for code it never runs. A stale committed file fails with the lines that differ."""
    import difflib

    from tasks.dvc_yaml import ROOT as GENERATED_ROOT
    from tasks.dvc_yaml import render

    assert GENERATED_ROOT == ROOT
    diffs = ["".join(difflib.unified_diff((ROOT / path).read_text().splitlines(True), text.splitlines(True), path,
                                          f"{path} (generated)")) for path, text in render().items()
             if (ROOT / path).read_text() != text]
    assert not diffs, "run `progattr pipeline dvc-yaml --write`:\n" + "\n".join(diffs)


def test_the_stage_walk_follows_lazy_and_relative_imports():
    """The walk itself: image decoding (reached lazily, through relative imports) is code `train` runs;
    the evaluation is not, and `evaluate` runs both; typing-only imports run nothing."""
    from tasks.dvc_yaml import step_code
    from tasks.pipeline import BY_NAME

    train, evaluate = step_code(BY_NAME["train"]), step_code(BY_NAME["evaluate"])
    assert {"progattr_core/data/arrays.py", "progattr_core/data/images.py", "tasks/context.py",
            "tasks/pipeline.py"} <= train
    assert "tasks/evaluation.py" not in train and "progattr_core/sharing.py" not in train
    assert {"tasks/evaluation.py", "progattr_core/sharing.py", "progattr_core/data/arrays.py"} <= evaluate
    assert "tasks/dvc_yaml.py" not in train | evaluate  # generating the file is not a stage's code
