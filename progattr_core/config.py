"""params.yaml -> frozen dataclasses. The one source of values: no second set of defaults in code.

Every key must be present and known; a wrong type or value raises ConfigError naming the key and file.
Precedence, lowest first: the file's sections, then the named profile it selects (`profile:`, one of
`profiles:`), then overrides (`--set train.lr=0.01`, which may also select the profile: `--set
profile=paper`). All are applied to the raw mapping before validation.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError

ARCHS = ("resnet18", "resnet34", "resnet50")
SPLIT_POINTS = ("layer2", "layer3", "layer4.1")
METHODS = ("individual", "multilabel", "multilabel_masked")
# what a profile may set: the model recipe (the rest, e.g. paths and `train.article`, is read by dvc.yaml
# from the file as written, so a profile changing it would desynchronise the DVC stages)
PROFILE_SECTIONS = ("model", "train", "baselines", "pretrain")
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
    exclude_article_types: tuple[str, ...]
    min_class_count: int
    max_images: int
    epochs: int


@dataclass(frozen=True)
class ModelParams:
    arch: str
    split_point: str
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
    optimizer: Literal["sgd", "adamw"]
    lr: float
    lr_base_ratio: float
    finetune_factor: float
    final_factor: float
    weight_decay: float
    momentum: float
    lr_schedule: Literal["cosine", "constant"]
    select_best_epoch: bool
    amp: bool
    augment: AugmentParams
    threads: int
    deterministic: bool


@dataclass(frozen=True)
class BaselineParams:
    methods: tuple[str, ...]
    epochs: int
    split_point: str


@dataclass(frozen=True)
class EvaluationParams:
    top_k: int
    pr_points: int


@dataclass(frozen=True)
class ValidationParams:
    min_label_coverage: float
    min_class_count: int
    min_full_label_fraction: float


@dataclass(frozen=True)
class MlflowParams:
    tracking_uri: str
    artifact_root: str
    experiment: str
    retries: int
    retry_delay_s: float


@dataclass(frozen=True)
class RegistryParams:
    max_gap_to_best_baseline: float
    max_regression_vs_champion: float
    min_adjusted_balanced_accuracy: float


@dataclass(frozen=True)
class PipelineParams:
    source: str
    outputs: str
    max_workers: int


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
    tag_min_probability: float
    tag_output: str
    shadow_alias: str
    shadow_share: float
    metrics_url: str


@dataclass(frozen=True)
class BranchAddParams:
    mode: Literal["frozen_base", "progressive"]
    epochs_add: int
    epochs_finetune: int
    epochs_final: int


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
    device: str
    profile: str                   # the applied profile ("" none), a record: its values are in the sections
    profiles: dict[str, dict[str, Any]]
    data: DataParams
    synth: SynthParams
    taxonomy: dict[str, dict[str, tuple[str, ...]]]
    imports: ImportParams
    pretrain: PretrainParams
    model: ModelParams
    train: TrainParams
    baselines: BaselineParams
    evaluation: EvaluationParams
    validation: ValidationParams
    mlflow: MlflowParams
    registry: RegistryParams
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


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{source}: {where} = {value!r}; allowed: {list(typing.get_args(tp))}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {where} must be a list, got {type(value).__name__} {value!r}")
        inner = typing.get_args(tp)[0]
        return tuple(_convert(v, inner, f"{where}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where} must be a mapping, got {type(value).__name__}")
        kt, vt = typing.get_args(tp)
        return {_convert(k, kt, where, source): _convert(v, vt, f"{where}.{k}", source) for k, v in value.items()}
    if tp is Any:                  # a profile's values: checked where they land, once applied
        return value
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: union types are not supported in params")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{source}: {where} must be {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def _build(cls: type, raw: Any, where: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where or 'top level'} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    missing = [n for n in names if n not in raw]
    prefix = f"{where}." if where else ""
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {[prefix + k for k in unknown]}; known: {names}")
    if missing:
        raise ConfigError(f"{source}: missing key(s) {[prefix + k for k in missing]}")
    return cls(**{n: _convert(raw[n], hints[n], prefix + n, source) for n in names})


def _set(raw: dict[str, Any], dotted: str, value: Any, what: str, parse: bool) -> None:
    node = raw
    keys = dotted.split(".")
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            raise ConfigError(f"{what}: {key!r} is not a section of params")
        node = node[key]
    if keys[-1] not in node:
        raise ConfigError(f"{what}: unknown key {dotted!r}")
    node[keys[-1]] = yaml.safe_load(value) if parse else value


def _overrides(overrides: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, text = item.split("=", 1)
        pairs.append((dotted, text))
    return pairs


def _apply_profile(raw: dict[str, Any], name: str, source: str) -> None:
    profiles = raw.get("profiles")
    if not isinstance(profiles, dict):
        raise ConfigError(f"{source}: profiles must be a mapping of name -> {{section.key: value}}")
    if name not in profiles:
        raise ConfigError(f"{source}: profile = {name!r}; defined profiles: {sorted(profiles)} (or \"\" for none)")
    values = profiles[name]
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: profiles.{name} must be a mapping of section.key: value")
    for dotted, value in values.items():
        if str(dotted).split(".")[0] not in PROFILE_SECTIONS:
            raise ConfigError(f"{source}: profiles.{name}.{dotted}: a profile may only set keys of "
                              f"{list(PROFILE_SECTIONS)}")
        _set(raw, str(dotted), value, f"{source}: profiles.{name}", parse=False)


def _resolve_per_article(raw: dict[str, Any], source: str) -> None:
    """`model.image_size` may be a mapping `{default: N, <article>: N, ...}`: it resolves here to the size
    for `train.article` (a run's params and its snapshot hold that one number)."""
    model, train = raw.get("model"), raw.get("train")
    if not isinstance(model, dict) or not isinstance(model.get("image_size"), dict):
        return
    sizes = model["image_size"]
    taxonomy = raw.get("taxonomy") if isinstance(raw.get("taxonomy"), dict) else {}
    unknown = sorted(str(k) for k in sizes if k != "default" and k not in taxonomy)
    if unknown:
        raise ConfigError(f"{source}: model.image_size names unknown article(s) {unknown}; known: {sorted(taxonomy)}")
    if "default" not in sizes:
        raise ConfigError(f"{source}: model.image_size = {sizes!r}; a per-article mapping needs a `default` "
                          "size for the other articles")
    article = train.get("article") if isinstance(train, dict) else None
    model["image_size"] = sizes.get(article, sizes["default"])


def params_from_dict(raw: dict[str, Any], source: str = "<params>",
                     overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Validate a raw params mapping (modified in place): the selected profile's values, then the
    overrides (`a.b.c=value`, value parsed as YAML), are applied first."""
    pairs = _overrides(overrides)
    for dotted, text in pairs:
        if dotted == "profile":
            _set(raw, dotted, text, f"override {dotted}={text}", parse=True)
    if "profile" in raw and raw["profile"] is None:  # `profile:` or `--set profile=` (empty): none
        raw["profile"] = ""
    profile = raw.get("profile")
    if isinstance(raw.get("profiles"), dict) and AUTO_PROFILE in raw["profiles"]:
        raise ConfigError(f"{source}: profiles.{AUTO_PROFILE}: the name is reserved (profile: {AUTO_PROFILE} picks "
                          f"one of the others when a run starts)")
    if profile and profile != AUTO_PROFILE:
        if not isinstance(profile, str):
            raise ConfigError(f"{source}: profile must be a name (str), got {profile!r}")
        _apply_profile(raw, profile, source)
    for dotted, text in pairs:
        if dotted != "profile":
            _set(raw, dotted, text, f"override {dotted}={text}", parse=True)
    _resolve_per_article(raw, source)
    params = _build(Params, raw, "", source)
    _check_values(params, source)
    if params.profile == AUTO_PROFILE and AUTO_TARGET not in params.profiles:
        raise ConfigError(f"{source}: profile = {AUTO_PROFILE} picks the {AUTO_TARGET!r} profile when a pretrained "
                          f"Base can be had, and profiles has none; define it or set another profile")
    for name in params.profiles:   # every profile must give valid params, even when not selected
        if name != profile:
            other = copy.deepcopy(raw)
            _apply_profile(other, name, f"{source} (profile {name})")
            _resolve_per_article(other, f"{source} (profile {name})")
            _check_values(_build(Params, other, "", f"{source} (profile {name})"), f"{source} (profile {name})")
    return params


def load_params(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read, select the profile, override and validate params; every problem is a ConfigError naming
    key and file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"params file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return params_from_dict(raw, str(path), overrides)


def _check_values(p: Params, source: str) -> None:
    def bad(key: str, value: Any, allowed: str) -> ConfigError:
        return ConfigError(f"{source}: {key} = {value!r}; {allowed}")

    if p.device not in ("auto", "cpu", "cuda", "mps") and not p.device.startswith("cuda:"):
        raise bad("device", p.device, "allowed: auto, cpu, cuda, cuda:N, mps")
    if p.model.arch not in ARCHS:
        raise bad("model.arch", p.model.arch, f"allowed: {list(ARCHS)}")
    if p.model.split_point not in SPLIT_POINTS:
        raise bad("model.split_point", p.model.split_point, f"allowed: {list(SPLIT_POINTS)}")
    if p.model.image_size < 32:
        raise bad("model.image_size", p.model.image_size, "must be >= 32")
    if len(p.model.mean) != 3 or len(p.model.std) != 3 or min(p.model.std) <= 0:
        raise bad("model.mean/std", (p.model.mean, p.model.std), "need 3 values each, std > 0")
    for key in ("lr", "lr_base_ratio", "finetune_factor", "final_factor", "distill_temperature"):
        if getattr(p.train, key) <= 0:
            raise bad(f"train.{key}", getattr(p.train, key), "must be > 0")
    if p.train.weight_decay < 0:
        raise bad("train.weight_decay", p.train.weight_decay, "must be >= 0")
    if p.train.first_attributes < 0:
        raise bad("train.first_attributes", p.train.first_attributes, "must be >= 0 (1: one attribute, the paper; 0: all)")
    if p.train.base_attributes < 0:
        raise bad("train.base_attributes", p.train.base_attributes, "must be >= 0 (0: every attribute, the paper)")
    if p.train.threads < 0:
        raise bad("train.threads", p.train.threads, "must be >= 0 (0: the process's torch threads)")
    for key in ("epochs_first", "epochs_add", "epochs_finetune", "epochs_final", "batch_size"):
        if getattr(p.train, key) < 0 or (key == "batch_size" and p.train.batch_size < 1):
            raise bad(f"train.{key}", getattr(p.train, key), "must be a non-negative count (batch_size >= 1)")
    for m in p.baselines.methods:
        if m not in METHODS:
            raise bad("baselines.methods", m, f"allowed: {list(METHODS)}")
    if p.baselines.split_point not in SPLIT_POINTS:
        raise bad("baselines.split_point", p.baselines.split_point, f"allowed: {list(SPLIT_POINTS)}")
    s = p.data.split
    if not (0 <= s.val_fraction < 1 and 0 < s.test_fraction < 1 and s.val_fraction + s.test_fraction < 1):
        raise bad("data.split", (s.val_fraction, s.test_fraction), "fractions in [0, 1) summing below 1")
    for article, attrs in p.taxonomy.items():
        if not attrs:
            raise bad(f"taxonomy.{article}", attrs, "an article needs at least one attribute")
        for attr, classes in attrs.items():
            if len(classes) < 2:
                raise bad(f"taxonomy.{article}.{attr}", list(classes), "an attribute needs at least 2 classes")
            if len(set(classes)) != len(classes):
                raise bad(f"taxonomy.{article}.{attr}", list(classes), "class names must be unique")
    attrs = p.attributes(p.train.article)
    order = p.train.attribute_order
    if order and sorted(order) != sorted(attrs):
        raise bad("train.attribute_order", list(order), f"must be a permutation of {list(attrs)} (or empty)")
    for a in p.synth.articles:
        p.attributes(a)
    _check_imports(p, source)
    _check_serving(p.serving, source)
    _check_operations(p, source)


def _check_serving(s: ServingParams, source: str) -> None:
    for key in ("workers", "max_body_bytes", "top_k", "tag_batch_size", "port"):
        if getattr(s, key) < 1:
            raise ConfigError(f"{source}: serving.{key} = {getattr(s, key)!r}; must be >= 1")
    if s.threads < 0 or s.poll_interval_s <= 0:
        raise ConfigError(f"{source}: serving.threads = {s.threads!r} must be >= 0 and serving.poll_interval_s "
                          f"= {s.poll_interval_s!r} > 0")
    if not 0.0 <= s.tag_min_probability <= 1.0:
        raise ConfigError(f"{source}: serving.tag_min_probability = {s.tag_min_probability!r}; must be in [0, 1]")
    if not 0.0 <= s.shadow_share <= 1.0:
        raise ConfigError(f"{source}: serving.shadow_share = {s.shadow_share!r}; must be in [0, 1] (0: no shadow)")
    if s.shadow_share and s.shadow_alias == s.alias:
        raise ConfigError(f"{source}: serving.shadow_alias is serving.alias ({s.alias!r}): a shadow must be another alias")


def _check_operations(p: Params, source: str) -> None:
    b, o = p.branch_add, p.operations
    for key in ("epochs_add", "epochs_finetune", "epochs_final"):
        if getattr(b, key) < 0:
            raise ConfigError(f"{source}: branch_add.{key} = {getattr(b, key)!r}; must be >= 0")
    for a in o.articles:
        p.attributes(a)
    if len(o.nightly_cron.split()) != 5:
        raise ConfigError(f"{source}: operations.nightly_cron = {o.nightly_cron!r}; need 5 cron fields, e.g. '0 2 * * *'")
    if o.approval_timeout_s < 1 or o.approval_poll_s < 1:
        raise ConfigError(f"{source}: operations.approval_timeout_s and approval_poll_s must be >= 1")
    r = p.retention
    if r.keep_runs < 1:
        raise ConfigError(f"{source}: retention.keep_runs = {r.keep_runs!r}; must be >= 1 (the newest training is "
                          "the one an interrupted run resumes from)")
    if r.decode_cache_gb < 0:
        raise ConfigError(f"{source}: retention.decode_cache_gb = {r.decode_cache_gb!r}; must be >= 0 (0: no cap)")


def _check_imports(p: Params, source: str) -> None:
    for article, spec in p.imports.kaggle.items():
        where = f"{source}: imports.kaggle.{article}"
        attrs = p.attributes(article)
        for attr in (*spec.columns, *spec.keywords):
            if attr not in attrs:
                raise ConfigError(f"{where}: attribute {attr!r} is not in taxonomy.{article} {list(attrs)}")
        for attr, classes in spec.keywords.items():
            unknown = sorted(set(classes) - set(attrs[attr]))
            if unknown:
                raise ConfigError(f"{where}.keywords.{attr}: classes {unknown} not in {list(attrs[attr])}")
        for attr, cls in spec.keyword_default.items():
            if attr not in spec.keywords or cls not in attrs[attr]:
                raise ConfigError(f"{where}.keyword_default.{attr}: {cls!r} must be a class of a keyword attribute "
                                  f"({ {a: list(attrs[a]) for a in spec.keywords} })")
