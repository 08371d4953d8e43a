"""A training reads its split from the decode cache batch by batch: it runs under a memory limit smaller
than the split's whole array, and the same training with the split in memory does not (issue 32's target, on data scaled down to
~22,000 images of 32 px, a 68 MB split, from 20,000 of 224 px, 3 GB)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from progattr_core.data.arrays import cache_path
from progattr_core.data.manifest import make_manifest, write_manifest
from tests.paths import ROOT
from tests.unit.data_helpers import params

# above glibc's largest mmap threshold (32 MB), so the whole split cannot come from freed heap
N, SIZE, LABELLED_EVERY = 22_000, 32, 170  # ~130 labelled images: the epochs are short, the split is not

# in a child process: RLIMIT_DATA bounds its heap and anonymous mappings from the moment it is set
CHILD = r"""
import dataclasses, json, resource, sys, threading, time
import torch
from progattr_core.config import load_params
from progattr_core.data.arrays import load_images
from progattr_core.data.manifest import read_manifest
from progattr_core.model import build_model
from progattr_core.schedule import build_schedule
from progattr_core.stages import train_stage
from progattr_core.train import LabelledImages

params_path, manifest, root, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
p = load_params(params_path)
vocab, attrs = p.attributes("tops"), list(p.attributes("tops"))
torch.set_num_threads(1)
df = read_manifest(manifest, p.taxonomy)
model = build_model(dataclasses.replace(p.model, image_size=size), p.seed)
stage = build_schedule(p, "tops")[0]


def vm_data():
    return int(open("/proc/self/status").read().split("VmData:")[1].split()[0]) * 1024


def train(images, labels):
    return train_stage(model, stage, LabelledImages.from_arrays(images, labels, attrs, vocab), p, p.seed,
                       torch.device("cpu"), None, None)


# the peak of a training on the labelled rows alone (sampled), then the limit: the whole split may add
# half its array on top of that
peak, done = [0], threading.Event()


def sample():
    while not done.is_set():
        peak[0] = max(peak[0], vm_data())
        time.sleep(2e-4)


sampler = threading.Thread(target=sample)
sampler.start()
small, small_y, _ = load_images(df[df[attrs[0]].notna()], root, root + "/cache", size, attrs, "train")
train(small, small_y)
done.set()
sampler.join()
split_bytes = int((df["split"] == "train").sum()) * 3 * size * size
resource.setrlimit(resource.RLIMIT_DATA, (peak[0] + split_bytes // 2, resource.RLIM_INFINITY))
x, y, _ = load_images(df, root, root + "/cache", size, attrs, "train")
result = train(x, y)
try:  # the same training with the split in memory, as before the cache was read batch by batch
    train(x[:], y)
    refused = False
except (MemoryError, RuntimeError) as exc:
    refused = isinstance(exc, MemoryError) or "can't allocate memory" in str(exc)
print(json.dumps({"images": len(x), "split_bytes": split_bytes, "trained": result.image_passes, "refused": refused}))
"""


@pytest.mark.slow
def test_training_runs_under_a_limit_smaller_than_its_split(tmp_path):
    p = params()
    vocab = p.attributes("tops")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N):  # cache entries as a build leaves them (the test needs the bytes, not the JPEGs)
        sha = f"{i:064x}"
        path = cache_path(tmp_path / "cache", sha, SIZE)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.integers(0, 256, 3 * SIZE * SIZE, dtype=np.uint8).tobytes())
        labelled = i % LABELLED_EVERY == 0
        rows.append({"image_id": f"i{i}", "path": f"raw/{i}.jpg", "sha256": sha, "article": "tops",
                     **{a: vocab[a][i % len(vocab[a])] if labelled else None for a in vocab}})
    manifest = make_manifest(pd.DataFrame(rows), p.taxonomy, p.data.split).assign(split="train")
    write_manifest(manifest, tmp_path / "manifest.parquet")
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "params.yaml"), str(tmp_path / "manifest.parquet"),
                          str(tmp_path), str(SIZE)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["images"] == N and got["split_bytes"] > 64 * 2**20
    assert got["trained"] > 0 and got["refused"], got
