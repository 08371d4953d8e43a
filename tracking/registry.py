"""The model registry, the one place that names models and reads or moves versions and aliases.

Used by the pipeline (register a version, gate `challenger`), approvals (move `champion` and
`previous`, tag decisions), the nightly checks (is this training registered already?) and serving
(where does the alias point, load that version). Every call goes through `call_with_retries`; with
`retries=0` (serving's follower, which polls again anyway) a failure is raised at once.

A version's files are the pipeline's self-describing `model/model.pt` + `model/model.json` (no
MLflow flavour), loaded with `weights_only=True` by `progattr_core.model_file.load_model`: nothing from
the registry is unpickled.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from progattr_core.errors import ConfigError
from tracking.store import TAG, StoreConfig, call_with_retries, redact

T = TypeVar("T")
CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"
APPROVAL_STATUS = "approval.status"  # pending | approved | rejected | rolled_back (tag progattr.approval.status)
MODEL_FOLDER, MODEL_FILE = "model", "model.pt"
PREDICTED_MIX = "predicted_mix."  # + attribute: JSON {class: share} of test-split predictions (serving's drift reference)
BACKBONE = "progattr-backbone"     # pretrained Bases (`progattr pretrain`), for model.init=models:/...
# MLflow error codes meaning "no such model, version or alias" (as opposed to the store failing).
_ABSENT = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def model_name(article: str) -> str:
    """The registered model of an article."""
    return f"progattr-{article}"


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/<name>/<version>`, `models:/<name>/latest` (the newest version) or `models:/<name>@<alias>`
    -> (name, version, alias)."""
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias and "/" not in name:
            return name, None, alias
    else:
        name, _, version = rest.partition("/")
        if name and (version.isdigit() or version == "latest"):
            return name, version, None
    raise ConfigError(f"{uri!r} is not a registry reference: use models:/<name>/<version>, models:/<name>/latest "
                      f"or models:/<name>@<alias>")


@dataclass(frozen=True)
class VersionRef:
    name: str
    version: str
    run_id: str

    @classmethod
    def of(cls, mv: ModelVersion) -> VersionRef:
        return cls(mv.name, str(mv.version), str(mv.run_id or ""))


class Registry:
    """Registered models `progattr-<article>`: versions, their `progattr.*` tags, aliases and files."""

    def __init__(self, tracking_uri: str, retries: int = 0, retry_delay_s: float = 0.0):
        self.tracking_uri = tracking_uri
        self.retries, self.retry_delay_s = retries, retry_delay_s
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def of(cls, cfg: StoreConfig) -> Registry:
        """The registry of the pipeline's tracking store, retried as params mlflow.retries says."""
        return cls(cfg.tracking_uri, cfg.retries, cfg.retry_delay_s)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return call_with_retries(self.tracking_uri, self.retries, self.retry_delay_s, fn, *args, **kwargs)

    def _absent_is_none(self, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return self._call(fn, *args)
        except MlflowException as exc:
            if exc.error_code in _ABSENT:
                return None
            raise

    # -- reads ------------------------------------------------------------------------------------
    def version(self, name: str, version: str) -> ModelVersion | None:
        return self._absent_is_none(self.client.get_model_version, name, str(version))

    def at_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version `alias` points to; None when the model or the alias does not exist (yet)."""
        return self._absent_is_none(self.client.get_model_version_by_alias, name, alias)

    def alias_version(self, name: str, alias: str) -> str | None:
        mv = self.at_alias(name, alias)
        return None if mv is None else str(mv.version)

    def resolve(self, uri: str) -> VersionRef:
        """The version a `models:/...` reference names; ConfigError when there is none."""
        mv = self.resolve_version(uri)
        return VersionRef.of(mv)

    def resolve_version(self, uri: str) -> ModelVersion:
        """What `resolve` names, with its tags; ConfigError when there is none."""
        name, version, alias = parse_model_uri(uri)
        if version == "latest":
            newest = self.versions(name)
            mv = newest[-1] if newest else None
        else:
            mv = self.version(name, version) if version else self.at_alias(name, alias)
        if mv is None:
            raise ConfigError(f"{uri}: no such version in the registry at {redact(self.tracking_uri)}")
        return mv

    def current(self, article: str, alias: str) -> VersionRef | None:
        """Where `alias` points for `article` (what serving follows)."""
        mv = self.at_alias(model_name(article), alias)
        return None if mv is None else VersionRef.of(mv)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, oldest first; [] when the model does not exist."""
        found = self._absent_is_none(self.client.search_model_versions, f"name = '{name}'") or []
        return sorted(found, key=lambda v: int(v.version))

    def versions_with_tags(self, name: str, tags: dict[str, Any]) -> list[ModelVersion]:
        """Versions whose `progattr.<key>` tags equal `tags`, oldest first."""
        return [v for v in self.versions(name) if all(v.tags.get(TAG + k) == str(x) for k, x in tags.items())]

    def aliases(self, name: str) -> dict[str, str]:
        model = self._absent_is_none(self.client.get_registered_model, name)
        return {} if model is None else {a: str(v) for a, v in (model.aliases or {}).items()}

    def listing(self, article: str) -> list[dict[str, Any]]:
        """Every version of an article's model with its aliases (serving's GET /v1/articles)."""
        name = model_name(article)
        by_version: dict[str, list[str]] = {}
        for alias, version in self.aliases(name).items():
            by_version.setdefault(version, []).append(alias)
        return [{"version": str(v.version), "aliases": sorted(by_version.get(str(v.version), []))}
                for v in self.versions(name)]

    def download(self, ref: VersionRef, dst: str | Path, file: str = MODEL_FILE) -> Path:
        """One file of the version's model folder (default: the model), downloaded into the folder `dst`."""
        uri = self._call(self.client.get_model_version_download_uri, ref.name, ref.version).rstrip("/")
        return Path(self._call(download_artifacts, artifact_uri=f"{uri}/{file}", dst_path=str(dst),
                               tracking_uri=self.tracking_uri))

    def load(self, ref: VersionRef):
        """Download the version's model file to a private temporary folder and load it (no pickle)."""
        from progattr_core.model_file import load_model  # torch: only the callers that load pay for it

        with tempfile.TemporaryDirectory(prefix="progattr-registry-") as tmp:
            return load_model(self.download(ref, tmp))

    def predicted_mix(self, ref: VersionRef) -> dict[str, dict[str, float]]:
        """attribute -> {class: share} the version predicted on its test split (empty when not recorded)."""
        mv = self.version(ref.name, ref.version)
        prefix = TAG + PREDICTED_MIX
        return {} if mv is None else {k.removeprefix(prefix): json.loads(v) for k, v in mv.tags.items()
                                      if k.startswith(prefix)}

    # -- writes -----------------------------------------------------------------------------------
    def register(self, name: str, run_id: str, tags: dict[str, Any]) -> str:
        """A new version of `name` from the run's `model/` folder, tagged `progattr.*` and pending
        approval (a person decides; see tasks/approvals.py)."""
        try:
            self._call(self.client.create_registered_model, name)
        except MlflowException as exc:  # it exists: the usual case after the first version
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {APPROVAL_STATUS: "pending", **tags}
        mv = self._call(self.client.create_model_version, name, f"runs:/{run_id}/{MODEL_FOLDER}", run_id=run_id,
                        tags={TAG + k: str(v) for k, v in tags.items()})
        return str(mv.version)

    def set_tags(self, name: str, version: str, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self._call(self.client.set_model_version_tag, name, str(version), TAG + k, str(v))

    def move_alias(self, name: str, alias: str, version: str | None) -> None:
        """Point `alias` at `version`; None removes the alias."""
        if version is None:
            self._call(self.client.delete_registered_model_alias, name, alias)
        else:
            self._call(self.client.set_registered_model_alias, name, alias, str(version))


def fetch_backbone(cfg: StoreConfig, uri: str, cache: str | Path, arch: str | None = None) -> tuple[VersionRef, Path]:
    """The version a `models:/...` model.init names (an alias resolved now) and its model file, with
    its lineage beside it, under `<cache>/<name>-v<version>/` (a version never changes, so a copy
    there is reused). With `arch`, a version tagged as another architecture is a ConfigError that
    names the versions of `arch` to pin instead (`latest` is the newest version of any architecture)."""
    from progattr_core.pretrain import lineage_path

    registry = Registry.of(cfg)
    mv = registry.resolve_version(uri)
    ref = VersionRef.of(mv)
    if arch is not None:
        got = mv.tags.get(TAG + "arch")
        if got is not None and got != arch:
            same = [str(v.version) for v in registry.versions(ref.name) if v.tags.get(TAG + "arch") == arch]
            hint = (f"pin one of the {arch} versions ({', '.join(same)}): model.init=models:/{ref.name}/{same[-1]}"
                    if same else f"pretrain one: progattr pretrain --set model.arch={arch}")
            raise ConfigError(f"{uri} is {ref.name} version {ref.version}, a {got} backbone, but model.arch is "
                              f"{arch}; {hint}, or set model.arch={got}")
    cache = Path(cache)
    folder = cache / f"{ref.name}-v{ref.version}"
    if not (folder / MODEL_FILE).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
        try:
            registry.download(ref, tmp)
            try:
                registry.download(ref, tmp, lineage_path(MODEL_FILE).name)
            except (MlflowException, OSError):  # registered without a lineage: check_no_leakage warns
                pass
            tmp.rename(folder)  # whole or not at all
        except OSError:
            if not (folder / MODEL_FILE).is_file():  # else a concurrent fetch got there first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ref, folder / MODEL_FILE
