"""What a review loop buys: label the cells the model is least sure of, or as many at random, and retrain.

On the built-in catalogue (whose generator knows what every image shows, hidden labels included:
`progattr_core.data.synth.true_labels`), per seed: train progressive at the committed params; queue the
training split's unlabelled cells as `progattr tag` does (answers below their attribute's calibrated
threshold for serving.target_precision, least sure first: smallest margin between the top two
classes); give the first N of them their true label, or N unlabelled cells drawn at random; retrain from
the same seed on each; compare test accuracy. The number a team asks for: accuracy points gained per
100 labelled cells, least-sure against random.

    .venv/bin/python -m bench.review_loop --profile full        # tops, 2,000 images, 200 cells, 3 seeds
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench import common
from bench.accuracy import _params, _probs, train_method

log = logging.getLogger("bench.review_loop")
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"article": "jeans", "n": 80, "cells": 10, "seeds": [0],
              "set": ["model.image_size=32", "train.epochs_first=1", "train.epochs_add=1", "train.epochs_finetune=1",
                      "train.epochs_final=1"]},
    "quick": {"article": "tops", "n": 600, "cells": 50, "seeds": [0], "set": []},
    "full": {"article": "tops", "n": 2000, "cells": 200, "seeds": [0, 1, 2], "set": []},
}


def _options(ap: Any) -> None:
    ap.add_argument("--cells", type=int, default=None, help="cells labelled per arm (default: the profile's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: the profile's)")


def _accuracy(model: Any, splits: dict[str, Any], device: str) -> dict[str, float]:
    from progattr_core.metrics import evaluate

    test = splits["test"]
    report = evaluate("progressive", _probs("progressive", model, test, device), test.labels.numpy(),
                      test.attributes, test.classes)
    return {**{a: m.accuracy for a, m in report.per_attribute.items()}, "overall": report.overall}


def review_queue(model: Any, splits: dict[str, Any], params: Any, device: str) -> list[tuple[int, int, float]]:
    """(row, attribute index, margin) of the training split's unlabelled cells whose calibrated answer is
    below its threshold, least sure first: what `progattr tag` writes to review.csv."""
    from progattr_core.calibration import calibrate_attributes, temper

    train, val = splits["train"], splits["val"]
    attrs = list(train.attributes)
    val_probs = _probs("progressive", model, val, device)
    fitted, _ = calibrate_attributes(val_probs, val.labels.numpy(), val_probs, val.labels.numpy(), attrs,
                                     {a: params.serving.target_for(a) for a in attrs})
    probs = _probs("progressive", model, train, device)
    labels = train.labels.numpy()
    queue = []
    for j, a in enumerate(attrs):
        p = temper(probs[a], fitted[a].temperature)
        top = np.sort(p, axis=1)[:, ::-1]
        for i in np.flatnonzero((labels[:, j] < 0) & (top[:, 0] < fitted[a].threshold)):
            queue.append((int(i), j, float(top[i, 0] - top[i, 1])))
    return sorted(queue, key=lambda c: c[2])


def _labelled(splits: dict[str, Any], cells: Sequence[tuple[int, int]], truth: np.ndarray) -> dict[str, Any]:
    import torch

    out = dict(splits)
    train = copy.copy(splits["train"])
    labels = train.labels.numpy().copy()
    for i, j in cells:
        labels[i, j] = truth[i, j]
    train.labels = torch.as_tensor(labels, dtype=torch.int64)
    out["train"] = train
    return out


def _truth(manifest: Any, params: Any, article: str, train_ids: list[str]) -> np.ndarray:
    """The true class code of every training cell (-1 where the attribute does not apply)."""
    from progattr_core.data.synth import true_labels

    vocab = params.attributes(article)
    attrs = list(vocab)
    seed = params.synth.seed
    out = np.full((len(train_ids), len(attrs)), -1, dtype=np.int64)
    for r, image_id in enumerate(train_ids):
        truth = true_labels(article, vocab, seed, int(image_id.rsplit("-", 1)[1]))
        for j, a in enumerate(attrs):
            if truth[a] is not None:
                out[r, j] = list(vocab[a]).index(truth[a])
    return out


def run_seed(params_for: Any, splits: dict[str, Any], truth: np.ndarray, article: str, seed: int, cells: int
             ) -> dict[str, Any]:
    params = params_for(seed)
    model, _ = train_method("progressive", params, splits, article, seed)
    before = _accuracy(model, splits, "cpu")
    queue = review_queue(model, splits, params, "cpu")
    unlabelled = [(int(i), int(j)) for i, j in zip(*np.nonzero(splits["train"].labels.numpy() < 0), strict=True)
                  if truth[i, j] >= 0]
    rng = np.random.default_rng(1000 + seed)
    picks = {"least sure": [(i, j) for i, j, _ in queue if truth[i, j] >= 0][:cells],
             "random": [unlabelled[k] for k in rng.choice(len(unlabelled), size=min(cells, len(unlabelled)),
                                                          replace=False)]}
    train_probs = _probs("progressive", model, splits["train"], "cpu")
    attrs = list(splits["train"].attributes)
    out: dict[str, Any] = {"before": before, "queue": len(queue), "unlabelled": len(unlabelled), "arms": {}}
    for arm, chosen in picks.items():
        wrong = float(np.mean([train_probs[attrs[j]][i].argmax() != truth[i, j] for i, j in chosen])) if chosen else 0.0
        retrained, _ = train_method("progressive", params, _labelled(splits, chosen, truth), article, seed)
        after = _accuracy(retrained, splits, "cpu")
        out["arms"][arm] = {"cells": len(chosen), "model_wrong_share": wrong, "after": after,
                            "gain_per_100": 100 * 100 * (after["overall"] - before["overall"]) / max(len(chosen), 1)}
        log.info("seed %d %s: %d cells (model wrong on %.0f%%), overall %.4f -> %.4f", seed, arm, len(chosen),
                 100 * wrong, before["overall"], after["overall"])
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, machine, started = common.start(__doc__.splitlines()[0], argv, profiles=list(PROFILES), extra=[_options])
    prof = PROFILES[args.profile]
    article, cells, seeds = prof["article"], args.cells or prof["cells"], args.seeds or prof["seeds"]
    base = [*prof["set"], *args.set]
    params = _params(base, article, seeds[0])
    from progattr_core.data.synth import ensure_catalogue

    out_dir = common.DATA / f"synth-{article}-n{prof['n']}-seed{params.synth.seed}-px{params.synth.image_size}"
    manifest, _ = ensure_catalogue(params, article, out_dir, n=prof["n"], seed=params.synth.seed)
    splits = common.manifest_splits(params, manifest, out_dir, article)
    train_ids = [str(v) for v in manifest.loc[manifest["split"] == "train", "image_id"]]
    truth = _truth(manifest, params, article, train_ids)
    runs = {seed: run_seed(lambda s: _params(base, article, s), splits, truth, article, seed, cells) for seed in seeds}
    arms = ["least sure", "random"]
    rows = [[seed, 100 * r["before"]["overall"], r["queue"], r["unlabelled"],
             *[100 * r["arms"][a]["after"]["overall"] for a in arms],
             *[r["arms"][a]["gain_per_100"] for a in arms],
             *[100 * r["arms"][a]["model_wrong_share"] for a in arms]] for seed, r in runs.items()]
    mean = [float(np.mean([r["arms"][a]["gain_per_100"] for r in runs.values()])) for a in arms]
    tables = [common.table(f"{article}, {len(splits['train'])} training images, {cells} cells labelled per arm: "
                           "overall test accuracy % before and after", ["seed", "before", "queue", "unlabelled",
                           "after: least sure", "after: random", "points / 100 cells: least sure",
                           "points / 100 cells: random", "model wrong %: least sure", "model wrong %: random"], rows)]
    ratios = {"points per 100 cells, least sure (mean)": mean[0], "points per 100 cells, random (mean)": mean[1]}
    notes = ["queue: unlabelled training cells whose calibrated answer is below the attribute's threshold "
             "(serving.target_precision), least sure first, as `progattr tag` writes review.csv",
             "each arm retrains from the same seed with the chosen cells given their true label; test split unchanged"]
    return common.write_results("review_loop", args, {"overrides": base, "article": article, "n_images": prof["n"],
                                                      "cells": cells, "seeds": seeds}, tables, ratios, [], notes,
                                {"runs": {str(k): v for k, v in runs.items()}}, machine, started)


if __name__ == "__main__":
    main()
