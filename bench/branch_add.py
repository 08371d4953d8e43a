"""What adding one attribute to a trained model costs, against retraining the whole model.

On one article (built-in, or a real one with --real) and one seed, in one process: (1) progressive
with every attribute (the retrain a new attribute would otherwise need); (2) progressive without
the last attribute in training order; (3) that model plus the last attribute's Branch through the
branch-add stages (`branch_add.mode`, default frozen_base). Prints fit seconds, the branch-add /
retrain ratio (the goal: <= 0.25), each attribute's accuracy in both models, and whether the old
attributes' outputs stayed bit-identical (what frozen_base promises).

    .venv/bin/python -m bench.branch_add --profile full
    .venv/bin/python -m bench.branch_add --profile full --real tshirts --n 1800 \\
        --set model.init=data/bench/backbone-resnet18-64px.pt model.split_point=layer4.1 train.first_attributes=0
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bench import common
from bench.accuracy import _params, _probs, real_splits

log = logging.getLogger("bench.branch_add")
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"article": "jeans", "n": 40, "set": ["model.image_size=32", "train.epochs_first=1"]},
    "quick": {"article": "tops", "n": 300, "set": ["model.image_size=32"]},
    "full": {"article": "tops", "n": 3000, "set": []},
}
COST_GOAL = 0.25  # issue 17: adding one attribute costs at most a quarter of retraining the whole model


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--article", default=None, help="built-in article (default: the profile's)")
    ap.add_argument("--real", default=None, metavar="ARTICLE", help="a real-catalogue article (e.g. tshirts)")
    ap.add_argument("--n", type=int, default=None, help="images to sample (default: the profile's; --real: all)")
    ap.add_argument("--seed", type=int, default=0)


def _train(model, stages, splits, params, seed) -> tuple[Any, float, list[dict[str, Any]]]:
    from progattr_core.stages import run_schedule

    results = run_schedule(model, stages, splits["train"], params, seed, "cpu", splits["val"])
    fits = [{"name": r.name, "seconds": round(r.seconds, 2), "image_passes": r.image_passes} for r in results]
    return model, float(sum(r.seconds for r in results)), fits


def _accuracy(model, data) -> dict[str, float]:
    from progattr_core.metrics import evaluate

    attrs = [a for a in data.attributes if a in model.classes]
    report = evaluate("m", {a: p for a, p in _probs("progressive", model, data, "cpu").items() if a in attrs},
                      data.labels.numpy()[:, [data.attributes.index(a) for a in attrs]], attrs,
                      {a: data.classes[a] for a in attrs})
    return {a: m.accuracy for a, m in report.per_attribute.items()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from progattr_core import train as core_train
    from progattr_core.model import build_model
    from progattr_core.predict import predict_proba
    from progattr_core.schedule import attribute_order, branch_add_stages, build_schedule

    args, machine, started = common.start(__doc__.splitlines()[0], argv, profiles=tuple(PROFILES), extra=[_options])
    prof = PROFILES[args.profile]
    article = args.real or args.article or prof["article"]
    base = [*prof["set"], *args.set]
    params = _params(base, article, args.seed)
    n = args.n or (None if args.real else prof["n"])
    splits = (real_splits(params, article, n, False, args.seed) if args.real
              else common.synth_splits(params, article, n, params.synth.seed))
    order = attribute_order(params, article)
    held, mode = order[-1], params.branch_add.mode
    log.info("retrain: progressive on all of %s (%d training images)", order, len(splits["train"]))
    full, full_s, full_fits = _train(build_model(params.model, args.seed), build_schedule(params, article), splits,
                                     params, args.seed)
    # the same schedule without the last attribute (a params copy whose order leaves it out)
    fewer = dataclasses.replace(params, train=dataclasses.replace(params.train, attribute_order=tuple(order[:-1])))
    log.info("base: progressive on %s", order[:-1])
    old, old_s, old_fits = _train(build_model(params.model, args.seed), build_schedule(fewer, article), splits,
                                  params, args.seed)
    before = copy.deepcopy(old)
    core_train._features.clear()  # a branch-add runs in a later process: no Base features cached from (2)
    log.info("branch-add (%s): %s", mode, held)
    added, add_s, add_fits = _train(old, branch_add_stages(order[:-1], held, params, mode), splits, params, args.seed)
    test = splits["test"]
    x = test.images[:256]
    with torch.no_grad():
        p0 = predict_proba(before, x, 256, "cpu", order[:-1])
        p1 = predict_proba(added, x, 256, "cpu", order[:-1])
    identical = all(np.array_equal(p0[a], p1[a]) for a in order[:-1])
    acc_full, acc_added = _accuracy(full, test), _accuracy(added, test)
    ratio = add_s / full_s
    tables = [common.table(f"{article}, seed {args.seed}, {len(splits['train'])} training images, branch-add of "
                           f"{held!r} ({mode})",
                           ["run", "fit s", "fit s / retrain", "overall %"],
                           [["retrain: progressive, all attributes", full_s, 1.0, 100 * np.mean(list(acc_full.values()))],
                            [f"progressive without {held}", old_s, old_s / full_s, None],
                            [f"branch-add of {held}", add_s, ratio, 100 * np.mean(list(acc_added.values()))]]),
              common.table("accuracy % per attribute", ["attribute", "retrained", "branch-added"],
                           [[a, 100 * acc_full[a], 100 * acc_added[a]] for a in order]),
              common.table("stages", ["run", "stage", "seconds", "image passes"],
                           [[run, f["name"], f["seconds"], f["image_passes"]]
                            for run, fits in (("retrain", full_fits), ("without", old_fits), ("branch-add", add_fits))
                            for f in fits])]
    notes = [f"old attributes' test probabilities bit-identical after the branch-add: {identical}",
             "fit s: the training loops' own time (validation for best-epoch selection included); one process, "
             "runs in the order of the first table"]
    return common.write_results("branch_add", args, {"overrides": base, "article": article, "real": bool(args.real),
                                                     "seed": args.seed, "n_images": n, "mode": mode, "held": held},
                                tables, {"branch-add / retrain": ratio},
                                [common.goal("branch-add fit time / retrain", ratio, COST_GOAL)], notes,
                                {"identical": identical, "accuracy": {"retrain": acc_full, "branch_add": acc_added},
                                 "fits": {"retrain": full_fits, "without": old_fits, "branch_add": add_fits}},
                                machine, started)


if __name__ == "__main__":
    main()
