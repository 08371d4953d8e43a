"""Registry approvals: a person moves `champion`; every alias move goes to an append-only audit log.

A version's approval state lives in the registry as tags (`progattr.approval.status` pending /
approved / rejected / rolled_back, `.by`, `.at`, `.reason`, `.gate` = the gate results the approver
saw, `.override` when a gate-failed version was approved anyway). Approving moves `champion` to the
version and `previous` to the old champion, so `rollback` is one command.

MLflow aliases keep no history (mlflow/mlflow#10336), so each move is also appended, as one JSON line
(at, by, action, model, alias, from, to, reason), to the project's audit log (params
operations.audit_log). Every read-decide-move-append sequence runs under an exclusive `flock` on
`<audit log>.lock`, so racing approvals on one machine serialise: the aliases and the log agree.
(Approvers on several machines need the log on a shared filesystem with working `flock`.)
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from progattr_core.errors import ProgattrError
from progattr_core.locks import hold
from tracking.registry import APPROVAL_STATUS, CHALLENGER, CHAMPION, PREVIOUS, Registry, model_name
from tracking.store import TAG


class ApprovalError(ProgattrError):
    """An approval that the registry's state does not allow (unknown version, failed gates, ...)."""

    exit_code = 6


@dataclass(frozen=True)
class AliasMove:
    """One line of the audit log."""

    at: str
    by: str
    action: str          # approve | reject | rollback
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    reason: str
    override: bool = False


def default_user() -> str:
    return os.environ.get("PROGATTR_USER") or getpass.getuser()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AuditLog:
    """Append-only JSON lines, one per alias move; `locked()` serialises whole approval decisions."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def locked(self) -> Iterator[None]:
        with hold(self.path.with_name(self.path.name + ".lock"), "an approval", wait=True):
            yield

    def append(self, moves: list[AliasMove]) -> None:
        """Write the moves and fsync, so an entry acknowledged to the approver survives a crash."""
        with open(self.path, "a", encoding="utf-8") as f:
            for move in moves:
                f.write(json.dumps(asdict(move), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self, model: str | None = None) -> list[AliasMove]:
        if not self.path.is_file():
            return []
        moves = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                move = AliasMove(**json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ApprovalError(f"{self.path}:{n}: not an audit log entry ({exc})") from None
            if model is None or move.model == model:
                moves.append(move)
        return moves


def _version(registry: Registry, name: str, version: str) -> Any:
    mv = registry.version(name, version)
    if mv is None:
        raise ApprovalError(f"{name} has no version {version!r}")
    return mv


def _gate(mv: Any) -> str:
    return mv.tags.get(TAG + "gate", "unknown (no gate recorded)")


def _tag_decision(registry: Registry, name: str, version: str, status: str, by: str, at: str, reason: str,
                  gate: str, override: bool = False) -> None:
    registry.set_tags(name, version, {APPROVAL_STATUS: status, "approval.by": by, "approval.at": at,
                                      "approval.reason": reason, "approval.gate": gate,
                                      "approval.override": str(override).lower()})


def mark_pending(registry: Registry, article: str, version: str) -> None:
    """A version without an approval state waits for a decision (versions registered before every
    new version was pending; the approval flow calls this)."""
    name = model_name(article)
    if TAG + APPROVAL_STATUS not in _version(registry, name, version).tags:
        registry.set_tags(name, version, {APPROVAL_STATUS: "pending"})


def approve(registry: Registry, audit: AuditLog, article: str, version: str, by: str, reason: str,
            override_gates: bool = False) -> list[AliasMove]:
    """`champion` -> `version`, `previous` -> the old champion. A gate-failed version needs the override."""
    name = model_name(article)
    with audit.locked():
        mv = _version(registry, name, version)
        gate = _gate(mv)
        if gate != "passed" and not override_gates:
            raise ApprovalError(f"{name} version {version} did not pass its gates ({gate}); approving it "
                                "needs --override-gates, which is recorded")
        old = registry.alias_version(name, CHAMPION)
        if old == str(version):
            raise ApprovalError(f"{name} version {version} is already @{CHAMPION}")
        at = _now()
        why = reason + (" [gates overridden]" if gate != "passed" else "")
        moves = [AliasMove(at, by, "approve", name, CHAMPION, old, str(version), why, gate != "passed")]
        if old is not None:
            moves.append(AliasMove(at, by, "approve", name, PREVIOUS, registry.alias_version(name, PREVIOUS), old, why))
            registry.move_alias(name, PREVIOUS, old)
        registry.move_alias(name, CHAMPION, str(version))
        _tag_decision(registry, name, str(version), "approved", by, at, reason, gate, gate != "passed")
        audit.append(moves)
    return moves


def reject(registry: Registry, audit: AuditLog, article: str, version: str, by: str, reason: str) -> list[AliasMove]:
    """Mark the version rejected; if it is `challenger`, the alias is removed (and logged)."""
    name = model_name(article)
    with audit.locked():
        mv = _version(registry, name, version)
        if registry.alias_version(name, CHAMPION) == str(version):
            raise ApprovalError(f"{name} version {version} is @{CHAMPION}: roll back instead of rejecting it")
        at = _now()
        moves = []
        if registry.alias_version(name, CHALLENGER) == str(version):
            moves.append(AliasMove(at, by, "reject", name, CHALLENGER, str(version), None, reason))
            registry.move_alias(name, CHALLENGER, None)
        _tag_decision(registry, name, str(version), "rejected", by, at, reason, _gate(mv))
        # a rejection that moves no alias is still a decision worth a line in the history
        audit.append(moves or [AliasMove(at, by, "reject", name, "(none)", str(version), str(version), reason)])
    return moves


def rollback(registry: Registry, audit: AuditLog, article: str, by: str, reason: str) -> list[AliasMove]:
    """`champion` back to `previous`; `previous` then names the rolled-back version (undo = rollback)."""
    name = model_name(article)
    with audit.locked():
        current, prev = registry.alias_version(name, CHAMPION), registry.alias_version(name, PREVIOUS)
        if prev is None or current is None:
            raise ApprovalError(f"{name}: nothing to roll back to (@{CHAMPION} = {current}, @{PREVIOUS} = {prev})")
        at = _now()
        moves = [AliasMove(at, by, "rollback", name, CHAMPION, current, prev, reason),
                 AliasMove(at, by, "rollback", name, PREVIOUS, prev, current, reason)]
        registry.move_alias(name, CHAMPION, prev)
        registry.move_alias(name, PREVIOUS, current)
        _tag_decision(registry, name, current, "rolled_back", by, at, reason, _gate(_version(registry, name, current)))
        audit.append(moves)
    return moves


def describe(registry: Registry, article: str) -> dict[str, Any]:
    """Aliases and every version's approval state, gate and lineage tags (for `registry show`)."""
    name = model_name(article)
    aliases = {a: registry.alias_version(name, a) for a in (CHAMPION, PREVIOUS, CHALLENGER)}
    keep = ("approval.status", "approval.by", "approval.at", "approval.reason", "approval.override", "gate",
            "added_attribute", "branch_add_mode", "data_version", "params_hash", "report")
    versions = [{"version": str(v.version), "aliases": [a for a, n in aliases.items() if n == str(v.version)],
                 **{k: v.tags[TAG + k] for k in keep if TAG + k in v.tags},
                 **{metric: _per_attribute(v.tags, metric) for metric in ("accuracy", "coverage", "target_precision")}}
                for v in registry.versions(name)]
    return {"model": name, "aliases": aliases, "versions": versions}


def _per_attribute(tags: dict[str, str], metric: str) -> dict[str, str]:
    """A version's `progattr.<metric>.<attribute>` tags as attribute -> value (coverage: the share of test
    answers at or above the attribute's threshold for its target precision)."""
    prefix = f"{TAG}{metric}."
    return {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)}


def metrics_url(params) -> str:
    """Where the serving process publishes its metrics: serving.metrics_url, else its host and port."""
    s = params.serving
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
    return s.metrics_url or f"http://{host}:{s.port}/metrics"


def live_evidence(url: str, article: str, version: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """What the serving process measured for `version` of `article` on live traffic (serving/metrics.py),
    per alias it answered under (the served alias, or the shadow's) and attribute: predictions, mean
    top-1 confidence, predicted class mix, population stability against its test split, and, as the
    shadow, agreement with the served answers. {"error": ...} when the service cannot be reached."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - a configured URL
            text = response.read().decode()
    except (OSError, ValueError) as exc:
        return {"source": url, "error": f"serving not reachable ({type(exc).__name__}: {exc})"}
    seen: dict[str, dict[str, dict[str, Any]]] = {}  # alias -> attribute -> sums
    shadowed: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            lb = s.labels
            if lb.get("article") != article or lb.get("version") != version or "alias" not in lb:
                continue
            if s.name == "progattr_shadow_requests_total":
                shadowed[lb["alias"]] = shadowed.get(lb["alias"], 0.0) + s.value
            if "attribute" not in lb:
                continue
            a = seen.setdefault(lb["alias"], {}).setdefault(lb["attribute"], {"mix": {}})
            if s.name == "progattr_predicted_class_total":
                a["mix"][lb["class"]] = a["mix"].get(lb["class"], 0.0) + s.value
            elif s.name in ("progattr_prediction_confidence_sum", "progattr_prediction_confidence_count"):
                key = s.name.rsplit("_", 1)[1]
                a[key] = a.get(key, 0.0) + s.value
            elif s.name == "progattr_prediction_psi":
                a["psi"] = round(s.value, 4)
            elif s.name == "progattr_shadow_agreements_total":
                a["agreements"] = a.get("agreements", 0.0) + s.value
    out: dict[str, Any] = {"source": url, "as": {}}
    for alias, attrs in sorted(seen.items()):
        rows = {}
        for name, a in sorted(attrs.items()):
            n = sum(a["mix"].values())
            if not n:
                continue
            row: dict[str, Any] = {"predictions": int(n), "mix": {c: round(v / n, 4) for c, v in sorted(a["mix"].items())}}
            if a.get("count"):
                row["mean_confidence"] = round(a["sum"] / a["count"], 4)
            if "psi" in a:
                row["psi"] = a["psi"]
            if shadowed.get(alias) and "agreements" in a:
                row["agreement"] = round(a["agreements"] / shadowed[alias], 4)
            rows[name] = row
        if rows:
            out["as"][alias] = {"shadow_requests": int(shadowed.get(alias, 0)), "attributes": rows}
    return out


def live_line(evidence: dict[str, Any]) -> str:
    """One line of live evidence for the approval form and logs."""
    if "error" in evidence:
        return f"live: {evidence['error']}"
    if not evidence["as"]:
        return f"live: no predictions recorded for this version at {evidence['source']}"
    parts = []
    for alias, got in evidence["as"].items():
        shadow = f" in shadow on {got['shadow_requests']} requests" if got["shadow_requests"] else ""
        rows = []
        for name, a in got["attributes"].items():
            bits = [f"conf {a['mean_confidence']:.2f}" if "mean_confidence" in a else None,
                    f"agree {100 * a['agreement']:.0f}%" if "agreement" in a else None,
                    f"PSI {a['psi']:.3f}" if "psi" in a else None]
            rows.append(f"{name} " + ", ".join(b for b in bits if b))
        parts.append(f"as {alias}{shadow}: " + "; ".join(rows))
    return f"live ({evidence['source']}): " + " | ".join(parts)
