"""A disk filling up while a checkpoint or model is written: the write fails loudly, the previous file
stays valid (write to a temporary name, then rename) and no temporary file is left behind. Two ways:
a real file-size limit (RLIMIT_FSIZE, in a child process) and torch.save failing half-way (ENOSPC)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest
import torch

from progattr_core.config import load_params
from progattr_core.model import build_model
from progattr_core.model_file import load_checkpoint, load_model, save_checkpoint, save_model
from progattr_core.schedule import build_schedule
from tests.paths import ROOT

from .conftest import PARAMS
from .inject import full_disk_save

TINY = ["model.image_size=32", "train.article=jeans"]

CHILD = r"""
import json, resource, signal, sys
from pathlib import Path
import torch
from progattr_core.config import load_params
from progattr_core.model import build_model
from progattr_core.schedule import build_schedule
from progattr_core.model_file import save_checkpoint

p = load_params(sys.argv[1], sys.argv[3:])
stages = build_schedule(p, "jeans")
model = build_model(p.model, 0)
model.add_branch("fade", list(p.attributes("jeans")["fade"]))
path = Path(sys.argv[2])
save_checkpoint(path, model, stages[0])
size = path.stat().st_size
with torch.no_grad():
    for prm in model.parameters():
        prm.add_(1.0)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # get EFBIG from write() instead of being killed
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, hard))
try:
    save_checkpoint(path, model, stages[1])
    error = None
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"error": error, "size": size}))
"""


def _model():
    p = load_params(PARAMS, TINY)
    model = build_model(p.model, 0)
    model.add_branch("fade", list(p.attributes("jeans")["fade"]))
    return p, model


def test_a_file_size_limit_hit_mid_checkpoint_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt" / "checkpoint.pt"
    out = subprocess.run([sys.executable, "-c", CHILD, PARAMS, str(path), *TINY], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"].startswith(f"OSError: could not write {path} (disk full or file size limit?)"), result
    model, stage = load_checkpoint(path)  # still the first checkpoint, complete and loadable
    assert stage["index"] == 0 and path.stat().st_size == result["size"]
    _, fresh = _model()
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items())
    assert [f.name for f in path.parent.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize("what", ["checkpoint", "model"])
def test_enospc_half_way_through_a_save_keeps_the_previous_file(tmp_path, monkeypatch, what):
    p, model = _model()
    stages = build_schedule(p, "jeans")
    path = tmp_path / f"{what}.pt"
    save = (lambda m, s: save_checkpoint(path, m, s)) if what == "checkpoint" else (lambda m, s: save_model(m, path))
    save(model, stages[0])
    before = path.read_bytes()
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(1.0)
    monkeypatch.setattr(torch, "save", full_disk_save(torch.save))
    with pytest.raises(OSError) as err:
        save(model, stages[1])
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert path.read_bytes() == before and [f.name for f in tmp_path.iterdir()] == [path.name]
    loaded = load_checkpoint(path)[0] if what == "checkpoint" else load_model(path)
    _, fresh = _model()
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in loaded.state_dict().items())
