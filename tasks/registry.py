"""Register the progressive model as a new version of `progattr-<article>`, gate the `challenger` alias.

The registered files are the core's self-describing model (weights + config in one .pt, loaded with
`weights_only=True` by `progattr_core.model.load_model`) and its config as JSON: no pickled code,
no MLflow flavour (MLflow 3.17 would save torch as `pt2`, which breaks on dict outputs).
`champion` is never set here: promoting a version is an approval, made by a person.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from progattr_core.gates import decide_challenger
from progattr_core.model import load_model
from tasks.context import DataRef, PipelineContext, git_commit, task_logger
from tasks.evaluation import EvaluationRef
from tasks.mlflow_store import Store


@dataclass(frozen=True)
class RegistryRef:
    name: str
    version: str
    challenger: bool
    reasons: tuple[str, ...]
    champion_version: str | None
    newly_registered: bool


def model_name(article: str) -> str:
    return f"progattr-{article}"


def _champion_accuracy(store: Store, name: str) -> tuple[str | None, dict[str, float] | None]:
    champ = store.version_by_alias(name, "champion")
    if champ is None:
        return None, None
    acc = {k.split(".", 2)[2]: float(v) for k, v in champ.tags.items() if k.startswith("progattr.accuracy.")}
    return str(champ.version), acc


def register(ctx: PipelineContext, data: DataRef, key: str, baseline_key: str, model_path: str,
             evaluation: EvaluationRef, schedule: list[str]) -> RegistryRef:
    log = task_logger()
    params = ctx.params()
    store = Store(ctx.store)
    name = model_name(ctx.article)
    existing = [v for v in store.versions_with_tag(name, "train_key", key)
                if v.tags.get("progattr.baseline_key") == baseline_key]
    prog = evaluation.accuracy["progressive"]
    baselines = {m: a["overall"] for m, a in evaluation.accuracy.items() if m != "progressive"}
    champion_version, champion = _champion_accuracy(store, name)
    rules = params.registry
    gate = decide_challenger(prog, baselines, champion, rules.max_gap_to_best_baseline, rules.max_regression_vs_champion,
                             evaluation.metrics["progressive"], rules.min_adjusted_balanced_accuracy)
    if existing:
        version, new = str(existing[-1].version), False
        log.info("model %s version %s already holds this training (train key %s)", name, version, key)
    else:
        tags = {"train_key": key, "baseline_key": baseline_key, "data_version": data.data_version,
                "git_commit": git_commit(ctx.root), "params_hash": params.digest("seed", "model", "train"),
                "schedule": " > ".join(schedule), "flow_run_id": ctx.flow_run_id, "article": ctx.article,
                **{f"accuracy.{a}": f"{v:.4f}" for a, v in prog.items() if not math.isnan(v)},
                **{f"{k}.{a}": f"{m[k]:.4f}" for a, m in evaluation.metrics["progressive"].items()
                   for k in ("macro_f1", "balanced_accuracy") if not math.isnan(m[k])},
                **{f"baseline.{m}.overall": f"{v:.4f}" for m, v in baselines.items()},
                "gate": "passed" if gate.passed else "; ".join(gate.reasons)}
        with tempfile.TemporaryDirectory(prefix="progattr-register-") as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            shutil.copyfile(model_path, folder / "model.pt")
            (folder / "model.json").write_text(json.dumps(load_model(model_path).describe(), indent=1))
            store.log_artifacts(ctx.flow_run_id, folder, "model")
        version, new = store.register(name, ctx.flow_run_id, "model", tags), True
    if gate.passed:
        store.set_alias(name, "challenger", version)
        log.info("%s version %s is now @challenger", name, version)
    else:
        log.warning("%s version %s did not pass the challenger gates:\n  %s", name, version, "\n  ".join(gate.reasons))
    return RegistryRef(name, version, gate.passed, gate.reasons, champion_version, new)


register_task = task(register, name="register", retries=2, retry_delay_seconds=5)
