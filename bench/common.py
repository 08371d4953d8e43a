"""What every benchmark shares: the --profile CLI, machine facts, fair interleaved timing, the
results file (one stable JSON schema, see bench/README.md) and its Markdown table, and the data."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# generated catalogues, imported real articles and decode caches (git-ignored); PROGATTR_BENCH_DATA
# points elsewhere, e.g. at a folder carried to another machine
DATA = Path(os.environ.get("PROGATTR_BENCH_DATA") or ROOT / "data" / "bench")
SCHEMA_VERSION = 1
PROFILES = ("smoke", "quick", "full")


def parse_args(description: str, argv: Sequence[str] | None = None, profiles: Sequence[str] = PROFILES,
               extra: Sequence[Callable[[argparse.ArgumentParser], Any]] = ()) -> argparse.Namespace:
    """--profile, --set overrides on params.yaml, --out results folder, --threads, --only; `extra`
    adds a script's own options."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--profile", choices=list(profiles), default="quick")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="params.yaml overrides")
    ap.add_argument("--out", default=str(RESULTS), help="where <name>.json and <name>.md are written")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--only", default="", help="run only the parts whose label contains this text; results "
                                               "go to <name>_<only>.json so a part can run beside the rest")
    for extend in extra:
        extend(ap)
    return ap.parse_args(argv)


def setup_torch(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)


def start(description: str, argv: Sequence[str] | None = None, profiles: Sequence[str] = PROFILES,
          extra: Sequence[Callable[[argparse.ArgumentParser], Any]] = ()
          ) -> tuple[argparse.Namespace, dict[str, Any], float]:
    """Parse the CLI, set torch threads, configure logging once; (args, machine facts, start time)."""
    import logging

    args = parse_args(description, argv, profiles, extra)
    setup_torch(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return args, machine(), time.perf_counter()


def git_commit() -> tuple[str, bool]:
    """(HEAD commit, whether tracked files differ from it; bench/results left out: a run rewrites its own
    results files after every part). Outside git (a copy of the tree sent to another machine):
    (PROGATTR_GIT_COMMIT or 'unknown', False)."""
    from tasks.context import git_commit as commit
    from tasks.context import git_dirty

    return commit(ROOT), bool(git_dirty(ROOT, ("bench/results",)))


def machine() -> dict[str, Any]:
    import torch

    return {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "loadavg_start": list(os.getloadavg()),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def time_call(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """Time each callable `repeats` times, alternating A,B,C,A,B,C... so load from other processes
    falls on every method alike; the median is what is reported (the samples are kept)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats):
        names = list(fns) if r % 2 == 0 else list(reversed(fns))  # also alternate who goes first
        for name in names:
            samples[name].append(time_call(fns[name]))
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "samples_s": v} for k, v in samples.items()}


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """This machine's fp32 matrix-multiply throughput (torch, current thread count), GFLOP/s (median)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = [time_call(lambda: torch.mm(a, b)) for _ in range(repeats)]
    return 2 * n**3 / statistics.median(times) / 1e9


def goal(name: str, value: float, target: float, op: str = "<=") -> dict[str, Any]:
    """One target line of a results file: `value op target` (op one of <=, >=, <, >)."""
    met = bool({"<=": value <= target, ">=": value >= target, "<": value < target, ">": value > target}[op])
    if isinstance(value, float) and np.isnan(value):
        met = False
    return {"name": name, "value": _num(value), "target": target, "op": op, "met": met}


def table(title: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": [[_num(v) for v in row] for row in rows]}


def _num(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else round(float(v), 6)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def markdown_table(t: dict[str, Any]) -> list[str]:
    """A `table()` as Markdown lines: its title, the table, a blank line."""
    return [f"### {t['title']}", "", "| " + " | ".join(t["columns"]) + " |", "|" + "---|" * len(t["columns"]),
            *["| " + " | ".join(_cell(v) for v in row) + " |" for row in t["rows"]], ""]


def markdown(result: dict[str, Any]) -> str:
    """The results file as Markdown: every table, then ratios, goals and notes."""
    m = result["machine"]
    lines = [f"# {result['name']} (profile {result['profile']})", "",
             f"commit `{result['git_commit'][:12]}`{' (dirty)' if result['git_dirty'] else ''}, "
             f"{result['created_utc']}, {m['cores']} cores{', GPU ' + m['gpu'] if m.get('gpu') else ''}, "
             f"torch {m['torch']} with {m['torch_threads']} "
             f"threads, load average {m['loadavg_start'][0]:.2f} at start / {m['loadavg_end'][0]:.2f} at end, "
             f"wall {result['wall_s']:.0f} s", ""]
    for t in (t for t in result["tables"] if t["rows"]):
        lines += markdown_table(t)
    if result["ratios"]:
        lines += ["### Ratios", "", "| ratio | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in result["ratios"].items()]
        lines.append("")
    if result["goals"]:
        lines += ["### Goals", "", "| goal | value | target | met |", "|---|---|---|---|"]
        lines += [f"| {g['name']} | {_cell(g['value'])} | {g['op']} {g['target']} | "
                  f"{'yes' if g['met'] else '**NO**'} |" for g in result["goals"]]
        lines.append("")
    lines += [f"- {n}" for n in result["notes"]]
    return "\n".join(lines).rstrip() + "\n"


def _flag(key: str, value: Any) -> str:
    """A script option as it is typed: ' --key value', once per value of a repeatable option."""
    return "".join(f" --{key.replace('_', '-')} {shlex.quote(str(v))}"
                   for v in (value if isinstance(value, list) else [value]))


def write_results(name: str, args: argparse.Namespace, params: dict[str, Any], tables: list[dict[str, Any]],
                  ratios: dict[str, Any], goals: list[dict[str, Any]], notes: list[str], data: dict[str, Any],
                  machine_info: dict[str, Any], started: float, script: str | None = None,
                  options: str = "") -> dict[str, Any]:
    """Write <out>/<name>.json (the schema in bench/README.md) and <name>.md; print the Markdown.
    `script`: the bench module that wrote it, when its results are not named after it; `options`: the
    script's own options as typed (appended to the recorded command)."""
    commit, dirty = git_commit()
    script = script or name
    if getattr(args, "only", ""):
        name = f"{name}_{''.join(c if c.isalnum() else '_' for c in args.only.lower()).strip('_')}"
    result = {"schema_version": SCHEMA_VERSION, "name": name, "profile": args.profile,
              "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "git_commit": commit,
              "git_dirty": dirty, "command": "python -m bench." + script + " --profile " + args.profile +
              (" --set " + " ".join(args.set) if args.set else "") + (f" --only '{args.only}'" if args.only else "") +
              "".join(_flag(k, getattr(args, k)) for k in ("device", "real_n", "attributes", "article", "real", "n", "seed",
                                                       "variant") if getattr(args, k, None) not in (None, "cpu", [], "all"))
              + options,
              "machine": {**machine_info, "loadavg_end": list(os.getloadavg())},
              "wall_s": round(time.perf_counter() - started, 2), "params": params, "tables": tables,
              "ratios": {k: _num(v) for k, v in ratios.items()}, "goals": goals, "notes": notes, "data": data}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=_num) + "\n")
    text = markdown(result)
    (out / f"{name}.md").write_text(text)
    print(text)
    return result


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if len(arr) == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def pm(values: Sequence[float], scale: float = 100.0) -> str:
    """'mean ± sample std' of a list, scaled (accuracy in %)."""
    mean, std = mean_std(values)
    return "-" if np.isnan(mean) else f"{scale * mean:.2f} ± {scale * std:.2f}"


_RAW: dict[str, Any] = {}


def bench_params(overrides: Sequence[str]) -> Any:
    """params.yaml plus overrides, validated. The file is read once per process, so a long run keeps
    the values it started with even if params.yaml is edited meanwhile."""
    import copy

    import yaml

    from progattr_core.config import params_from_dict

    path = ROOT / "params.yaml"
    if not _RAW:
        _RAW.update(yaml.safe_load(path.read_text()))
    return params_from_dict(copy.deepcopy(_RAW), str(path), list(overrides))


def resolve_init(overrides: Sequence[str]) -> tuple[list[str], str]:
    """(overrides, what the run starts from). A registry `model.init` (`models:/progattr-backbone/latest`,
    `@alias` or a version, as params' `pretrained` profile names it) is resolved as the pipeline resolves
    it (tasks.context.make_context: this project's MLflow, the version fetched once under the data cache)
    and its file appended as `model.init=<file>`, so every method starts from the same pinned version."""
    init = bench_params(overrides).model.init
    if not init.startswith("models:/"):
        return list(overrides), init
    from tasks.context import make_context

    ctx = make_context(ROOT / "params.yaml", None, list(overrides))
    log.info("model.init %s is %s (%s)", init, ctx.model_init_version, ctx.params().model.init)
    return [*overrides, f"model.init={ctx.params().model.init}"], ctx.model_init_version


def synth_splits(params: Any, article: str, n: int, seed: int) -> dict[str, Any]:
    """The built-in catalogue for `article` (generated once under data/bench, then reused), as
    LabelledImages per split at the model's image size."""
    from progattr_core.data.synth import ensure_catalogue

    out_dir = DATA / f"synth-{article}-n{n}-seed{seed}-px{params.synth.image_size}"
    manifest, _ = ensure_catalogue(params, article, out_dir, n=n, seed=seed)
    return manifest_splits(params, manifest, out_dir, article)


def manifest_splits(params: Any, manifest: Any, root: Path, article: str) -> dict[str, Any]:
    """train/val/test LabelledImages of an article from a manifest, decoded through the shared cache and
    held in memory (the benchmarks' catalogues are small; timing then leaves out the cache reads)."""
    from progattr_core.data.arrays import load_images
    from progattr_core.train import LabelledImages

    attrs = list(params.attributes(article))
    classes = {a: list(params.attributes(article)[a]) for a in attrs}
    out = {}
    for split in ("train", "val", "test"):
        x, y, _ = load_images(manifest, root, DATA / "cache", params.model.image_size, attrs, split)
        out[split] = LabelledImages.from_arrays(x[:], y, attrs, classes)
    return out


def hide_labels(labels: np.ndarray, full_fraction: float, label_rate: float, seed: int) -> np.ndarray:
    """Hide labels at random so ~full_fraction of images keep every attribute and each attribute keeps
    ~label_rate of its labels (the paper's section 4 sparsity), on top of what is already missing.
    Same model as the built-in catalogue: an image is 'full' with probability f, otherwise each label
    is kept with probability q, redrawn until at least one is hidden (synth.labelled_probability)."""
    from progattr_core.data.synth import labelled_probability

    rng = np.random.default_rng(seed)
    n, k = labels.shape
    q = labelled_probability(k, full_fraction, label_rate)
    keep = rng.random((n, k)) < q
    redraw = keep.all(1)
    while redraw.any():
        keep[redraw] = rng.random((int(redraw.sum()), k)) < q
        redraw = keep.all(1)
    keep[rng.random(n) < full_fraction] = True
    return np.where(keep, labels, -1)
