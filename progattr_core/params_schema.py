"""The params' sections as frozen dataclasses (params.yaml's shape, one field per key) and the
vocabularies they are checked against. Read by progattr_core.config, which builds them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError

ARCHS = ("resnet18", "resnet34", "resnet50")
SPLIT_POINTS = ("layer2", "layer3", "layer4.1")
METHODS = ("individual", "multilabel", "multilabel_masked")
# what a profile may set: the model recipe (the rest, e.g. paths and `train.article`, is read by dvc.yaml
# from the file as written, so a profile changing it would desynchronise the DVC stages)
PROFILE_SECTIONS = ("model", "train", "optimizer", "compute", "baselines", "pretrain")
# the sections a model's weights depend on, besides the data: every training key and params hash digests them
# (compute too, resolved: tasks.context.key_suffix, so `device: auto` and `cpu` on a CPU are the same training)
TRAINING_SECTIONS = ("seed", "model", "train", "optimizer")
# `profile: auto`: a pipeline run picks the `pretrained` profile when a pretrained Base can be had, else
# none (tasks/context.resolve_auto_profile, which can see the registry); read plainly, it applies nothing
AUTO_PROFILE = "auto"
AUTO_TARGET = "pretrained"


@dataclass(frozen=True)
class SplitParams:
    salt: str
    val_fraction: float
    test_fraction: float


@dataclass(frozen=True)
class ImageParams:
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class DataParams:
    root: str
    raw: str
    manifest: str
    cache: str
    slices: str
    rejects: str
    workers: int                      # processes for image work: imports, cache builds, tagging (0: every core)
    split: SplitParams
    image: ImageParams


@dataclass(frozen=True)
class SynthParams:
    articles: tuple[str, ...]
    n_images: int
    image_size: int
    full_label_fraction: float
    label_rate: float
    label_noise: float
    seed: int


@dataclass(frozen=True)
class KaggleArticleParams:
    article_types: tuple[str, ...]
    columns: dict[str, str]
    keywords: dict[str, dict[str, tuple[str, ...]]]
    name_ignore: tuple[str, ...]      # phrases dropped from the name before keywords match (brands: "U.S. Polo Assn.")
    keyword_default: dict[str, str]   # attribute -> its class when no keyword of it is in the name


@dataclass(frozen=True)
class ImportParams:
    kaggle: dict[str, KaggleArticleParams]


@dataclass(frozen=True)
class PretrainParams:
    source: str
    columns: dict[str, str]
    keywords: dict[str, dict[str, tuple[str, ...]]]   # heads from words of the product names, as imports.kaggle
    exclude_article_types: tuple[str, ...]
    min_class_count: int
    max_images: int
    epochs: int


@dataclass(frozen=True)
class ModelParams:
    arch: str
    split_point: str
    split_points: dict[str, str]   # attribute -> an earlier split point for its Branch (shares less)
    init: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class AugmentParams:
    hflip: bool
    crop_padding: int


@dataclass(frozen=True)
class TrainParams:
    article: str
    attribute_order: tuple[str, ...]
    epochs_first: int
    epochs_add: int
    epochs_finetune: int
    finetune_after: Literal["each", "last"]
    base_attributes: int
    first_attributes: int
    branch_images: Literal["union", "labelled"]
    class_weighting: Literal["none", "sqrt_inverse", "inverse"]
    distill: Literal["none", "individual"]
    distill_temperature: float
    epochs_final: int
    batch_size: int
    select_best_epoch: bool
    augment: AugmentParams


@dataclass(frozen=True)
class OptimizerParams:
    name: Literal["sgd", "adamw"]
    lr: float
    lr_base_ratio: float
    finetune_factor: float
    final_factor: float
    weight_decay: float
    momentum: float
    lr_schedule: Literal["cosine", "constant"]


@dataclass(frozen=True)
class ComputeParams:
    device: str
    threads: int
    deterministic: bool
    amp: bool


@dataclass(frozen=True)
class BaselineParams:
    methods: tuple[str, ...]
    epochs: int
    lr_grouping: str


@dataclass(frozen=True)
class EvaluationParams:
    pr_points: int
    split_advice_margin: float


@dataclass(frozen=True)
class ValidationParams:
    min_label_coverage: float
    min_label_coverage_by_attribute: dict[str, float]
    min_class_count: int
    min_full_label_fraction: float

    def min_coverage(self, attribute: str) -> float:
        """The fraction of images `attribute` must be labelled on: its own floor, else the common one."""
        return self.min_label_coverage_by_attribute.get(attribute, self.min_label_coverage)


@dataclass(frozen=True)
class MlflowParams:
    tracking_uri: str
    artifact_root: str
    experiment: str
    retries: int
    retry_delay_s: float


@dataclass(frozen=True)
class GatesParams:
    max_gap_to_best_baseline: float
    max_regression_vs_champion: float
    min_adjusted_balanced_accuracy: float
    max_coverage_regression_vs_champion: float


@dataclass(frozen=True)
class PipelineParams:
    source: str
    outputs: str
    max_workers: int
    dask_address: str


@dataclass(frozen=True)
class ServingParams:
    host: str
    port: int
    workers: int
    threads: int
    max_body_bytes: int
    poll_interval_s: float
    alias: str
    top_k: int
    auth_token_env: str
    tag_batch_size: int
    tag_output: str
    shadow_alias: str
    shadow_share: float
    metrics_url: str
    target_precision: float
    target_precision_by_attribute: dict[str, float]

    def target_for(self, attribute: str) -> float:
        """The precision `attribute`'s accepted answers must reach: its own target, else the common one."""
        return self.target_precision_by_attribute.get(attribute, self.target_precision)


@dataclass(frozen=True)
class BranchAddParams:
    mode: Literal["frozen_base", "progressive"]
    epochs_add: int
    epochs_finetune: int
    epochs_final: int
    max_regression_vs_base: float


@dataclass(frozen=True)
class OperationsParams:
    articles: tuple[str, ...]
    nightly_cron: str
    timezone: str
    work_pool: str
    audit_log: str
    approval_timeout_s: int
    approval_poll_s: int
    webhook_env: str


@dataclass(frozen=True)
class RetentionParams:
    keep_runs: int
    decode_cache_gb: float
    dvc_cache: Literal["workspace", "keep"]
    after_nightly: bool


@dataclass(frozen=True)
class Params:
    seed: int
    profile: str                   # the applied profile ("" none), a record: its values are in the sections
    profiles: dict[str, dict[str, Any]]
    data: DataParams
    synth: SynthParams
    taxonomy: dict[str, dict[str, tuple[str, ...]]]
    imports: ImportParams
    pretrain: PretrainParams
    model: ModelParams
    train: TrainParams
    optimizer: OptimizerParams
    compute: ComputeParams
    baselines: BaselineParams
    evaluation: EvaluationParams
    validation: ValidationParams
    mlflow: MlflowParams
    gates: GatesParams
    pipeline: PipelineParams
    serving: ServingParams
    branch_add: BranchAddParams
    operations: OperationsParams
    retention: RetentionParams

    def attributes(self, article: str) -> dict[str, tuple[str, ...]]:
        """The ordered attribute -> class-vocabulary mapping of one article."""
        if article not in self.taxonomy:
            raise ConfigError(f"unknown article {article!r}; taxonomy has {sorted(self.taxonomy)}")
        return self.taxonomy[article]

    def to_dict(self) -> dict[str, Any]:
        """The resolved values, loadable as they are (the params snapshot of a run): `profile` is ""
        there, since the applied profile's values are already in the sections (and a `--set` over them
        must not be undone by applying it again)."""
        return {**_to_plain(self), "profile": ""}

    def digest(self, *sections: str) -> str:
        """A stable hash of the named sections (all when none): the params part of cache keys."""
        plain = self.to_dict()
        chosen = {k: plain[k] for k in (sections or plain)}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [_to_plain(v) for v in obj]
    return obj
