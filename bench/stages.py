"""Where progressive's training time goes, and what a schedule variant changes.

Trains the individual baseline and progressive (committed params) on one built-in article, then
progressive once more per --variant (params overrides, e.g. train.branch_images=labelled), all on
the same data in one process; prints overall accuracy, fit time and image passes per run, and
seconds, image passes and ms per image pass for every progressive stage.

    .venv/bin/python -m bench.stages --profile full --variant train.branch_images=labelled
    .venv/bin/python -m bench.stages --profile full --real tshirts --n 1800 --variant train.class_weighting=inverse
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from bench import common
from bench.accuracy import _params, real_splits, run_method

log = logging.getLogger("bench.stages")
# article, images, params overrides; full = the benchmarks' built-in catalogue: 3,000 images, 64 px
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"article": "jeans", "n": 40, "set": ["model.image_size=32", "train.epochs_first=1",
                                                    "baselines.epochs=1"]},
    "quick": {"article": "tops", "n": 300, "set": ["model.image_size=32"]},
    "full": {"article": "dresses", "n": 3000, "set": []},
}
TRAINING_TIME_GOAL = 0.5  # the paper: progressive trains in ~half the individual models' time


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--article", default=None, help="built-in article (default: the profile's)")
    ap.add_argument("--real", default=None, metavar="ARTICLE",
                    help="a real-catalogue article (imports.kaggle, e.g. tshirts) with its natural labels instead")
    ap.add_argument("--n", type=int, default=None, help="images to sample (default: the profile's; --real: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", action="append", default=[], metavar="'KEY=VALUE ...'",
                    help="a progressive run with these params overrides (repeatable)")
    ap.add_argument("--references", default="individual,progressive", metavar="METHODS",
                    help="methods trained with the committed params before the variants (comma-separated; "
                    "individual always: every time ratio is against it), e.g. individual,multilabel_masked")


def _ms_per_pass(seconds: float, passes: int) -> float:
    return 1000 * seconds / passes if passes else float("nan")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, machine, started = common.start(__doc__.splitlines()[0], argv, extra=[_options])
    prof = PROFILES[args.profile]
    article = args.real or args.article or prof["article"]
    base, _ = common.resolve_init([*prof["set"], *args.set])
    params = _params(base, article, args.seed)
    if args.real:
        n = args.n
        splits = real_splits(params, article, n, False, args.seed)
    else:
        n = args.n or prof["n"] or params.synth.n_images
        splits = common.synth_splits(params, article, n, params.synth.seed)
    references = ["individual", *(m for m in args.references.split(",") if m and m != "individual")]
    runs: dict[str, tuple[str, list[str]]] = {m: (m, []) for m in references}
    for variant in args.variant:
        runs[f"progressive [{variant}]"] = ("progressive", variant.split())
    results: dict[str, dict[str, Any]] = {}
    for label, (method, extra) in runs.items():
        log.info("%s: training on %d images", label, len(splits["train"]))
        results[label] = run_method(method, _params(base, article, args.seed, extra), splits, article, args.seed)
        r = results[label]
        log.info("%s: overall %.3f, %d passes, %.0f s", label, r["overall"], r["image_passes"], r["fit_s"])
    individual_s = results["individual"]["fit_s"]
    summary = [[label, 100 * r["overall"], 100 * r["overall_macro_f1"], 100 * r["overall_balanced_accuracy"],
                r["fit_s"], r["image_passes"], _ms_per_pass(r["fit_s"], r["image_passes"]), r["fit_s"] / individual_s]
               for label, r in results.items()]
    tables = [common.table(f"{article}, seed {args.seed}, {len(splits['train'])} training images: each run",
                           ["run", "overall %", "macro-F1 %", "balanced acc. %", "fit s", "image passes",
                            "ms per pass", "fit s / individual"], summary)]
    attrs = list(results["individual"]["accuracy"])
    for key, title in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("balanced_accuracy", "balanced accuracy")):
        tables.append(common.table(f"{title} % per attribute", ["attribute", *results],
                                   [[a, *(100 * r[key][a] for r in results.values())] for a in attrs]))
    for label, r in results.items():
        if runs[label][0] == "progressive":
            tables.append(common.table(f"{label}: per stage", ["stage", "seconds", "image passes", "ms per pass"],
                                       [[f["name"], f["seconds"], f["image_passes"],
                                         _ms_per_pass(f["seconds"], f["image_passes"])] for f in r["fits"]]))
    ratios = {f"train time {label} / individual": r["fit_s"] / individual_s
              for label, r in results.items() if label != "individual"}
    goals = [common.goal(f"{label}: training time / individual", r["fit_s"] / individual_s, TRAINING_TIME_GOAL)
             for label, r in results.items() if label != "individual"]
    notes = ["fit s: the training loops' own time (validation for best-epoch selection included), summed "
             "over progressive's stages or the individual models",
             "one process, runs in the order of the table, same data; single seed: accuracy differences "
             "under ~1 point are within seed noise (bench.accuracy gives the 3-seed spread)"]
    return common.write_results("stages", args, {"overrides": base, "article": article, "real": bool(args.real),
                                                 "seed": args.seed,
                                                 "variants": args.variant, "n_images": n, "profile": prof},
                                tables, ratios, goals, notes, {"runs": results}, machine, started)


if __name__ == "__main__":
    main()
