"""`progattr demo` says, before training, how long it expects to take on this machine."""

from __future__ import annotations

from progattr_core.config import load_params
from progattr_core.estimate import planned_work
from tests.paths import ROOT

TINY = ["model.image_size=32", "train.epochs_first=1", "train.epochs_add=1", "baselines.epochs=2",
        "synth.n_images=30", "synth.image_size=32"]


def test_the_demo_says_how_long_it_expects_to_take_before_training(tmp_path, capsys):
    from progattr.cli.pipeline import _ensure_synth, _say_expected_time

    params = load_params(ROOT / "params.yaml", TINY)
    manifest = _ensure_synth(params, "jeans", tmp_path / "raw")
    _say_expected_time(params, "jeans", manifest)
    out = capsys.readouterr().out
    train = manifest[manifest["split"] == "train"]
    labelled = train[["fade", "shade", "distress"]].notna().to_numpy()
    passes = sum(w.passes for w in planned_work(params, "jeans", labelled, int((manifest["split"] == "val").sum())))
    assert f"the demo makes {passes:,} training image passes in 11 runs: expect about" in out, out
    assert "this machine trains resnet18 at 32 px at" in out and out.rstrip().endswith(" min)")
