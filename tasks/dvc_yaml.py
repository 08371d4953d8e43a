"""dvc.yaml and pretrain/dvc.yaml, generated from the steps tasks/pipeline.py declares
(`progattr pipeline dvc-yaml --write`; tests/unit/test_imports.py fails when a committed file differs).

A stage's code dependencies are every module of the pipeline's packages its step can run: the imports
of its step function (and of `run_step`, which every step goes through), then everything those import,
lazily or not, relative or not (an `if TYPE_CHECKING:` block runs nothing and is skipped). So a change
to any code a stage runs makes `dvc repro` re-run it, and no stage re-runs for code it never runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tasks.pipeline import STEPS, Step

ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("progattr_core", "tasks", "tracking", "flows")
GENERATED = "# Generated from tasks/pipeline.py by `progattr pipeline dvc-yaml --write`: edit the steps there, not here.\n"
HEADER = GENERATED + """\
# The training pipeline as DVC stages. Each stage runs one step with the same task code as the Prefect
# flow (flows/train_flow.py) through `progattr pipeline <step>` (needs `progattr` on PATH: the .venv).
# Paths and the article come from params.yaml (${...}), so they are written once; each stage declares
# the params it reads and every module its step can run (from the import graph), so `dvc repro` re-runs
# exactly what changed. The source folder (${pipeline.source}) is DVC-tracked on its own (`dvc add`,
# done by `progattr demo`).
"""
PRETRAIN_HEADER = GENERATED + """\
# Pretraining a Base (`progattr pretrain`, flows/pretrain.py) as a DVC stage of its own, apart from the
# training pipeline in ../dvc.yaml: a plain `dvc repro` never starts it (about 10 minutes on a 2-core
# CPU for the whole Fashion Product Images catalogue). Run it with `dvc repro pretrain/dvc.yaml`; it
# registers a version of progattr-backbone in MLflow and writes the backbone file (and its lineage)
# that `model.init: outputs/pretrain/backbone.pt` starts trainings from (or use the registry URI it prints).
vars:
  - ../params.yaml
"""
PRETRAIN_OUT = "${pipeline.outputs}/pretrain/backbone.pt"
PRETRAIN = Step("pretrain", "a Base for model.init (flows/pretrain.py)", lambda ctx: "",
                deps=("${pretrain.source}/styles.csv  # the catalogue's labels (its images are named by them)",),
                params=("seed", "model", "pretrain", "train", "optimizer", "compute", "profile", "profiles"),
                outs=(PRETRAIN_OUT, f"{PRETRAIN_OUT}.lineage.json"))


def module_file(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(tree: ast.AST, package: str) -> set[str]:
    """Every module of CODE_PACKAGES an import in `tree` names (`from a import b`: a, and a.b where b is a module)."""
    found = set()
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and isinstance(block.test, ast.Name)
                   and block.test.id == "TYPE_CHECKING" for n in ast.walk(block)}  # never run
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            found |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return {m for m in found if m.split(".")[0] in CODE_PACKAGES and module_file(m)}


def closure(entry: set[str] | list[str]) -> set[str]:
    """The files (repo-relative) of `entry` modules and everything they import, lazily or not."""
    todo, seen = list(entry), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if module_file(".".join(parts[:i]))]
        path = module_file(module)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        todo += imported_modules(ast.parse(path.read_text()), package)
    files = {module_file(m) for m in seen}
    return {p.relative_to(ROOT).as_posix() for p in files if p.stat().st_size}  # an empty __init__ runs nothing


def step_code(step: Step) -> set[str]:
    """What `progattr pipeline <step>` runs: tasks/pipeline.py's top level, `run_step`, `_data` and the step's
    function, then their imports' closure (the pretraining stage: flows/pretrain.py's)."""
    if step is PRETRAIN:
        return closure(["flows.pretrain"])
    tree = ast.parse((ROOT / "tasks" / "pipeline.py").read_text())
    parts = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom) or
             isinstance(node, ast.FunctionDef) and node.name in ("run_step", "_data", step.run.__name__)]
    entry: set[str] = set()
    for node in parts:
        entry |= imported_modules(node, "tasks")
    return closure(entry) | {"tasks/pipeline.py"}  # the file itself, not the other steps' imports


def _item(text: str, indent: int) -> str:
    value, _, comment = text.partition("  # ")
    return " " * indent + f"- {value}" + (f"  # {comment}" if comment else "") + "\n"


def _with_options(entries: dict[str, dict]) -> str:
    out = ""
    for path, options in entries.items():
        out += f"      - {path}" + (":\n" if options else "\n")
        for key, value in options.items():
            out += f"          {key}: {str(value).lower() if isinstance(value, bool) else value}\n"
    return out


def stage(step: Step, cmd: str, wdir: str = "") -> str:
    out = f"  {step.name}:\n" + (f"    wdir: {wdir}\n" if wdir else "") + f"    cmd: {cmd}\n    deps:\n"
    out += "".join(_item(d, 6) for d in step.deps) + "".join(f"      - {f}\n" for f in sorted(step_code(step)))
    out += "    params:\n" + "".join(_item(p, 6) for p in step.params)
    out += "    outs:\n" + "".join(_item(o, 6) for o in step.outs)
    if step.metrics:
        out += "    metrics:\n" + _with_options(step.metrics)
    if step.plots:
        out += "    plots:\n" + _with_options(step.plots)
    return out


def render() -> dict[str, str]:
    """Path (repo-relative) -> the text it must hold."""
    stages = [stage(s, f"progattr pipeline {s.name} --article ${{train.article}}" + (f" {s.cmd_args}" if s.cmd_args
                                                                                       else "")) for s in STEPS]
    return {"dvc.yaml": HEADER + "stages:\n" + "\n".join(stages),
            "pretrain/dvc.yaml": PRETRAIN_HEADER + "stages:\n" + stage(PRETRAIN, f"progattr pretrain --out {PRETRAIN_OUT}",
                                                                      wdir="..")}


def stale(texts: dict[str, str] | None = None) -> list[str]:
    """The committed files that differ from what the steps generate (`texts`: render()'s, if already made)."""
    texts = render() if texts is None else texts
    return [path for path, text in texts.items() if not (ROOT / path).is_file() or (ROOT / path).read_text() != text]


def write() -> list[str]:
    """Write the files that differ; returns their paths."""
    texts = render()  # walks the import graph once
    changed = stale(texts)
    for path in changed:
        (ROOT / path).write_text(texts[path])
    return changed
