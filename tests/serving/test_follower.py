"""The model follower in process, over the session's SQLite registry: swaps, and what a bad version does."""

from __future__ import annotations

import os

import pytest
import torch

from serving.follower import ModelFollower
from tests.serving.helpers import register_folder, set_alias
from tracking.registry import Registry


class Evil:
    """Unpickling this would run a command; weights_only loading must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_an_article_without_a_version_waits_and_the_others_serve(registry, tmp_path):
    """`serve --articles tops dresses` before dresses has a champion: tops serves, the service is ready and
    names dresses as waiting; nothing at all to serve is not ready; dresses is picked up once approved."""
    from tests.serving.helpers import register_versions

    uri, (v1, _) = registry.tracking_uri, registry.versions
    follower = ModelFollower(["tops", "dresses"], Registry(uri), "champion", poll_interval_s=60)
    assert [s.version for s in follower.poll_once()] == [v1]
    assert follower.ready() and follower.waiting() == ["dresses"] and follower.get("dresses") is None
    nothing = ModelFollower(["tops"], Registry(uri), "no-such-alias", poll_interval_s=60)
    assert nothing.poll_once() == [] and not nothing.ready() and nothing.waiting() == ["tops"]
    other_uri, (d1,) = register_versions(tmp_path, "dresses", [3])
    both = ModelFollower(["tops", "dresses"], Registry(other_uri), "champion", poll_interval_s=60)
    assert both.poll_once() == [] and not both.ready()  # nothing loaded: not ready, both waiting
    set_alias(other_uri, "dresses", "champion", d1)
    assert [s.version for s in both.poll_once()] == [d1] and both.waiting() == ["tops"] and both.ready()


def test_swaps_on_alias_move_and_held_reference_stays(registry):
    uri, (v1, v2) = registry.tracking_uri, registry.versions
    follower = ModelFollower(["tops"], Registry(uri), "no-such-alias", poll_interval_s=60)
    assert follower.poll_once() == [] and not follower.ready()     # no such alias: nothing to serve
    follower = ModelFollower(["tops"], Registry(uri), "champion", poll_interval_s=60)
    set_alias(uri, "tops", "champion", v1)
    assert [s.version for s in follower.poll_once()] == [v1] and follower.ready()
    held = follower.get("tops")                                     # a request in flight
    assert follower.poll_once() == []                               # alias unchanged: no reload
    set_alias(uri, "tops", "champion", v2)
    try:
        assert [s.version for s in follower.poll_once()] == [v2]
        assert follower.get("tops").version == v2 and held.version == v1
        x = torch.zeros((1, 3, 32, 32), dtype=torch.uint8)
        assert set(held.model(x)) == set(follower.get("tops").model(x))  # the old model still answers
    finally:
        set_alias(uri, "tops", "champion", v1)


@pytest.mark.parametrize("payload", ["malicious-pickle", "garbage"])
def test_a_bad_version_never_replaces_the_served_one(registry, tmp_path, payload):
    uri, v1, root = registry.tracking_uri, registry.versions[0], registry.root
    marker = tmp_path / "pwned"
    folder = tmp_path / f"bad-{payload}" / "model"
    folder.mkdir(parents=True)
    if payload == "malicious-pickle":
        torch.save({"format": "progattr-model/1", "config": Evil(str(marker))}, folder / "model.pt")
    else:
        (folder / "model.pt").write_bytes(b"\x00not a torch file" * 10)
    bad = register_folder(uri, root, "tops", folder, {"bad": payload})
    follower = ModelFollower(["tops"], Registry(uri), "champion", poll_interval_s=60)
    set_alias(uri, "tops", "champion", v1)
    follower.poll_once()
    set_alias(uri, "tops", "champion", bad)
    try:
        assert follower.poll_once() == []
        assert follower.get("tops").version == v1 and follower.ready()
        assert not marker.exists()                                  # nothing was unpickled
    finally:
        set_alias(uri, "tops", "champion", v1)
