"""The one place the tests learn where the project is."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # the repository root: params.yaml, dvc.yaml, the packages
