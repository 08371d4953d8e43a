"""The project's one DVC module: track raw data folders, read their version, push and pull.

DVC is driven through its CLI in a subprocess (its Python internals are not a stable API), from the
project root. A data version is DVC's hash of the folder (`md5` in `<folder>.dvc`); outside a DVC
repository the same role is played by a hash of the folder's file names and contents.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

from progattr_core.errors import ProgattrError


class DvcError(ProgattrError):
    """A dvc command failed; the message carries its output."""


def is_repo(root: str | Path) -> bool:
    return (Path(root) / ".dvc").is_dir()


def run_dvc(root: str | Path, *args: str, timeout: float = 1800) -> str:
    cmd = [sys.executable, "-m", "dvc", *args]
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise DvcError(f"`dvc {' '.join(args)}` in {root} failed ({out.returncode}): "
                       f"{(out.stderr or out.stdout).strip()[-2000:]}")
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
    rel = Path(path).resolve().relative_to(Path(root).resolve())
    run_dvc(root, "add", "-q", str(rel))
    digest = tracked_hash(path)
    if digest is None:
        raise DvcError(f"dvc add {rel} left no {rel}.dvc")
    return digest


def folder_hash(path: str | Path) -> str:
    """Content hash of a folder (relative names + bytes): the data version outside a DVC repo."""
    h = hashlib.sha256()
    base = Path(path)
    for f in sorted(p for p in base.rglob("*") if p.is_file()):
        h.update(f.relative_to(base).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return "sha256:" + h.hexdigest()[:32]


def push(root: str | Path, *targets: str, remote: str | None = None) -> str:
    return run_dvc(root, "push", *(["-r", remote] if remote else []), *targets)


def pull(root: str | Path, *targets: str, remote: str | None = None) -> str:
    return run_dvc(root, "pull", *(["-r", remote] if remote else []), *targets)
