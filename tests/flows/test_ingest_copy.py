"""Ingest brings a source folder outside data.raw in by copying only what is new or changed since the last
night (size or mtime), as rsync's quick check does: a nightly over a large catalogue copies the few
images that changed, not the catalogue."""

from __future__ import annotations

import os

from tasks.ingest import _sync_tree


def test_only_new_or_changed_files_are_copied(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "raw" / "src"
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(name.encode() * 10)
    assert _sync_tree(src, dst) == 3
    assert _sync_tree(src, dst) == 0  # the copies kept their sources' mtimes
    (src / "b.jpg").write_bytes(b"re-shot")
    (src / "sub" / "d.jpg").write_bytes(b"new")
    os.utime(src / "a.jpg", ns=(10**18, 10**18))  # touched: same bytes, copied again (cheap, and safe)
    assert _sync_tree(src, dst) == 3
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()) == [
        "a.jpg", "b.jpg", "sub/c.jpg", "sub/d.jpg"]
    assert (dst / "b.jpg").read_bytes() == b"re-shot"
