"""The same inputs give the same weights: across processes, whatever the machine's load; the thread
count is what changes them (so it is a param and part of the training key)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from progattr_core.config import load_params
from progattr_core.determinism import compute_identity, reproducible, resolved_threads
from tests.paths import ROOT

from .conftest import TINY

TRAIN = """
import sys
import torch
sys.path.insert(0, {root!r})
from tests.unit.test_determinism import train
torch.save(train(int(sys.argv[2])), sys.argv[1])
"""


def train(threads: int) -> dict[str, torch.Tensor]:
    """A tiny progressive model through every stage of the schedule, with `compute.threads=threads`."""
    from progattr_core.model import build_model
    from progattr_core.schedule import build_schedule
    from progattr_core.stages import run_schedule

    from .conftest import make_images

    p = load_params(ROOT / "params.yaml", [*TINY, f"compute.threads={threads}"])
    model = build_model(p.model, p.seed)
    run_schedule(model, build_schedule(p, "jeans"), make_images(p, 32, seed=1), p, p.seed, "cpu",
                 make_images(p, 16, seed=2))
    return model.state_dict()


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_under_different_load_train_equal_weights(tmp_path):
    """This process trains on an idle machine; another process trains the same while a third keeps a
    core busy: equal weights. One thread instead of two: other weights (why the count is keyed)."""
    idle = train(2)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a core busy meanwhile
    try:
        done = subprocess.run([sys.executable, "-c", TRAIN.format(root=str(ROOT)), str(tmp_path / "busy.pt"), "2"],
                              capture_output=True, text=True, timeout=600)
    finally:
        hog.kill()
        hog.wait()
    assert done.returncode == 0, done.stderr[-3000:]
    assert _equal(idle, torch.load(tmp_path / "busy.pt", weights_only=True))
    assert not _equal(idle, train(1))


def test_reproducible_applies_the_settings_and_restores_the_process():
    p = load_params(ROOT / "params.yaml", [*TINY, "compute.threads=1"])
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with reproducible(p.compute, "cpu"):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    assert resolved_threads(0) == torch.get_num_threads()
    auto = load_params(ROOT / "params.yaml", TINY).compute
    assert compute_identity(auto, "cpu").startswith(f"threads={torch.get_num_threads()}|deterministic=True|device=cpu:")


def test_trainings_at_once_in_one_process_share_the_settings_until_the_last_one_ends():
    """Concurrent baseline tasks: one ending must not change the thread count under another."""
    from progattr_core.errors import ConfigError

    one = load_params(ROOT / "params.yaml", [*TINY, "compute.threads=1"]).compute
    two = load_params(ROOT / "params.yaml", [*TINY, "compute.threads=2"]).compute
    before = torch.get_num_threads()
    first, second = reproducible(one, "cpu"), reproducible(one, "cpu")
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first training ends while the second goes on
    assert torch.get_num_threads() == 1
    with pytest.raises(ConfigError, match="process-wide"), reproducible(two, "cpu"):
        pass
    assert torch.get_num_threads() == 1
    second.__exit__(None, None, None)
    assert torch.get_num_threads() == before


def test_threads_must_not_be_negative():
    from progattr_core.errors import ConfigError

    with pytest.raises(ConfigError, match="compute.threads"):
        load_params(ROOT / "params.yaml", [*TINY, "compute.threads=-1"])
