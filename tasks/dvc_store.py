"""The project's one DVC module: track raw data folders, read their version, push and pull.

DVC is driven through its CLI in a subprocess (its Python internals are not a stable API), from the
project root. A data version is DVC's hash of the folder (`md5` in `<folder>.dvc`); outside a DVC
repository the same role is played by a hash of the folder's file names and contents.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from progattr_core.data.manifest import relative_inside
from progattr_core.errors import ProgattrError


class DvcError(ProgattrError):
    """A dvc command failed; the message carries its output."""


def is_repo(root: str | Path) -> bool:
    return (Path(root) / ".dvc").is_dir()


def run_dvc(root: str | Path, *args: str, timeout: float = 1800) -> str:
    """`dvc <args>` in `root`; DvcError with its output when it fails or outlasts `timeout` seconds (a
    hung remote: DVC's own bound is its retries x the remote's read_timeout, see push)."""
    cmd = [sys.executable, "-m", "dvc", *args]
    # DVC otherwise starts an analytics process after each command (about a second of CPU), which
    # cannot reach its server offline. A DVC_NO_ANALYTICS set by the user wins.
    env = {"DVC_NO_ANALYTICS": "1", **os.environ}
    try:
        out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise DvcError(f"`dvc {' '.join(args)}` in {root} did not finish within {timeout:g}s; stopped") from None
    if out.returncode != 0:
        text = "\n".join(line for line in (out.stderr or out.stdout).splitlines()
                         if not line.startswith("Having any troubles?"))  # DVC's support footer
        raise DvcError(f"`dvc {' '.join(args)}` in {root} failed ({out.returncode}): {text.strip()[-2000:]}")
    return out.stdout


def tracked_hash(path: str | Path) -> str | None:
    """The md5 DVC recorded for `path` (from `<path>.dvc`), or None when it is not `dvc add`ed."""
    meta = Path(f"{path}.dvc")
    if not meta.is_file():
        return None
    outs = (yaml.safe_load(meta.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def track(root: str | Path, path: str | Path) -> str:
    """`dvc add` a folder (a no-op when unchanged) and return its DVC hash."""
    rel = relative_inside(path, root)
    if rel is None:
        raise DvcError(f"cannot track {path}: DVC tracks folders inside the project ({root})")
    run_dvc(root, "add", "-q", rel)
    digest = tracked_hash(path)
    if digest is None:
        raise DvcError(f"dvc add {rel} left no {rel}.dvc")
    return digest


def track_parts(root: str | Path, folder: str | Path, parts: list[str]) -> str:
    """Track a partitioned import folder (progattr_core/data/import_files.py) and return its data version:
    `dvc add` of the parts named that DVC does not track yet (one command; a part is written once, so a
    tracked one is not hashed again), their hashes into `<folder>/index/parts.json`, then `dvc add` of the
    index. Two DVC commands whatever the catalogue's size, each over what changed since the last ingest.
    The version is the index's hash: its manifest and parts.json name every image's content and part."""
    from progattr_core.data.import_files import INDEX, PARTS

    folder = Path(folder)
    hashes = {part: tracked_hash(folder / PARTS / part) for part in parts}
    new = [folder / PARTS / part for part, md5 in hashes.items() if md5 is None]
    missing = [p.name for p in new if not p.is_dir()]
    if missing:
        raise DvcError(f"{folder}: its index names parts that are not there and not tracked: {missing[:5]}")
    if new:
        run_dvc(root, "add", "-q", *(relative_inside(p, root) for p in new))
        hashes.update({p.name: tracked_hash(p) for p in new})
    index = folder / INDEX / "parts.json"
    tmp = index.with_name(f".{index.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"parts": hashes}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, index)
    return track(root, folder / INDEX)


def folder_hash(path: str | Path) -> str:
    """Content hash of a folder (relative names + bytes): the data version outside a DVC repo."""
    h = hashlib.sha256()
    base = Path(path)
    for f in sorted(p for p in base.rglob("*") if p.is_file()):
        h.update(f.relative_to(base).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return "sha256:" + h.hexdigest()[:32]


def has_remote(root: str | Path) -> bool:
    """Whether the project's DVC config names a default remote (`core.remote`)."""
    return is_repo(root) and any(line.startswith("core.remote=")
                                 for line in run_dvc(root, "config", "--list", timeout=60).splitlines())


NO_REMOTE = "no remote specified"  # DVC's NoRemoteError, when no -r is given and no default remote is set


def push(root: str | Path, *targets: str, remote: str | None = None, timeout: float = 1800) -> str | None:
    """`dvc push`; None when no `remote` is given and the project has no default remote (asking DVC first
    would be one more command, ~0.5 s of start-up, where a remote is set). Retries are bounded by the
    S3 stack DVC uses: botocore makes up to AWS_MAX_ATTEMPTS attempts per request (5 by default), s3fs
    repeats timed-out or dropped requests 5 times, each attempt waits at most the remote's
    `connect_timeout`/`read_timeout` (`dvc remote modify`; 60 s by default); `timeout` bounds the whole push.
    A failure names the remote; what was pushed stays, the rest is pushed by the next run (the local cache
    and .dvc files are not touched)."""
    try:
        return run_dvc(root, "push", *(["-r", remote] if remote else []), *targets, timeout=timeout)
    except DvcError as exc:
        if remote is None and NO_REMOTE in str(exc):
            return None
        raise DvcError(f"push to {_describe_remote(root, remote)} failed: {_redact(str(exc))}") from None


def _describe_remote(root: str | Path, remote: str | None) -> str:
    """"remote 'name' (url, endpoint url)" from DVC's merged config; only these keys (credentials may sit
    in the same config)."""
    try:
        lines = run_dvc(root, "config", "--list", timeout=60).splitlines()
    except DvcError:
        return f"remote {remote or '(default)'!r}"
    config = dict(line.split("=", 1) for line in lines if "=" in line)
    name = remote or config.get("core.remote", "")
    where = [config[k] for k in (f"remote.{name}.url", f"remote.{name}.endpointurl") if k in config]
    return _redact(f"remote {name!r} ({', '.join(where) or 'not configured'})")


def _redact(text: str) -> str:
    from tracking.store import redact  # the project's one URL-password redaction

    return redact(text)
