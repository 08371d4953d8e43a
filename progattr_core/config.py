"""params.yaml -> frozen dataclasses. The one source of values: no second set of defaults in code.

Every key must be present and known; a wrong type or value raises ConfigError naming the key and file.
Precedence, lowest first: the file's sections, then the named profile it selects (`profile:`, one of
`profiles:`), then overrides (`--set optimizer.lr=0.01`, which may also select the profile: `--set
profile=paper`). All are applied to the raw mapping before validation. The sections' dataclasses are in
params_schema.py, the checks of values across keys in params_checks.py; this module reads and resolves.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .params_checks import check_values
from .params_schema import (  # noqa: F401  (the sections, importable from here as they always were)
    ARCHS,
    AUTO_PROFILE,
    AUTO_TARGET,
    METHODS,
    PROFILE_SECTIONS,
    SPLIT_POINTS,
    TRAINING_SECTIONS,
    AugmentParams,
    BaselineParams,
    BranchAddParams,
    ComputeParams,
    DataParams,
    EvaluationParams,
    GatesParams,
    ImageParams,
    ImportParams,
    KaggleArticleParams,
    MlflowParams,
    ModelParams,
    OperationsParams,
    OptimizerParams,
    Params,
    PipelineParams,
    PretrainParams,
    RetentionParams,
    ServingParams,
    SplitParams,
    SynthParams,
    TrainParams,
    ValidationParams,
)


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
        if dotted in RETIRED:
            raise ConfigError(f"{source}: profiles.{name}.{dotted} is {RETIRED[dotted]}")
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


# keys renamed (old -> new, why): a params file with an old name fails naming the new one; an older snapshot
# read with fill_from has its values moved to the new names
RENAMED = {
    **{f"registry.{key}": (f"gates.{key}", "the automatic gates have their own section, `gates:`")
       for key in ("max_gap_to_best_baseline", "max_regression_vs_champion", "min_adjusted_balanced_accuracy",
                   "max_coverage_regression_vs_champion")},
    "baselines.split_point": ("baselines.lr_grouping", "it only sets the individual models' learning-rate layer "
                              "groups: a one-Branch model is the whole ResNet"),
    **{f"train.{key}": (f"optimizer.{'name' if key == 'optimizer' else key}", "the optimiser has its own section, "
                        "`optimizer:`") for key in ("optimizer", "lr", "lr_base_ratio", "finetune_factor",
                                                     "final_factor", "weight_decay", "momentum", "lr_schedule")},
    **{f"train.{key}": (f"compute.{key}", "where and how trainings run has its own section, `compute:`")
       for key in ("threads", "deterministic", "amp")},
    "device": ("compute.device", "where and how trainings run has its own section, `compute:`"),
}
# keys that existed once: a params file still carrying one fails with what to do instead of "unknown key"
RETIRED = {
    **{old: f"renamed {new} ({why})" for old, (new, why) in RENAMED.items()},
    "evaluation.top_k": "removed: no code read it (serving.top_k sets how many classes an answer lists); delete it",
    "serving.tag_min_probability": "removed: each attribute's threshold is now chosen at registration to reach "
                                   "serving.target_precision (per attribute: serving.target_precision_by_attribute); "
                                   "tagging writes the answers below it to review.csv; delete it",
}


def _parent(raw: dict[str, Any], dotted: str) -> tuple[dict[str, Any] | None, str]:
    """The mapping that holds `dotted`'s last key (None where a section on the way is missing), and that key."""
    *parents, leaf = dotted.split(".")
    node: Any = raw
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), leaf


def _check_retired(raw: dict[str, Any], source: str) -> None:
    for dotted, what in RETIRED.items():
        node, leaf = _parent(raw, dotted)
        if node is not None and leaf in node:
            raise ConfigError(f"{source}: {dotted} is {what}")


def params_from_dict(raw: dict[str, Any], source: str = "<params>",
                     overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Validate a raw params mapping (modified in place): the selected profile's values, then the
    overrides (`a.b.c=value`, value parsed as YAML), are applied first."""
    pairs = _overrides(overrides)
    for dotted, text in pairs:
        if dotted in RETIRED:
            raise ConfigError(f"override {dotted}={text}: {dotted} is {RETIRED[dotted]}")
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
    _check_retired(raw, source)
    _resolve_per_article(raw, source)
    params = _build(Params, raw, "", source)
    check_values(params, source)
    if params.profile == AUTO_PROFILE and AUTO_TARGET not in params.profiles:
        raise ConfigError(f"{source}: profile = {AUTO_PROFILE} picks the {AUTO_TARGET!r} profile when a pretrained "
                          f"Base can be had, and profiles has none; define it or set another profile")
    for name in params.profiles:   # every profile must give valid params, even when not selected
        if name != profile:
            other = copy.deepcopy(raw)
            _apply_profile(other, name, f"{source} (profile {name})")
            _resolve_per_article(other, f"{source} (profile {name})")
            check_values(_build(Params, other, "", f"{source} (profile {name})"), f"{source} (profile {name})")
    return params


def fill_from(old: dict[str, Any], current: dict[str, Any], cls: type = Params) -> dict[str, Any]:
    """An older params mapping (a registered version's snapshot) readable by this schema: each key the
    schema gained since is taken from `current` (this project's params), each renamed one moves to its
    new name, each removed one is dropped.
    Mappings the user names (taxonomy, profiles, ...) are left as they were. For reading what the
    version was trained with; its own commit trained it with its own params."""
    out = copy.deepcopy(old)
    for dotted in RETIRED:
        node, leaf = _parent(out, dotted)
        if node is not None and leaf in node:
            value = node.pop(leaf)
            if dotted in RENAMED:
                *sections, new_leaf = RENAMED[dotted][0].split(".")
                target = out
                for section in sections:
                    target = target.setdefault(section, {})
                target[new_leaf] = value
            if not node:  # a section every key of which was renamed away
                parent, section = _parent(out, dotted.rpartition(".")[0])
                (parent if parent is not None else out).pop(section, None)
    for name, values in (out.get("profiles") or {}).items():  # a profile names keys too
        if isinstance(values, dict):
            out["profiles"][name] = {RENAMED[k][0] if k in RENAMED else k: v for k, v in values.items()
                                     if k not in RETIRED or k in RENAMED}

    def fill(node: dict[str, Any], cur: dict[str, Any], tp: type) -> None:
        hints = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            if f.name not in node and f.name in cur:
                node[f.name] = copy.deepcopy(cur[f.name])
            elif dataclasses.is_dataclass(hints[f.name]) and isinstance(node.get(f.name), dict) \
                    and isinstance(cur.get(f.name), dict):
                fill(node[f.name], cur[f.name], hints[f.name])

    fill(out, current, cls)
    return out


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
