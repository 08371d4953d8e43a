"""The batch tagging flow, for real: a registered champion in MLflow (SQLite), Prefect's test harness,
a folder and an S3 prefix on a loopback S3-compatible server (moto). The champion's calibration
(tests/serving/helpers.CALIBRATION) accepts every sleeve_length and neck answer and no pattern one:
those go to the review queue."""

from __future__ import annotations

import contextlib
import json
import os

import boto3
import pandas as pd
import pytest

from progattr_core.config import ImageParams
from progattr_core.data.images import decode_image, to_square_array
from progattr_core.predict import predict
from tests.paths import ROOT
from tests.serving.helpers import png_bytes, register_versions, set_alias, tiny_model
from tests.support import tiny_overrides

pytestmark = pytest.mark.flows
IMAGES = {"a/one.png": png_bytes(40, 50, seed=1), "a/two.jpg": png_bytes(64, 64, seed=2, fmt="JPEG"),
          "three.png": png_bytes(33, 80, seed=3), "odd name (1).png": png_bytes(32, 32, seed=4)}
BAD = {"broken.jpg": b"not an image at all", "empty.png": b""}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One registry for the module (creating an MLflow database costs seconds): champion = seed 2."""
    uri, versions = register_versions(tmp_path_factory.mktemp("tag-registry"), "tops", [1, 2])
    set_alias(uri, "tops", "champion", versions[1])
    return uri, versions[1]


@pytest.fixture
def champion(registry):
    return registry[1]


def _overrides(tmp_path, registry) -> list[str]:
    return [*tiny_overrides(tmp_path), f"mlflow.tracking_uri={registry[0]}"]


def _expected(data: bytes) -> dict:
    model = tiny_model(2)
    x = to_square_array(decode_image(data, ImageParams(10**8, 10**8)), model.image_size)
    return predict(model, x[None], top_k=3)[0]


def _check_table(summary: dict, champion: str, names: dict[str, str]) -> None:
    tags = pd.read_parquet(summary["outputs"]["parquet"])
    assert summary["version"] == champion and set(tags["model_version"]) == {champion}
    assert len(tags) == 2 * len(IMAGES) and summary["rows"] == len(tags) and "pattern" not in set(tags["attribute"])
    assert set(tags["image"]) == {names[k] for k in IMAGES}
    review = pd.read_csv(summary["outputs"]["review"])
    assert summary["review"] == len(review) == len(IMAGES) and set(review["attribute"]) == {"pattern"}
    assert review["margin"].is_monotonic_increasing  # least sure first
    for key, data in IMAGES.items():
        want = _expected(data)
        got = tags[tags["image"] == names[key]].set_index("attribute")["probability"].to_dict()
        assert got == pytest.approx({a: p.probability for a, p in want.items() if a != "pattern"}, abs=1e-5)
        (row,) = review[review["image"] == names[key]].to_dict("records")
        top = json.loads(row["top_k"])
        assert [t[0] for t in top] == [lab for lab, _ in want["pattern"].top_k] and row["label"] == top[0][0]
        assert row["margin"] == pytest.approx(top[0][1] - top[1][1], abs=1e-3) and row["threshold"] > 1
    csv = pd.read_csv(summary["outputs"]["csv"], dtype={"model_version": str})
    assert list(csv.columns) == list(tags.columns) and len(csv) == len(tags)
    rejects = pd.read_csv(summary["outputs"]["rejects"])
    assert set(rejects["image"]) == {names[k] for k in BAD}
    assert rejects["reason"].str.contains("not an image|zero-byte|empty").all()


def test_tags_a_folder(prefect_harness, tmp_path, registry, champion):
    from flows.tag_catalogue import tag_catalogue_flow

    folder = tmp_path / "catalogue"
    for rel, data in {**IMAGES, **BAD}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    (folder / "notes.txt").write_text("not listed: not an image suffix")
    summary = tag_catalogue_flow(str(folder), "tops", str(ROOT / "params.yaml"), _overrides(tmp_path, registry),
                                 output=str(tmp_path / "out"))
    _check_table(summary, champion, {k: k for k in {**IMAGES, **BAD}})


def test_tags_an_s3_prefix(prefect_harness, s3_server, tmp_path, registry, champion, monkeypatch):
    from flows.tag_catalogue import tag_catalogue_flow

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="catalogue")
    for rel, data in {**IMAGES, **BAD}.items():
        s3.put_object(Bucket="catalogue", Key=f"shop/{rel}", Body=data)
    s3.put_object(Bucket="catalogue", Key="elsewhere/x.png", Body=IMAGES["three.png"])
    names = {k: f"s3://catalogue/shop/{k}" for k in {**IMAGES, **BAD}}
    summary = tag_catalogue_flow("s3://catalogue/shop/", "tops", str(ROOT / "params.yaml"), _overrides(tmp_path, registry),
                                 output=str(tmp_path / "out-s3"))
    _check_table(summary, champion, names)


def test_only_missing_cells_from_the_manifest_or_a_folder(prefect_harness, tmp_path, registry):
    from flows.tag_catalogue import tag_catalogue_flow
    from progattr_core.config import load_params
    from progattr_core.data.images import sha256_bytes
    from progattr_core.data.manifest import make_manifest, write_manifest

    params = load_params(ROOT / "params.yaml")
    labels = {"full.png": {"sleeve_style": "cap", "sleeve_length": "short", "pattern": "solid", "neck": "round"},
              "no-pattern.png": {"sleeve_style": "cap", "sleeve_length": "long", "pattern": None, "neck": "boat"},
              "bare.png": {"sleeve_style": None, "sleeve_length": None, "pattern": None, "neck": None}}
    raw = tmp_path / "data" / "raw" / "shop"
    raw.mkdir(parents=True)
    records = []
    for i, (name, cells) in enumerate(labels.items()):
        data = png_bytes(40, 40, seed=10 + i)
        (raw / name).write_bytes(data)
        records.append({"image_id": name.split(".")[0], "path": f"raw/shop/{name}", "sha256": sha256_bytes(data),
                        "article": "tops", **cells})
    write_manifest(make_manifest(pd.DataFrame(records), params.taxonomy, params.data.split),
                   tmp_path / "data" / "manifest.parquet")
    overrides = [*_overrides(tmp_path, registry), f"data.root={tmp_path / 'data'}",
                 f"data.manifest={tmp_path / 'data' / 'manifest.parquet'}"]
    want = {("no-pattern", "pattern"), ("bare", "sleeve_length"), ("bare", "pattern"), ("bare", "neck")}
    from_manifest = tag_catalogue_flow("manifest", "tops", str(ROOT / "params.yaml"), overrides,
                                       output=str(tmp_path / "out-m"))
    assert _cells(from_manifest) == want
    from_folder = tag_catalogue_flow(str(raw), "tops", str(ROOT / "params.yaml"), overrides, only_missing=True,
                                     output=str(tmp_path / "out-f"))
    assert {(i.split(".")[0], a) for i, a in _cells(from_folder)} == want


def _cells(summary: dict) -> set[tuple[str, str]]:
    """(image, attribute) of every answer: the accepted tags and the review queue (pattern's, here)."""
    tags, review = pd.read_parquet(summary["outputs"]["parquet"]), pd.read_csv(summary["outputs"]["review"])
    assert set(review["attribute"]) <= {"pattern"} and "pattern" not in set(tags["attribute"])
    return {*zip(tags["image"], tags["attribute"], strict=True), *zip(review["image"], review["attribute"], strict=True)}


def _tables(written: dict) -> list[pd.DataFrame]:
    out = written["outputs"]
    return [pd.read_parquet(out["parquet"]), pd.read_csv(out["review"]), pd.read_csv(out["rejects"])]


def test_a_killed_tagging_run_keeps_its_parts_and_two_workers_agree(tmp_path, monkeypatch):
    """Shards of 2 images (3 parts here): a run that dies in its third part leaves two whole parts; the
    rerun tags only the third and writes what an uninterrupted run writes; so do two worker processes."""
    import tasks.tagging as tagging
    from progattr_core.model_file import save_model

    folder = tmp_path / "shop"
    for rel, data in {**IMAGES, **BAD}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    champion = tagging.ChampionRef("tops", "progattr-tops", "7", str(save_model(tiny_model(2), tmp_path / "m.pt")))
    items = tagging.list_catalogue(str(folder), None, str(tmp_path), "tops")
    monkeypatch.setattr(tagging, "SHARD_IMAGES", 2)
    limits = ImageParams(10**8, 10**8)

    def run(out: str, workers: int) -> dict:
        return tagging.write_tags(tagging.tag_parts(champion, "shop", items, limits, None, 64, out, workers), out)

    whole = _tables(run(str(tmp_path / "whole"), 1))
    real, calls = tagging.tag_batch, []

    def dies_in_the_third_part(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(tagging, "tag_batch", dies_in_the_third_part)
    with pytest.raises(RuntimeError, match="killed"):
        tagging.tag_parts(champion, "shop", items, limits, None, 64, str(tmp_path / "again"), 1)
    calls.clear()
    monkeypatch.setattr(tagging, "tag_batch", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    parts = tagging.tag_parts(champion, "shop", items, limits, None, 64, str(tmp_path / "again"), 1)
    assert parts.parts == 3 and parts.reused == 2 and calls == [2]
    for got, want in zip(_tables(tagging.write_tags(parts, str(tmp_path / "again"))), whole, strict=True):
        pd.testing.assert_frame_equal(got, want)
    assert not (tmp_path / "again" / ".parts" / parts.key).exists()
    monkeypatch.setattr(tagging, "tag_batch", real)
    for got, want in zip(_tables(run(str(tmp_path / "two"), 2)), whole, strict=True):
        pd.testing.assert_frame_equal(got, want)


def test_tagging_on_a_dask_cluster_survives_a_killed_worker(prefect_harness, tmp_path, registry, monkeypatch):
    """pipeline.dask_address: the shards are Prefect task runs on a real Dask LocalCluster (two worker
    processes on loopback). One worker is SIGKILLed while it holds a shard; the scheduler gives that shard
    to the other, and the tables are those of the run on this machine."""
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster

    import tasks.tagging as tagging
    from flows.tag_catalogue import tag_catalogue_flow

    folder = tmp_path / "shop"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02d}.png").write_bytes(png_bytes(36, 44, seed=100 + i))
    for rel, data in BAD.items():
        (folder / rel).write_bytes(data)
    monkeypatch.setattr(tagging, "SHARD_IMAGES", 1)  # 14 shards: task runs outlive a kill's reaction time
    overrides = _overrides(tmp_path, registry)
    local = _tables(tag_catalogue_flow(str(folder), "tops", str(ROOT / "params.yaml"), [*overrides, "data.workers=1"],
                                       output=str(tmp_path / "local")))
    killed: list[int] = []
    # a LocalCluster's nannies set OMP_NUM_THREADS=1, PYTHONHASHSEED and more in this process's environment
    # for the workers they spawn: put it back after, or every later subprocess trains with other threads
    with _restored_environ(), LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        stop = threading.Event()

        def kill_a_busy_worker() -> None:  # once a part is written and a worker holds another shard
            while not stop.is_set():
                busy = [w for w, keys in client.processing().items() if keys]
                if busy and list((tmp_path / "dask").glob(".parts/*/part-*")):
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(pids[busy[0]])
                    return
                time.sleep(0.005)

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        try:
            summary = tag_catalogue_flow(str(folder), "tops", str(ROOT / "params.yaml"),
                                         [*overrides, f"pipeline.dask_address={cluster.scheduler_address}"],
                                         output=str(tmp_path / "dask"))
        finally:
            stop.set()
            killer.join(timeout=10)
    assert killed, "the map finished before a worker could be killed mid-shard"
    assert summary["images"] == 14 and summary["parts_reused"] == 0
    for got, want in zip(_tables(summary), local, strict=True):
        pd.testing.assert_frame_equal(got, want)


@contextlib.contextmanager
def _restored_environ():
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _size(text: str) -> int:
    return len(text)


def test_a_dask_map_whose_jobs_exceed_prefects_parameter_limit_runs(prefect_harness):
    """Prefect refuses flow-run parameters above 512 KB (server.api.max_parameter_size): tagging 10,000 images on
    Dask failed with a 422 when the shard lists were the mapping flow's parameters. They travel with their tasks."""
    from distributed import LocalCluster

    from tasks.cluster import dask_map

    jobs = ["x" * 300_000, "y" * 300_001]  # 600 KB together
    with _restored_environ(), LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None) as cluster:
        assert dask_map(_size, jobs, cluster.scheduler_address, "size") == [300_000, 300_001]
