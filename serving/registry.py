"""Serving's one MLflow module: where an alias points, and the weights of a version.

Reads only: serving never creates experiments, versions or aliases. A version's files are the
pipeline's self-describing `model/model.pt` (see tasks/registry.py), loaded with
`weights_only=True` by `progattr_core.model.load_model`: nothing from the registry is unpickled.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from torch import nn

from progattr_core.model import load_model

log = logging.getLogger(__name__)

# MLflow error codes meaning "no such model or alias" (as opposed to the store being unreachable).
_ABSENT = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}
MODEL_FILE = "model.pt"


def model_name(article: str) -> str:
    """The registered model of an article; the same convention as tasks/registry.py."""
    return f"progattr-{article}"


@dataclass(frozen=True)
class VersionRef:
    name: str
    version: str
    run_id: str


class RegistrySource:
    """Where `alias` points for each article, and the model behind a version."""

    def __init__(self, tracking_uri: str, alias: str):
        self.tracking_uri = tracking_uri
        self.alias = alias
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def current(self, article: str) -> VersionRef | None:
        """The version `alias` points to, or None if the model or alias does not exist (yet)."""
        name = model_name(article)
        try:
            mv = self.client.get_model_version_by_alias(name, self.alias)
        except MlflowException as exc:
            if exc.error_code in _ABSENT:
                return None
            raise
        return VersionRef(name, str(mv.version), str(mv.run_id or ""))

    def versions(self, article: str) -> list[dict[str, object]]:
        """Every version of an article's model with its aliases (for GET /v1/articles)."""
        name = model_name(article)
        try:
            aliases = self.client.get_registered_model(name).aliases or {}
            found = self.client.search_model_versions(f"name = '{name}'")
        except MlflowException as exc:
            if exc.error_code in _ABSENT:
                return []
            raise
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        return sorted(({"version": str(v.version), "aliases": sorted(by_version.get(str(v.version), []))}
                       for v in found), key=lambda v: int(str(v["version"])))

    def download(self, ref: VersionRef, dst: str | Path) -> Path:
        """The version's model file, downloaded into the folder `dst`."""
        uri = self.client.get_model_version_download_uri(ref.name, ref.version).rstrip("/")
        return Path(download_artifacts(artifact_uri=f"{uri}/{MODEL_FILE}", dst_path=str(dst),
                                       tracking_uri=self.tracking_uri))

    def load(self, ref: VersionRef) -> nn.Module:
        """Download the version's model file to a private temporary folder and load it (no pickle)."""
        with tempfile.TemporaryDirectory(prefix="progattr-serve-") as tmp:
            return load_model(self.download(ref, tmp))
