"""Which test images the approval report shows (tasks/report._cases): with a champion, the cells where
the two versions disagree, most confident first; without one (or for an attribute it lacks), this version's
most confident mistakes."""

from __future__ import annotations

import numpy as np

from tasks.report import _cases

VOCAB = {"fade": ["no", "light", "heavy"]}


def test_disagreements_most_confident_first_and_mistakes_without_a_champion():
    images = np.zeros((4, 3, 8, 8), dtype=np.uint8)
    labels = np.array([[0], [1], [-1], [2]])
    mine = {"fade": np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])}
    theirs = {"fade": np.array([[0.1, 0.85, 0.05], [0.2, 0.7, 0.1], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]])}
    shown = _cases(images, labels, ["fade"], VOCAB, mine, theirs)
    # image 1 agrees; the others by min(top-1 here, top-1 there): 0 (0.85), then 2 and 3 (0.6 each, in order)
    assert [c["i"] for c in shown] == [0, 2, 3]
    first = shown[0]
    assert first["mine"] == ("no", 0.9) and first["theirs"] == ("light", 0.85) and first["label"] == "no"
    assert shown[1]["label"] is None and first["thumb"].startswith("data:image/png;base64,")
    alone = _cases(images, labels, ["fade"], VOCAB, mine, None)
    assert [c["i"] for c in alone] == [3] and alone[0]["theirs"] is None  # the one labelled mistake
    # a champion without the attribute (a branch-add's new one): this version's mistakes for it
    added = _cases(images, labels, ["fade"], VOCAB, mine, {"other": theirs["fade"]})
    assert [c["i"] for c in added] == [3] and added[0]["theirs"] is None
