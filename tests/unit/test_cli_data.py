"""`progattr data ...`: the commands end to end on tiny inputs, and errors as one line + exit code."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from progattr.cli import main
from progattr_core.data.manifest import read_manifest
from tests.paths import ROOT
from tests.unit.data_helpers import params, write_image

PARAMS = str(ROOT / "params.yaml")


def _run(tmp_path, *argv: str) -> int:
    return main([*argv, "--params", PARAMS, "--set", f"data.root={tmp_path}/data", f"data.raw={tmp_path}/data/raw",
                 f"data.rejects={tmp_path}/data/rejects.csv", f"data.cache={tmp_path}/cache"])


def test_synth_then_slice(tmp_path, capsys):
    manifest = tmp_path / "data" / "manifest.parquet"
    assert _run(tmp_path, "data", "synth", "--article", "jeans", "--n", "12", "--manifest", str(manifest)) == 0
    assert (tmp_path / "data/raw/synth/jeans/manifest.parquet").is_file()
    m = read_manifest(manifest, params().taxonomy)
    assert len(m) == 12 and m["path"][0].startswith("raw/synth/jeans/images/")
    assert _run(tmp_path, "data", "slice", "--article", "jeans", "--manifest", str(manifest),
                "--out", str(tmp_path / "slices")) == 0
    assert (tmp_path / "slices/jeans/counts.csv").is_file()
    assert "jeans.fade: train" in capsys.readouterr().out


def test_import_wide_writes_source_manifest_and_rejects(tmp_path, capsys):
    write_image(tmp_path / "imgs" / "a.png")
    (tmp_path / "imgs" / "b.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_text("image,fade\na.png,no-fade\nb.png,light-fade\n")
    rc = _run(tmp_path, "data", "import", "wide", "--table", str(tmp_path / "labels.csv"), "--images",
              str(tmp_path / "imgs"), "--article", "jeans")
    assert rc == 0
    source = pd.read_parquet(tmp_path / "data/raw/labels/index/manifest.parquet")
    (part,) = (tmp_path / "data/raw/labels/parts").iterdir()
    assert source["path"].tolist() == [f"parts/{part.name}/a.png"]
    rejects = pd.read_csv(tmp_path / "data/rejects.csv")
    assert rejects["kind"].tolist() == ["image zero-byte"]
    assert "images imported" in capsys.readouterr().out


def test_errors_are_one_line_with_their_exit_code(tmp_path, capsys):
    assert _run(tmp_path, "data", "synth", "--article", "topwear", "--n", "2") == 3  # DataValidationError
    err = capsys.readouterr().err
    assert err.startswith("progattr: error:") and "Traceback" not in err and err.count("\n") == 1
    assert main(["data", "synth", "--article", "jeans", "--params", PARAMS, "--set", "synth.nope=1"]) == 2


def test_help_does_not_import_torch_or_pandas():
    code = ("import sys; from progattr.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'pandas', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
