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


# dvc.yaml's code dependencies: each stage runs `progattr pipeline <stage>`, whose step function imports the
# tasks it runs; every module those reach in the pipeline's packages is code the stage's outputs depend on
STEP_FILE = ROOT / "progattr" / "cli" / "pipeline.py"
STAGE_PACKAGES = ("progattr_core", "tasks", "tracking", "flows")
PIPELINES = {"dvc.yaml": None, "pretrain/dvc.yaml": ["flows.pretrain"]}  # None: `progattr pipeline <stage>`


def _module_file(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(tree: ast.AST, package: str) -> set[str]:
    """Every module of STAGE_PACKAGES an import in `tree` names (`from a import b`: a, and a.b where b is a module)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            found |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return {m for m in found if m.split(".")[0] in STAGE_PACKAGES and _module_file(m)}


def stage_code(stage: str, entry: list[str] | None = None) -> set[str]:
    """The files (repo-relative) of every pipeline module a stage can run: `entry` modules, or the imports
    of `progattr pipeline <stage>`'s step function (and the shared runner's), then everything they
    import, lazily or not."""
    if entry is None:
        steps = ast.parse(STEP_FILE.read_text())
        entry = [m for fn in ast.walk(steps) if isinstance(fn, ast.FunctionDef)
                 and fn.name in (f"_{stage}", "_data", "run_stage_command") for m in _imported_modules(fn, "progattr.cli")]
    todo, seen = list(entry), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if _module_file(".".join(parts[:i]))]
        path = _module_file(module)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        todo += _imported_modules(ast.parse(path.read_text()), package)
    files = {_module_file(m) for m in seen}
    return {p.relative_to(ROOT).as_posix() for p in files if p.stat().st_size}  # an empty __init__ runs nothing


def test_each_dvc_stage_declares_every_module_it_runs():
    """A change to any code a stage runs makes `dvc repro` re-run it, and no stage re-runs for code it never runs."""
    import yaml

    problems = []
    for name, entry in PIPELINES.items():
        for stage, spec in yaml.safe_load((ROOT / name).read_text())["stages"].items():
            declared = {d for d in spec["deps"] if d.endswith(".py")}
            needed = stage_code(stage, entry)
            problems += [f"{name} {stage}: add `- {f}` to its deps" for f in sorted(needed - declared)]
            problems += [f"{name} {stage}: `{f}` is declared but the stage never runs it" for f in sorted(declared - needed)]
    assert not problems, "dvc.yaml's code deps differ from the import graph:\n" + "\n".join(problems)


def test_the_stage_walk_follows_lazy_and_relative_imports():
    """The check itself: image decoding (reached lazily, through relative imports) is code `train` runs;
    the evaluation is not, and `evaluate` runs both."""
    train, evaluate = stage_code("train"), stage_code("evaluate")
    assert {"progattr_core/data/arrays.py", "progattr_core/data/images.py", "tasks/context.py"} <= train
    assert "tasks/evaluation.py" not in train and "progattr_core/sharing.py" not in train
    assert {"tasks/evaluation.py", "progattr_core/sharing.py", "progattr_core/data/arrays.py"} <= evaluate
