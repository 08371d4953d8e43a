"""A 1-million-row annotation table through the real `progattr data import long` in a subprocess: the
importer streams it, so peak memory does not grow with the number of rows, and the result is still
exact (labels, conflicts found across the whole file, rejects, summary).

Measured on the 2-core build machine (shared), peak RSS of the `progattr` process:
  a 1,000-row head of the same table (the floor: interpreter, pandas, PIL)   134 MB
  1,000,000 rows, the whole-table importer (before streaming)              570 MB, 29 s
  1,000,000 rows, streaming                                                140 MB,  6 s
The bound asserted below (floor + 64 MB) fails the whole-table importer by ~370 MB."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from progattr_core.data.manifest import read_manifest
from tests.unit.data_helpers import params, write_image

from .conftest import PARAMS

ATTRS = params().taxonomy["jeans"]
N_ROWS, N_NAMES, N_PRESENT = 1_000_000, 2_000, 200
UNKNOWN_EVERY = 10_000  # one row in this many names an attribute jeans does not have
GROWTH_BOUND_MB = 64


def _conflicting(image: np.ndarray, attr: np.ndarray) -> np.ndarray:
    return (image % 97 == 0) & (attr == 0)  # these (image, fade) pairs get disagreeing annotators


def _label(image: int, attr: int) -> str:
    vocab = list(ATTRS.values())[attr]
    return vocab[image % len(vocab)]


def write_long_table(table: Path, images: Path) -> None:
    """N_ROWS rows (image, attribute, value, annotator) over N_NAMES image names, the first N_PRESENT of
    which exist as tiny PNGs; ~167 annotators label each (image, attribute), agreeing on `_label`
    except on the `_conflicting` pairs, where odd annotators pick the next class."""
    names = np.array([f"img{i:05d}.png" for i in range(N_NAMES)])
    for i in range(N_PRESENT):
        write_image(images / names[i], seed=i, size=(8, 8))
    row = np.arange(N_ROWS)
    image, attr, annotator = row % N_NAMES, (row // N_NAMES) % len(ATTRS), row // (N_NAMES * len(ATTRS))
    sizes = np.array([len(v) for v in ATTRS.values()])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pick = (image + (annotator % 2) * _conflicting(image, attr)) % sizes[attr]
    values = np.array([v for vocab in ATTRS.values() for v in vocab])[offsets[attr] + pick]
    attr_names = np.array(list(ATTRS), dtype=object)[attr]
    attr_names[row % UNKNOWN_EVERY == 7] = "colour"
    pd.DataFrame({"image": names[image], "attribute": attr_names, "value": values,
                  "annotator": annotator}).to_csv(table, index=False)


# Starts the command and prints its own peak RSS (kB). A child's ru_maxrss starts at its parent's
# high-water mark (Linux carries it across fork/vfork + exec), so the command is started from this small
# launcher rather than from pytest, whose RSS is already hundreds of MB.
LAUNCHER = """import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
print("maxrss_kb", usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _import(tmp_path: Path, table: Path, name: str) -> tuple[int, float, str]:
    """(exit status, peak RSS in MB, output) of `progattr data import long` on `table` in a subprocess."""
    progattr = Path(sys.executable).parent / "progattr"
    data = tmp_path / name
    cmd = [str(progattr), "data", "import", "long", "--table", str(table), "--images", str(tmp_path / "imgs"),
           "--article", "jeans", "--params", PARAMS, "--set", f"data.root={data}", f"data.raw={data}/raw",
           f"data.rejects={data}/rejects.csv", f"data.cache={data}/cache"]
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True, text=True, timeout=300)
    peak_kb = int(out.stdout.rsplit("maxrss_kb", 1)[1])
    return out.returncode, peak_kb / 1024, out.stdout + out.stderr


def test_a_million_row_long_table_streams_with_bounded_memory(tmp_path):
    table = tmp_path / "long.csv"
    write_long_table(table, tmp_path / "imgs")
    head = tmp_path / "head.csv"
    with open(table) as src, open(head, "w") as dst:
        dst.writelines(line for _, line in zip(range(1001), src, strict=False))

    rc, floor_mb, out = _import(tmp_path, head, "small")
    assert rc == 0, out[-3000:]
    rc, peak_mb, out = _import(tmp_path, table, "big")
    assert rc == 0, out[-3000:]
    print(f"peak RSS {peak_mb:.0f} MB for 1M rows, {floor_mb:.0f} MB for 1k rows")
    assert peak_mb < floor_mb + GROWTH_BOUND_MB, f"peak RSS {peak_mb:.0f} MB for 1M rows, {floor_mb:.0f} MB for 1k"

    counts = dict(line.rsplit(None, 1) for line in out.splitlines() if line[:1].isalpha() and "rejects:" not in line)
    n_conflicts = int(_conflicting(np.arange(N_NAMES), np.zeros(N_NAMES, dtype=int)).sum())
    assert counts["rows read"] == str(N_ROWS) and counts["images imported"] == str(N_PRESENT)
    assert counts["row rejected: image not found"] == str(N_NAMES - N_PRESENT)
    assert counts["label rejected: unknown attribute"] == str(N_ROWS // UNKNOWN_EVERY)
    assert counts["label rejected: conflicting values"] == str(n_conflicts)

    manifest = read_manifest(tmp_path / "big/raw/long/index/manifest.parquet").set_index("image_id")
    for i in range(N_PRESENT):
        for a, attr in enumerate(ATTRS):
            expected = None if _conflicting(np.array(i), np.array(a)) else _label(i, a)
            got = manifest.loc[f"img{i:05d}.png", attr]
            assert (pd.isna(got) if expected is None else got == expected), (i, attr, got)

    rejects = pd.read_csv(tmp_path / "big/rejects.csv")
    conflict = rejects[rejects["kind"] == "conflicting values"].iloc[0]
    assert conflict["row"] == 2  # the first row of image 0's fade votes; rows far apart in the file
    assert "'no-fade' (rows [2, 12002, " in conflict["reason"] and "'light-fade' (rows [6002, " in conflict["reason"]
    assert " more)" in conflict["reason"]  # long row lists are cut to MAX_ROWS_LISTED, the rest counted
