"""load_images: shapes, codes, split selection, and the decode cache giving identical arrays, built on
several processes and read back batch by batch."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from progattr_core.data.arrays import build_cache, cache_path, load_images, trim_cache
from progattr_core.data.images import sha256_bytes
from progattr_core.data.manifest import make_manifest
from progattr_core.errors import DataValidationError
from progattr_core.train import _batch_images
from tests.unit.data_helpers import params, write_image

P = params()
ATTRS = list(P.attributes("jeans"))


@pytest.fixture
def catalogue(tmp_path):
    root = tmp_path / "root"
    rows = []
    for i in range(12):
        path = write_image(root / "raw" / f"{i}.png", seed=i, size=(20 + i, 24))
        rows.append({"image_id": f"i{i}", "path": f"raw/{i}.png", "sha256": sha256_bytes(path.read_bytes()),
                     "article": "jeans", "fade": ["no-fade", None, "heavy-fade"][i % 3],
                     "shade": "dark", "distress": None if i % 2 else "ripped"})
    return root, make_manifest(pd.DataFrame(rows), P.taxonomy, P.data.split)


def test_shapes_codes_and_order(catalogue, tmp_path):
    root, m = catalogue
    x, y, ids = load_images(m, root, tmp_path / "cache", 16, ATTRS, None)
    assert x.shape == (12, 3, 16, 16) and x[:].dtype == torch.uint8 and x[:].shape == (12, 3, 16, 16)
    assert y.dtype == np.int64 and y.shape == (12, 3)
    assert ids == [f"i{i}" for i in range(12)]
    assert y[:3, 0].tolist() == [0, -1, 2] and (y[:, 1] == 2).all() and y[:2, 2].tolist() == [4, -1]
    xs, ys, ids_s = load_images(m, root, tmp_path / "cache", 16, ATTRS, "train")
    assert ids_s == m.loc[m["split"] == "train", "image_id"].tolist() and len(xs) == len(ys) == len(ids_s)


def test_cached_arrays_equal_fresh_decoding(catalogue, tmp_path):
    root, m = catalogue
    fresh, _, _ = load_images(m, root, tmp_path / "c1", 16, ATTRS, None)
    assert cache_path(tmp_path / "c1", m["sha256"][0], 16).is_file()
    for i in range(12):  # the cache is used: the originals can go
        (root / "raw" / f"{i}.png").unlink()
    cached, _, _ = load_images(m, root, tmp_path / "c1", 16, ATTRS, None)
    np.testing.assert_array_equal(fresh[:], cached[:])


def test_cache_built_on_two_processes_resumes_and_reads_any_batch(catalogue, tmp_path):
    """Two worker processes decode what the cache lacks; a build that stopped halfway decodes only the rest;
    a batch read by index is those rows of the whole split."""
    root, m = catalogue
    serial, _, _ = load_images(m, root, tmp_path / "serial", 16, ATTRS, None, workers=1)
    assert build_cache(m, root, tmp_path / "two", 16, workers=2) == 12
    for sha in m["sha256"][:5]:  # as if the build had been killed after 7 entries
        cache_path(tmp_path / "two", sha, 16).unlink()
    lines = []
    assert build_cache(m, root, tmp_path / "two", 16, workers=2, say=lines.append) == 5
    assert lines and "5/5 images (100%)" in lines[-1]
    assert build_cache(m, root, tmp_path / "two", 16, workers=2) == 0
    two, _, _ = load_images(m, root, tmp_path / "two", 16, ATTRS, None)
    idx = torch.tensor([11, 0, 5, 5])
    assert torch.equal(two[idx], serial[:][idx]) and torch.equal(two[3], serial[:][3])
    assert torch.equal(two[2:9], serial[:][2:9])
    steps = [torch.tensor([3, 1]), torch.tensor([0])]  # a DataLoader worker reading ahead (as for a GPU)
    read_ahead = list(_batch_images(two, steps, torch.device("cpu"), workers=1))
    assert [x.tolist() for x in read_ahead] == [serial[:][s].tolist() for s in steps]


def test_changed_file_is_detected(catalogue, tmp_path):
    root, m = catalogue
    write_image(root / "raw" / "0.png", seed=99)
    with pytest.raises(DataValidationError, match="content hash differs"):
        load_images(m, root, tmp_path / "cache", 16, ATTRS, None)


def test_non_categorical_labels_are_refused(catalogue, tmp_path):
    root, m = catalogue
    with pytest.raises(DataValidationError, match="not a Categorical"):
        load_images(m.astype({"fade": object}), root, tmp_path / "cache", 16, ATTRS, None)


def test_trim_cache_deletes_unused_entries_oldest_first_and_never_one_in_use(tmp_path):
    entries = {}
    for i, sha in enumerate(["a1" * 32, "b2" * 32, "c3" * 32, "d4" * 32]):
        path = cache_path(tmp_path, sha, 8)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(100))
        os.utime(path, (1000 + i, 1000 + i))  # a1 oldest ... d4 newest
        entries[sha] = path
    in_use = {"a1" * 32}
    dry = trim_cache(tmp_path, in_use, 250, dry_run=True)
    assert dry == {"entries": 4, "bytes": 400, "deleted": 2, "deleted_bytes": 200, "kept_in_use": 0}
    assert all(p.exists() for p in entries.values())
    assert trim_cache(tmp_path, in_use, 250) == dry
    assert sorted(sha[:2] for sha, p in entries.items() if p.exists()) == ["a1", "d4"]  # b2, c3: unused, oldest
    # a cap below what is in use: the unused rest goes, the entry in use stays
    out = trim_cache(tmp_path, in_use, 0)
    assert out["deleted"] == 1 and out["kept_in_use"] == 1 and entries["a1" * 32].exists()


def test_two_threads_decoding_one_image_both_get_it(catalogue, tmp_path, monkeypatch):
    """Concurrent tasks of one flow (threads: e.g. the individual models training first) may decode the
    same image into a cold cache at once: each writes its own temporary file, then renames it."""
    import threading

    import progattr_core.data.arrays as arrays

    root, m = catalogue
    row = m.iloc[0]
    both_written = threading.Barrier(2, timeout=10)
    real_replace = os.replace

    def replace_once_both_wrote(src, dst):  # both threads have written their temporary file by now
        both_written.wait()
        real_replace(src, dst)

    monkeypatch.setattr(arrays.os, "replace", replace_once_both_wrote)
    got, errors = [], []

    def decode():
        try:
            got.append(arrays.cached_array(root, tmp_path / "cache", row["path"], row["sha256"], 16, P.data.image))
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=decode) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(got) == 2 and np.array_equal(got[0], got[1])
    assert cache_path(tmp_path / "cache", row["sha256"], 16).read_bytes() == got[0].tobytes()
