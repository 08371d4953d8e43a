"""Checks of params' values beyond their types (ranges, names, keys that must agree), run on every
load, for the selected profile and every other one: a ConfigError names the key, the file and what is
allowed."""

from __future__ import annotations

from typing import Any

from .errors import ConfigError
from .params_schema import ARCHS, METHODS, SPLIT_POINTS, Params, ServingParams


def check_values(p: Params, source: str) -> None:
    def bad(key: str, value: Any, allowed: str) -> ConfigError:
        return ConfigError(f"{source}: {key} = {value!r}; {allowed}")

    if p.compute.device not in ("auto", "cpu", "cuda", "mps") and not p.compute.device.startswith("cuda:"):
        raise bad("device", p.compute.device, "allowed: auto, cpu, cuda, cuda:N, mps")
    if p.model.arch not in ARCHS:
        raise bad("model.arch", p.model.arch, f"allowed: {list(ARCHS)}")
    if p.model.split_point not in SPLIT_POINTS:
        raise bad("model.split_point", p.model.split_point, f"allowed: {list(SPLIT_POINTS)}")
    known = {a for attrs in p.taxonomy.values() for a in attrs}
    for attr, point in p.model.split_points.items():
        if attr not in known:
            raise bad(f"model.split_points.{attr}", point, f"no article has attribute {attr!r}")
        if point not in SPLIT_POINTS[:SPLIT_POINTS.index(p.model.split_point) + 1]:
            raise bad(f"model.split_points.{attr}", point, f"allowed: {list(SPLIT_POINTS[:SPLIT_POINTS.index(p.model.split_point) + 1])} "
                      f"(a Branch starts at the Base's end, model.split_point = {p.model.split_point}, or earlier)")
    if p.evaluation.split_advice_margin < 0:
        raise bad("evaluation.split_advice_margin", p.evaluation.split_advice_margin, "must be >= 0")
    if p.model.image_size < 32:
        raise bad("model.image_size", p.model.image_size, "must be >= 32")
    if len(p.model.mean) != 3 or len(p.model.std) != 3 or min(p.model.std) <= 0:
        raise bad("model.mean/std", (p.model.mean, p.model.std), "need 3 values each, std > 0")
    for key in ("lr", "lr_base_ratio", "finetune_factor", "final_factor"):
        if getattr(p.optimizer, key) <= 0:
            raise bad(f"optimizer.{key}", getattr(p.optimizer, key), "must be > 0")
    if p.train.distill_temperature <= 0:
        raise bad("train.distill_temperature", p.train.distill_temperature, "must be > 0")
    if p.optimizer.weight_decay < 0:
        raise bad("optimizer.weight_decay", p.optimizer.weight_decay, "must be >= 0")
    if p.train.first_attributes < 0:
        raise bad("train.first_attributes", p.train.first_attributes, "must be >= 0 (1: one attribute, the paper; 0: all)")
    if p.train.base_attributes < 0:
        raise bad("train.base_attributes", p.train.base_attributes, "must be >= 0 (0: every attribute, the paper)")
    if p.data.workers < 0:
        raise bad("data.workers", p.data.workers, "must be >= 0 (0: every core)")
    if p.pipeline.dask_address and not p.pipeline.dask_address.startswith(("tcp://", "tls://", "ws://", "wss://")):
        raise bad("pipeline.dask_address", p.pipeline.dask_address,
                  "a Dask scheduler address such as tcp://host:8786, or \"\" for this machine's processes")
    if p.compute.threads < 0:
        raise bad("compute.threads", p.compute.threads, "must be >= 0 (0: the process's torch threads)")
    for key in ("epochs_first", "epochs_add", "epochs_finetune", "epochs_final", "batch_size"):
        if getattr(p.train, key) < 0 or (key == "batch_size" and p.train.batch_size < 1):
            raise bad(f"train.{key}", getattr(p.train, key), "must be a non-negative count (batch_size >= 1)")
    attributes = {a for article in p.taxonomy.values() for a in article}
    for attr in p.serving.target_precision_by_attribute:
        if attr not in attributes:
            raise bad(f"serving.target_precision_by_attribute.{attr}", p.serving.target_precision_by_attribute[attr],
                      f"{attr!r} is no attribute of any taxonomy article ({sorted(attributes)})")
    for attr, floor in {"": p.validation.min_label_coverage, **p.validation.min_label_coverage_by_attribute}.items():
        key = f"validation.min_label_coverage{'_by_attribute.' + attr if attr else ''}"
        if attr and attr not in attributes:
            raise bad(key, floor, f"{attr!r} is no attribute of any taxonomy article ({sorted(attributes)})")
        if not 0 <= floor <= 1:
            raise bad(key, floor, "a fraction of images, in [0, 1]")
    if p.train.distill == "individual" and "individual" not in p.baselines.methods:
        raise bad("train.distill", p.train.distill, f"its teachers are the individual models, and baselines.methods "
                  f"{list(p.baselines.methods)} has no 'individual'")
    for m in p.baselines.methods:
        if m not in METHODS:
            raise bad("baselines.methods", m, f"allowed: {list(METHODS)}")
    if p.baselines.lr_grouping not in SPLIT_POINTS:
        raise bad("baselines.lr_grouping", p.baselines.lr_grouping, f"allowed: {list(SPLIT_POINTS)}")
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
    for attr, target in {"": s.target_precision, **s.target_precision_by_attribute}.items():
        if not 0.0 < target <= 1.0:
            key = f"serving.target_precision{'_by_attribute.' + attr if attr else ''}"
            raise ConfigError(f"{source}: {key} = {target!r}; a precision in (0, 1] (e.g. 0.9: nine accepted "
                              "answers in ten right)")
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
