"""The synthetic catalogue: deterministic, stable as it grows, paper-like sparsity, every class drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from progattr_core.data.manifest import read_manifest, validate_manifest
from progattr_core.data.synth import _label_mask, generate_catalogue, labelled_probability
from progattr_core.data.synth_draw import draw_garment
from progattr_core.errors import DataValidationError
from tests.unit.data_helpers import params

P = params()
S = P.synth


def _generate(out, article="jeans", n=16, seed=0, **kw):
    return generate_catalogue(article, n, out, P.taxonomy, 32, S.full_label_fraction, S.label_rate, S.label_noise,
                              seed, P.data.split, **kw)


def test_deterministic_and_stable_as_it_grows(tmp_path):
    a = _generate(tmp_path / "a", n=10)
    b = _generate(tmp_path / "b", n=16)
    pd.testing.assert_frame_equal(a, b.iloc[:10])  # same ids, hashes, labels and splits
    c = _generate(tmp_path / "c", n=10, seed=1)
    assert not set(a["sha256"]) & set(c["sha256"])


def test_worker_processes_do_not_change_the_output(tmp_path):
    serial = _generate(tmp_path / "s", article="tops", n=12, workers=1)
    parallel = _generate(tmp_path / "p", article="tops", n=12, workers=2)
    pd.testing.assert_frame_equal(serial, parallel)


def test_output_is_a_source_folder_like_an_import(tmp_path):
    m = _generate(tmp_path / "data" / "raw" / "synth", root=tmp_path / "data")
    assert m["path"][0] == "raw/synth/jeans/images/synth-jeans-s0-000000.jpg"
    assert (tmp_path / "data" / m["path"][0]).is_file()
    source = read_manifest(tmp_path / "data/raw/synth/jeans/manifest.parquet", P.taxonomy)
    assert source["path"][0] == "jeans/images/synth-jeans-s0-000000.jpg"
    validate_manifest(m, P.taxonomy)
    with pytest.raises(DataValidationError, match="not inside the data root"):
        _generate(tmp_path / "elsewhere", root=tmp_path / "data")
    with pytest.raises(DataValidationError, match="draws"):
        _generate(tmp_path / "x", article="topwear")


@pytest.mark.parametrize("k", [3, 4, 7])
def test_label_sparsity_matches_the_paper(k):
    q = labelled_probability(k, S.full_label_fraction, S.label_rate)
    rng = np.random.default_rng(0)
    masks = np.array([_label_mask(rng, k, S.full_label_fraction, q) for _ in range(20000)])
    assert abs(masks.all(axis=1).mean() - S.full_label_fraction) < 0.015  # ~45% carry every attribute
    assert np.allclose(masks.mean(axis=0), S.label_rate, atol=0.015)  # ~80% per attribute
    assert masks.any(axis=1).mean() > 0.97


def test_an_infeasible_rate_is_capped_and_still_terminates(tmp_path):
    # two attributes cannot reach an 80% rate with 45% full and one missing on the rest: q is capped, not 1
    q = labelled_probability(2, S.full_label_fraction, S.label_rate)
    assert q < 0.99
    jeans = {a: v for a, v in P.taxonomy["jeans"].items() if a != "distress"}
    m = generate_catalogue("jeans", 40, tmp_path, {"jeans": jeans}, 32, S.full_label_fraction, S.label_rate,
                           S.label_noise, 0, P.data.split, workers=1)
    assert len(m) == 40 and 0.55 < m[list(jeans)].notna().to_numpy().mean() < 0.85


def test_generated_labels_are_sparse_and_noisy_at_the_configured_rates(tmp_path):
    m = _generate(tmp_path, n=300, workers=1)
    labelled = m[list(P.attributes("jeans"))].notna()
    assert abs(labelled.all(axis=1).mean() - 0.45) < 0.08 and np.allclose(labelled.mean(), 0.8, atol=0.07)


@pytest.mark.parametrize("article", ["dresses", "tops", "jeans"])
def test_every_class_changes_the_drawing(article):
    attrs = P.attributes(article)
    base = {a: v[0] for a, v in attrs.items()}
    base["sleeve_length"] = "long" if "sleeve_length" in attrs else None
    for attr, classes in attrs.items():
        images = []
        for cls in classes:
            labels = {**base, attr: cls}
            img = np.asarray(draw_garment(article, labels, np.random.default_rng(3), 48), dtype=np.int16)
            images.append(img)
        for i in range(len(images)):
            for j in range(i):
                changed = int((np.abs(images[i] - images[j]).max(axis=-1) > 10).sum())
                assert changed >= 4, f"{article}.{attr}: {classes[i]} looks like {classes[j]} ({changed} pixels differ)"


def _stamp(article="jeans", n=16, seed=0, noise=None):
    from progattr_core.data.synth import catalogue_stamp

    return catalogue_stamp(article, n, P.taxonomy, 32, S.full_label_fraction, S.label_rate,
                           S.label_noise if noise is None else noise, seed, P.data.split)


def test_a_folder_knows_what_drew_it(tmp_path):
    from progattr_core.data.synth import STAMP, stale_reason

    assert stale_reason(tmp_path, _stamp()) == "no catalogue there yet"
    _generate(tmp_path, n=16)
    assert stale_reason(tmp_path, _stamp()) is None
    assert stale_reason(tmp_path, _stamp(noise=S.label_noise + 0.1)) == "changed since it was drawn: label_noise"
    assert "n, seed" in stale_reason(tmp_path, _stamp(n=8, seed=1))
    drawn_by = _stamp()
    drawn_by["generator"] = "an older drawing"
    (tmp_path / "jeans" / STAMP).write_text(__import__("json").dumps(drawn_by))
    assert stale_reason(tmp_path, _stamp()) == "changed since it was drawn: generator"
    (tmp_path / "jeans" / STAMP).unlink()
    assert "older progattr" in stale_reason(tmp_path, _stamp())


def test_a_smaller_redraw_leaves_no_old_images(tmp_path):
    _generate(tmp_path, n=16)
    m = _generate(tmp_path, n=10)
    on_disk = sorted(p.name for p in (tmp_path / "jeans" / "images").iterdir())
    assert on_disk == sorted(p.split("/")[-1] for p in m["path"])


def test_the_demo_redraws_a_stale_catalogue_and_reuses_a_current_one(tmp_path, capsys):
    from progattr.cli.pipeline import _ensure_synth

    small = params("synth.n_images=8", "synth.image_size=32")
    _ensure_synth(small, "jeans", tmp_path)
    assert "drawing 8 synthetic jeans images (32 px)" in capsys.readouterr().out
    first = (tmp_path / "jeans" / "manifest.parquet").read_bytes()
    _ensure_synth(small, "jeans", tmp_path)
    assert "using the synthetic jeans catalogue already" in capsys.readouterr().out
    _ensure_synth(params("synth.n_images=8", "synth.image_size=32", "synth.seed=3"), "jeans", tmp_path)
    out = capsys.readouterr().out
    assert "drawing 8" in out and "changed since it was drawn: seed" in out
    assert (tmp_path / "jeans" / "manifest.parquet").read_bytes() != first


def test_a_reused_catalogue_has_the_same_manifest_as_a_fresh_one(tmp_path):
    from progattr_core.data.synth import ensure_catalogue

    small = params("synth.n_images=8", "synth.image_size=32")
    drawn, why = ensure_catalogue(small, "jeans", tmp_path / "src", n=6, seed=2, root=tmp_path)
    assert why == "no catalogue there yet" and drawn["path"].str.startswith("src/jeans/images/").all()
    reused, why = ensure_catalogue(small, "jeans", tmp_path / "src", n=6, seed=2, root=tmp_path)
    assert why is None
    pd.testing.assert_frame_equal(reused, drawn)
    _, why = ensure_catalogue(small, "jeans", tmp_path / "src", root=tmp_path)  # params' n and seed
    assert why == "changed since it was drawn: n, seed"
