"""What every pipeline task is handed: small, serialisable facts (paths, hashes, ids), never models."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from mlflow.entities import Run

from progattr_core.config import AUTO_PROFILE, AUTO_TARGET, TRAINING_SECTIONS, Params, load_params
from progattr_core.data.manifest import relative_inside
from progattr_core.model_init import ModelInit, imagenet_weights
from tracking.registry import BACKBONE, Registry, fetch_backbone
from tracking.store import TAG, Store, StoreConfig, redact, store_config

PARAMS_SNAPSHOT = "params.json"   # the params a flow run used, an artifact of its MLflow run


@dataclass(frozen=True)
class PipelineContext:
    """One pipeline run for one article. Relative paths in params resolve against `root`.

    The params are a snapshot read once, when the context is made at the start of a run: every
    task of the run sees the same values (and the training key hashes them), even if params.yaml is
    edited meanwhile. The snapshot is logged to the run's MLflow run as `params.json`.
    """

    root: str
    params_path: str
    overrides: tuple[str, ...]
    article: str
    store: StoreConfig
    snapshot: Params = field(repr=False)
    flow_run_id: str = ""          # the MLflow run of this flow invocation (parent of stage runs)
    model_init: str = ""           # model.init as written (a models:/ reference; the snapshot holds its file)
    model_init_version: str = ""   # a models:/ model.init pinned: models:/<name>/<version> (an alias resolved)
    recipe: str = ""               # how the recipe was chosen: `profile: auto`'s resolution, or the profile given
    resolved: tuple[str, ...] = ()  # `profile: auto`'s (profile, model.init, recipe), for a subflow to reuse

    def params(self) -> Params:
        return self.snapshot

    def path(self, rel: str | Path) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else Path(self.root) / p

    def relative(self, path: str | Path) -> str:
        """`path` relative to the project root when inside it (files written for DVC stay portable)."""
        rel = relative_inside(path, self.root)
        return rel if rel is not None else str(Path(path).resolve())

    def outputs(self, *parts: str) -> Path:
        """<pipeline.outputs>/<article>/...: models, metrics and plots of this article."""
        return self.path(self.params().pipeline.outputs) / self.article / Path(*parts)


def make_context(params_path: str | Path, article: str | None, overrides: list[str] | tuple[str, ...] = (),
                 resolve_profile: bool = True, resolved: Sequence[str] | None = None) -> PipelineContext:
    """Context for `params_path`, its params read now; the project root is the folder that holds it.
    `train.article` is set to `article` (None: params' own), so `train.attribute_order` applies to this
    run's article; `profile: auto` is resolved (resolve_auto_profile, logged and kept as `recipe`) unless
    `resolve_profile` is False (flows that train nothing from `model.init` for an article: pretraining
    starts from the sections as written, the registry and retention flows train nothing); a
    `model.init: models:/progattr-backbone/<version>` (or `@<alias>`) becomes the fetched file.
    `resolved`: an earlier context's `resolved` (a flow that runs the training flow inside it, the
    nightly): the run takes that choice instead of reading the registry again."""
    params_path = Path(params_path).resolve()
    overrides = tuple(overrides)
    pin_article = (f"train.article={article}",) if article is not None else ()
    params = load_params(params_path, (*overrides, *pin_article))
    root = params_path.parent
    store = store_config(params, root)
    recipe, choice = f"profile {params.profile or 'none'} (as given)", ()
    if params.profile == AUTO_PROFILE and not resolve_profile:
        recipe = f"profile {AUTO_PROFILE}, not resolved by this flow: the sections as written"
    elif params.profile == AUTO_PROFILE:
        choice = tuple(resolved or resolve_auto_profile(params, store, overrides))
        profile, init, recipe = choice
        logging.getLogger("progattr.pipeline").log(logging.INFO if profile else logging.WARNING, "%s", recipe)
        # the resolution goes first: the run's own --set still wins over the profile it picked
        params = load_params(params_path, (f"profile={profile}", *([f"model.init={init}"] if init else []),
                                           *overrides, *pin_article))
    article = params.train.article
    init = pinned = params.model.init
    if ModelInit.parse(init).kind == "registered":  # a registered backbone: its file, fetched once, is what the run uses
        cache = Path(params.data.cache)
        ref, local = fetch_backbone(store, init, (cache if cache.is_absolute() else root / cache) / "backbones",
                                    params.model.arch)
        params = replace(params, model=replace(params.model, init=str(local)))
        pinned = f"models:/{ref.name}/{ref.version}"
    return PipelineContext(str(root), str(params_path), overrides, article, store, params, model_init=init,
                           model_init_version=pinned, recipe=recipe, resolved=choice)


def resolve_auto_profile(params: Params, store: StoreConfig, overrides: tuple[str, ...]) -> tuple[str, str, str]:
    """`profile: auto` -> (profile, model.init, one line saying why): the best recipe measured that this
    project can have (bench/README.md, "Fine-grained attributes": from scratch no method learns the real
    T-shirts' collar or pattern; from a pretrained Base every one does).

    1. `pretrained` from the newest registered `progattr-backbone` of model.arch: a Base the team
       pretrained on purpose (`progattr pretrain`), the recipe measured here;
    2. `pretrained` from torchvision's ImageNet weights for model.arch if already on disk (never
       downloaded here: a run must not depend on the network);
    3. none (params' sections: from scratch), with what to run for 1 or 2.
    A `--set model.init=...` is the user's own choice: the sections' recipe with it, nothing resolved."""
    arch = params.model.arch
    if any(item.split("=", 1)[0] == "model.init" for item in overrides):
        return "", "", f"profile auto -> none: model.init={params.model.init} was set, the sections' recipe as written"
    mine = [v for v in Registry.of(store).versions(BACKBONE) if v.tags.get(TAG + "arch") == arch]
    if mine:
        uri = f"models:/{BACKBONE}/{mine[-1].version}"
        return AUTO_TARGET, uri, (f"profile auto -> {AUTO_TARGET} with model.init={uri}, the newest registered {arch} "
                                  f"Base ({mine[-1].tags.get(TAG + 'n_images', '?')} images of "
                                  f"{mine[-1].tags.get(TAG + 'n_article_types', '?')} article types)")
    url, file = imagenet_weights(arch)
    if file.is_file():
        return AUTO_TARGET, "imagenet", f"profile auto -> {AUTO_TARGET} with model.init=imagenet ({file})"
    return "", "", (f"profile auto -> none: no pretrained {arch} Base here (no {BACKBONE} version of {arch} in the "
                    f"registry, no ImageNet weights at {file}), so this run trains from scratch, which learns fine "
                    f"visual details (collar, pattern) poorly on real photos (bench/README.md, \"Fine-grained "
                    f"attributes\"). For a pretrained Base: `progattr pretrain --set model.arch={arch}` on a catalogue "
                    f"(docs/pipeline.md, \"Pre-trained weights\"), or place {url} at {file}; the next run then picks it")


@dataclass(frozen=True)
class DataRef:
    """The ingested data of one article: its manifest and content version."""

    manifest: str                  # canonical manifest of the article (its paths relative to data_root)
    data_root: str                 # these paths are relative to the project root
    data_version: str              # DVC hash of the raw folder (images + annotations), or our own
    raw_dir: str
    n_images: int
    splits: dict[str, int] = field(default_factory=dict)
    layout: str = "folder"         # "parts": a partitioned import, data_version is its index's DVC hash


def key_suffix(p: Params) -> str:
    """What every training key (stages, baselines, pretraining) adds after its params: a model.init
    file by its content (a path alone would resume stages trained from an older file at the same path;
    nothing for scratch and imagenet, whose keys stay what they were), then the resolved thread
    count, determinism and device kind (the same inputs give the same weights only with the same
    compute, progattr_core/determinism.py, so a stage trained with other compute is not resumed from)."""
    # torch: imported where a key is made, not by every step that makes a context (the data steps)
    from progattr_core.determinism import compute_identity
    from progattr_core.model import resolve_device

    init = ModelInit.parse(p.model.init).identity()
    return (f"|init={init}" if init.startswith("sha256:") else "") + "|" + compute_identity(p.compute, resolve_device(p.compute.device))


def training_key(p: Params, *parts: str) -> str:
    """The one builder of every training key (progressive stages, baselines, branch-add, pretraining):
    what the weights depend on, `parts` (article, data version, the params digests the training reads,
    ...), then key_suffix's model.init content and compute, so no kind of key can leave those out."""
    return hashlib.sha256(("|".join(parts) + key_suffix(p)).encode()).hexdigest()[:16]


def train_key(ctx: PipelineContext, data: DataRef) -> str:
    """Identity of a progressive training: article + data version + the params it depends on + what
    it starts from + the compute it trains with (+ its teachers' key when it distils)."""
    p = ctx.params()
    teachers = (f"teachers={baseline_key(ctx, data)}",) if p.train.distill != "none" else ()
    return training_key(p, ctx.article, data.data_version, p.digest(*TRAINING_SECTIONS),
                        str(p.attributes(ctx.article)), *teachers)


def baseline_key(ctx: PipelineContext, data: DataRef) -> str:
    p = ctx.params()
    return training_key(p, ctx.article, data.data_version, p.digest(*TRAINING_SECTIONS, "baselines"))


def git(root: str | Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The one way the pipeline runs git: `git -C root ...`, output captured; where git itself cannot
    run, a failed result (returncode 127) rather than an exception."""
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=timeout)
    except OSError as exc:
        return subprocess.CompletedProcess(["git", *args], 127, "", str(exc))


def git_commit(root: str | Path) -> str:
    """The checkout's commit; where there is no checkout (the Docker image leaves .git out), the
    commit the image was built from (env PROGATTR_GIT_COMMIT, the Dockerfile's GIT_COMMIT build arg)."""
    out = git(root, "rev-parse", "HEAD", timeout=10)
    return (out.stdout.strip() if out.returncode == 0 else "") or os.environ.get("PROGATTR_GIT_COMMIT") or "unknown"


def git_dirty(root: str | Path, exclude: tuple[str, ...] = ()) -> bool | None:
    """Whether tracked files differ from the checkout's commit (None outside a checkout): a version
    trained from uncommitted changes cannot be rebuilt from its commit alone. `exclude`: paths under
    `root` left out (a benchmark rewrites its own results)."""
    spec = ["--", ".", *(f":(exclude){e}" for e in exclude)] if exclude else []
    out = git(root, "status", "--porcelain", "--untracked-files=no", *spec, timeout=30)
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def task_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run; the module logger when called plainly (DVC)."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("progattr.pipeline")


def completed_run(store: Store, tags: dict[str, object], what: str) -> Run | None:
    """The one reuse-or-resume rule of every checkpointed run (progressive and branch-add stages, baselines,
    pretraining): the completed MLflow run with `tags`, reused as it is; else None, after closing every
    interrupted run with those tags as failed, with a warning (a pretraining then resumes from the newest
    one's epoch checkpoint; the others train again)."""
    done = store.find_completed(tags)
    if done is not None:
        task_logger().info("%s already completed in MLflow run %s: not retraining", what, done.info.run_id)
        return done
    for stale in store.close_interrupted(tags):
        task_logger().warning("%s: MLflow run %s was interrupted", what, stale)
    return None


@contextmanager
def flow_run(ctx: PipelineContext, name: str, tags: dict[str, str]) -> Iterator[PipelineContext]:
    """The MLflow run of one flow invocation, with the params snapshot; the context it yields carries
    its id. The run ends FINISHED when the block completes, FAILED when it raises."""
    store = Store.of(ctx.store)
    with store.run(name, {"kind": "flow", "article": ctx.article, "git_commit": git_commit(ctx.root), **tags}) as run_id:
        # an override may carry a URL with a password (--set mlflow.tracking_uri=...): never log it
        store.log_params(run_id, {"params_path": ctx.params_path, "overrides": redact(" ".join(ctx.overrides)) or "-",
                                  "params_digest": ctx.params().digest(), "profile": ctx.params().profile or "-",
                                  "recipe": ctx.recipe or "-"})
        with tempfile.TemporaryDirectory(prefix="progattr-params-") as tmp:
            snapshot = Path(tmp) / PARAMS_SNAPSHOT
            # in params order (taxonomy order is the default attribute order): load_params reads it back as is
            snapshot.write_text(redact(json.dumps(ctx.params().to_dict(), indent=1)))
            store.log_artifacts(run_id, snapshot)
        yield replace(ctx, flow_run_id=run_id)
