"""Rebuild a registered version from its tags, to check that it came from exactly those inputs.

The version's git commit is checked out in a scratch worktree, its data version pulled from the DVC
remote into it, and its params snapshot (the flow run's `params.json`) trained again there by that
commit's own code (`progattr pipeline ingest` and `train` in a subprocess, imports from the
worktree), with the thread count the version recorded, into a scratch MLflow store: nothing in the
project's store, registry or aliases changes. Then the rebuilt model's weight checksum and test
accuracy are set beside the registered version's.

A version made by branch-add is rebuilt by rebuilding the version it started from (its
`base_version`) and adding the Branch again; that is not automated here and says so.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect import task

from progattr_core.config import fill_from
from progattr_core.data.import_files import INDEX, PARTS
from progattr_core.determinism import device_kind
from progattr_core.errors import ProgattrError
from progattr_core.model import resolve_device
from progattr_core.model_file import load_model, weights_digest
from progattr_core.model_init import ModelInit
from tasks import dvc_store
from tasks.context import DataRef, PipelineContext, git, make_context, task_logger
from tasks.evaluation import scored
from tasks.training import load_split
from tracking.registry import Registry, VersionRef, fetch_backbone, model_name
from tracking.store import TAG, Store

# what a rebuild reads from the version's tags (registered by commits that record them: see
# tasks/registry.rebuild_facts)
NEEDED = ("git_commit", "data_version", "data_raw", "params_snapshot", "train_key", "weights_sha256", "threads",
          "device_kind", "model_init_version", "model_init_identity")
PARAMS_FILE = "rebuild-params.json"


class RebuildError(ProgattrError):
    """A version cannot be rebuilt: a tag it needs is missing, its commit or data version is gone.
    (A rebuild that ran but gave other weights is not an error: `progattr registry rebuild` exits 1.)"""

    exit_code = 8


@dataclass(frozen=True)
class RebuildPlan:
    article: str
    name: str
    version: str
    run_id: str
    tags: dict[str, str] = field(repr=False)


def plan(ctx: PipelineContext, version: str) -> RebuildPlan:
    """The version and its tags; RebuildError naming what is missing."""
    name = model_name(ctx.article)
    mv = Registry.of(ctx.store).version(name, version)
    if mv is None:
        raise RebuildError(f"{name} has no version {version}")
    tags = {k.removeprefix(TAG): v for k, v in mv.tags.items() if k.startswith(TAG)}
    if "added_attribute" in tags:
        raise RebuildError(f"{name} version {version} was made by branch-add ({tags['added_attribute']!r} added to "
                           f"version {tags.get('base_version', '?')}): rebuild version {tags.get('base_version', '?')}; "
                           "rebuilding a branch-add is not automated")
    missing = [t for t in NEEDED if not tags.get(t)]
    if missing:
        raise RebuildError(f"{name} version {version} lacks the tag(s) {missing} that a rebuild needs (versions "
                           "registered before they were recorded cannot be rebuilt)")
    if tags["git_commit"] == "unknown":
        raise RebuildError(f"{name} version {version} was trained outside a git checkout (git_commit 'unknown')")
    if not tags["data_version"].endswith(".dir"):
        raise RebuildError(f"{name} version {version}: data version {tags['data_version']} is not a DVC hash (the data "
                           "was not tracked by DVC when it was trained): there is nothing to pull")
    if Path(tags["data_raw"]).is_absolute():
        raise RebuildError(f"{name} version {version}: its raw data folder {tags['data_raw']} was outside the project")
    return RebuildPlan(ctx.article, name, str(version), str(mv.run_id or ""), tags)


def checkout(root: str | Path, commit: str, dest: Path) -> Path:
    """`commit` checked out (detached) as a git worktree at `dest`."""
    if git(root, "rev-parse", "--git-dir").returncode != 0:
        raise RebuildError(f"{root} is not a git checkout: a rebuild checks out the version's commit")
    if git(root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise RebuildError(f"commit {commit} is not in the repository at {root} (fetch it first)")
    out = git(root, "worktree", "add", "--detach", str(dest), commit)
    if out.returncode != 0:
        raise RebuildError(f"git worktree add {dest} {commit} failed: {out.stderr.strip()}")
    return dest


def remove_checkout(root: str | Path, dest: Path) -> None:
    git(root, "worktree", "remove", "--force", str(dest))
    shutil.rmtree(dest, ignore_errors=True)
    git(root, "worktree", "prune")


def pull_data(root: str | Path, work: Path, p: RebuildPlan) -> Path:
    """The version's data version into the worktree, from the project's DVC remote: a pointer file
    naming its hash, then `dvc pull` with a fresh cache (what the remote holds, nothing local)."""
    root = Path(root)
    if not dvc_store.is_repo(root):
        raise RebuildError(f"{root} is not a DVC project: there is no remote to pull data version "
                           f"{p.tags['data_version']} from")
    raw = work / p.tags["data_raw"]
    if (root / ".dvc" / "config.local").is_file():  # the remote's credentials, if any, live there
        shutil.copyfile(root / ".dvc" / "config.local", work / ".dvc" / "config.local")
    for line in dvc_store.run_dvc(root, "config", "--list", timeout=60).splitlines():
        key, _, value = line.partition("=")
        if key.startswith("remote.") and key.endswith(".url") and Path(value).is_absolute():
            # a local remote, resolved against the project (a relative URL would point inside the worktree)
            dvc_store.run_dvc(work, "remote", "modify", "--local", key.split(".")[1], "url", value, timeout=60)
    if p.tags.get("data_layout") != "parts":
        _pull(work, p, {raw: p.tags["data_version"]})
        return raw
    # a partitioned import: its index (the data version), then the parts the index names
    _pull(work, p, {raw / INDEX: p.tags["data_version"]})
    parts = json.loads((raw / INDEX / "parts.json").read_text())["parts"]
    _pull(work, p, {raw / PARTS / part: md5 for part, md5 in parts.items()})
    return raw


def _pull(work: Path, p: RebuildPlan, folders: dict[Path, str]) -> None:
    """Pointer files naming these folders' DVC hashes, then one `dvc pull` of them."""
    for folder, md5 in folders.items():
        folder.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{folder}.dvc").write_text(yaml.safe_dump({"outs": [{"md5": md5, "path": folder.name, "hash": "md5"}]}))
    try:
        dvc_store.run_dvc(work, "pull", *(Path(f"{f}.dvc").relative_to(work).as_posix() for f in folders))
    except dvc_store.DvcError as exc:
        raise RebuildError(f"data version {p.tags['data_version']} ({p.tags['data_raw']}) could not be pulled from "
                           f"the DVC remote; push it from the project that trained version {p.version} "
                           f"(`dvc push`). {exc}") from None


def write_params(ctx: PipelineContext, p: RebuildPlan, work: Path) -> tuple[Path, list[str]]:
    """The version's params snapshot as the worktree's params file, and the overrides that keep the
    rebuild's files and MLflow runs inside the worktree (none of them is part of the training key)."""
    store = Store.of(ctx.store)
    with tempfile.TemporaryDirectory(prefix="progattr-rebuild-params-") as tmp:
        try:
            snapshot = Path(store.download(p.run_id, p.tags["params_snapshot"], tmp))
        except Exception as exc:  # noqa: BLE001 - whatever MLflow raises, the message says what is missing
            raise RebuildError(f"{p.name} version {p.version}: its params snapshot {p.tags['params_snapshot']} "
                               f"is not in run {p.run_id}: {exc}") from None
        params_file = work / PARAMS_FILE
        shutil.copyfile(snapshot, params_file)
    # read as data, not through this checkout's schema: the version's own commit validates its params when it
    # trains, and a key added or retired since must not make an older version unbuildable
    raw = yaml.safe_load(params_file.read_text())
    for key in ("data.root", "data.raw"):
        section, leaf = key.split(".")
        if Path(str(raw[section][leaf])).is_absolute():
            raise RebuildError(f"{p.name} version {p.version}: {key} was an absolute path "
                               f"({raw[section][leaf]}); a rebuild needs it inside the project")
    _backbone(ctx, p, str(raw["model"]["init"]))
    overrides = [f"mlflow.tracking_uri=sqlite:///{work}/rebuild-mlflow.db", f"mlflow.artifact_root={work}/rebuild-mlartifacts",
                 "pipeline.outputs=rebuild-outputs", "data.slices=rebuild-slices", "data.cache=data/cache"]
    return params_file, overrides


def _backbone(ctx: PipelineContext, p: RebuildPlan, init: str) -> None:
    """The file model.init names, as it was: a registered backbone is fetched again (pinned to the
    version the training resolved) to the path the snapshot holds; its content must be what was used."""
    if ModelInit.parse(init).kind in ("scratch", "imagenet"):
        return
    pinned = p.tags["model_init_version"]
    if not Path(init).is_file() and pinned.startswith("models:/"):
        _, fetched = fetch_backbone(ctx.store, pinned, Path(init).parent.parent)
        if fetched != Path(init):
            raise RebuildError(f"backbone {pinned} was fetched to {fetched}, not to {init} where version {p.version} "
                               "read it")
    if not Path(init).is_file():
        raise RebuildError(f"{p.name} version {p.version} started from {init}, which no longer exists")
    identity = ModelInit.parse(init).identity()
    if identity != p.tags["model_init_identity"]:
        raise RebuildError(f"{init} changed since version {p.version} started from it ({identity} now, "
                           f"{p.tags['model_init_identity']} then)")


def train_in_checkout(work: Path, p: RebuildPlan, params_file: Path, overrides: list[str]) -> Path:
    """`progattr pipeline ingest` then `train`, run by the checked-out commit's code with the version's
    thread count (what `compute.threads: 0` resolved to then); their output goes to the flow's log."""
    log = task_logger()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # env would win over params
    env.update(PYTHONPATH=str(work), OMP_NUM_THREADS=p.tags["threads"])
    common = ["--article", p.article, "--params", str(params_file), "--set", *overrides]
    for step in (["ingest", "--source", p.tags["data_raw"], "--no-track"], ["train"]):
        cmd = [sys.executable, "-m", "progattr", "pipeline", *step, *common]
        log.info("rebuild: `progattr pipeline %s` at commit %s", step[0], p.tags["git_commit"][:12])
        with subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            tail: list[str] = []
            for line in proc.stdout or ():
                log.info("  %s", line.rstrip())
                tail = [*tail[-30:], line.rstrip()]
        if proc.returncode != 0:
            raise RebuildError(f"`progattr pipeline {step[0]}` at commit {p.tags['git_commit'][:12]} failed "
                               f"({proc.returncode}):\n" + "\n".join(tail))
    return work / "rebuild-outputs" / p.article / "progressive" / "model.pt"


def compare(ctx: PipelineContext, p: RebuildPlan, work: Path, overrides: list[str], rebuilt: Path,
            seconds: float) -> dict[str, Any]:
    """The rebuilt and the registered model side by side: weight checksums, the training keys they
    were trained under, and per-attribute test accuracy on the rebuilt test split."""
    # the snapshot as this checkout's schema reads it: keys added since from this project's params
    readable = work / "rebuild-params-read.json"
    readable.write_text(json.dumps(fill_from(yaml.safe_load((work / PARAMS_FILE).read_text()),
                                             yaml.safe_load(Path(ctx.params_path).read_text()))))
    wctx = make_context(readable, p.article, overrides)
    data = DataRef(**json.loads(wctx.outputs("data_version.json").read_text()))
    test = load_split(wctx, data, "test")
    registry = Registry.of(ctx.store)
    with tempfile.TemporaryDirectory(prefix="progattr-rebuild-model-") as tmp:
        registered = load_model(registry.download(VersionRef(p.name, p.version, p.run_id), tmp))
    models = {"registered": registered, "rebuilt": load_model(rebuilt)}
    params = wctx.params()
    vocab = params.attributes(p.article)
    device = resolve_device(params.compute.device)
    accuracy: dict[str, dict[str, float]] = {}
    for which, model in models.items():
        accuracy[which] = {a: s["accuracy"] for a, s in scored(which, model, test, params, device)[1].summaries().items()}
    stages = Store.of(wctx.store).search({"kind": "stage"})
    keys = sorted({s.data.tags.get(TAG + "train_key", "") for s in stages})
    checksums = {"registered_tag": p.tags["weights_sha256"], "registered": weights_digest(registered),
                 "rebuilt": weights_digest(models["rebuilt"])}
    here = device_kind(device)
    return {
        "article": p.article, "version": p.version, "git_commit": p.tags["git_commit"],
        "git_dirty": p.tags.get("git_dirty", "unknown"),
        "data_version": p.tags["data_version"], "rebuilt_data_version": data.data_version,
        "identical": checksums["rebuilt"] == checksums["registered"] == checksums["registered_tag"],
        "weights_sha256": checksums,
        "train_key": {"registered": p.tags["train_key"], "rebuilt": keys[0] if len(keys) == 1 else keys},
        "accuracy": {a: {"registered_tag": _tag_float(p.tags.get(f"accuracy.{a}")),
                         "registered": accuracy["registered"].get(a), "rebuilt": accuracy["rebuilt"].get(a)}
                     for a in [*vocab, "overall"]},
        "compute": {"registered": {"device_kind": p.tags["device_kind"], "threads": p.tags["threads"],
                                   "torch": p.tags.get("torch", "?"), "torchvision": p.tags.get("torchvision", "?")},
                    "rebuild": {"device_kind": here, "threads": p.tags["threads"],
                                "torch": _version("torch"), "torchvision": _version("torchvision")}},
        "seconds": round(seconds, 1),
    }


def _tag_float(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)


def _version(module: str) -> str:
    return __import__(module).__version__


def scratch_dir(p: RebuildPlan) -> Path:
    """A fresh path for the worktree (git makes the folder)."""
    work = Path(tempfile.mkdtemp(prefix=f"progattr-rebuild-{p.article}-v{p.version}-"))
    work.rmdir()
    return work


def report(result: dict[str, Any]) -> str:
    """The comparison as a few lines of text (the CLI prints it)."""
    w = result["weights_sha256"]
    lines = [f"{model_name(result['article'])} version {result['version']}: "
             f"{'REPRODUCED (identical weights)' if result['identical'] else 'NOT reproduced'} "
             f"in {result['seconds']:.0f}s",
             f"  commit {result['git_commit'][:12]}"
             f"{' (trained from uncommitted changes on top of it)' if result['git_dirty'] == 'True' else ''}, "
             f"data version {result['data_version']}",
             f"  weights sha256: registered {w['registered'][7:23]} (tag {w['registered_tag'][7:23]}), "
             f"rebuilt {w['rebuilt'][7:23]}",
             f"  train key: registered {result['train_key']['registered']}, rebuilt {result['train_key']['rebuilt']}",
             "  test accuracy   registered (tag / now)   rebuilt"]
    for attr, acc in result["accuracy"].items():
        def pct(x: float | None) -> str:
            return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"
        lines.append(f"    {attr:<16} {pct(acc['registered_tag']):>7} / {pct(acc['registered']):<7}      "
                     f"{pct(acc['rebuilt'])}")
    c = result["compute"]
    lines.append(f"  compute: registered {c['registered']}, rebuild {c['rebuild']}")
    return "\n".join(lines)


plan_task = task(plan, name="rebuild-plan")
checkout_task = task(checkout, name="rebuild-checkout")
pull_task = task(pull_data, name="rebuild-pull-data")
params_task = task(write_params, name="rebuild-params")
train_task = task(train_in_checkout, name="rebuild-train")
compare_task = task(compare, name="rebuild-compare")
