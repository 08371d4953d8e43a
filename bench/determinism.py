"""Reproducibility: the same inputs train to the same weights in separate processes, idle or under
load, and what determinism costs.

Each run is its own process (`--worker`): progressive (committed params) on one built-in article,
then test accuracy and a checksum of every weight. The runs: deterministic (params default) twice on
an idle machine and once beside a busy process (one core spinning); `compute.deterministic=false`
twice (the cost: fit time against the deterministic runs, interleaved with them); and one thread
instead of the default (different weights, which is why the thread count is part of the training key).

    .venv/bin/python -m bench.determinism --profile demo     # the demo's catalogue: 1,000 tops, 64 px
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from bench import common

log = logging.getLogger("bench.determinism")
# article, images, params overrides; demo = what `make demo` trains (the committed params)
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"article": "jeans", "n": 40, "set": ["model.image_size=32", "train.epochs_first=1",
                                                    "train.epochs_add=1"]},
    "quick": {"article": "tops", "n": 300, "set": ["model.image_size=32"]},
    "demo": {"article": "tops", "n": 0, "set": []},
}
# label, params overrides, background load (busy processes)
RUNS: list[tuple[str, list[str], int]] = [
    ("deterministic, idle", [], 0),
    ("not deterministic, idle", ["compute.deterministic=false"], 0),
    ("deterministic, idle (again)", [], 0),
    ("not deterministic, idle (again)", ["compute.deterministic=false"], 0),
    ("deterministic, one core busy", [], 1),
    ("deterministic, 1 thread", ["compute.threads=1"], 0),
]


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one run: JSON of overrides


def worker(args: argparse.Namespace) -> None:
    """One training in this process; prints its result as the last line (JSON)."""
    from bench.accuracy import _params, run_method
    from progattr_core.model_file import weights_digest

    prof = PROFILES[args.profile]
    extra = json.loads(args.worker)
    params = _params([*prof["set"], *args.set], prof["article"], 0, extra)
    splits = common.synth_splits(params, prof["article"], prof["n"] or params.synth.n_images, params.synth.seed)
    keep: list = []
    run = run_method("progressive", params, splits, prof["article"], 0, keep)
    print(json.dumps({"overall": run["overall"], "accuracy": run["accuracy"], "fit_s": run["fit_s"],
                      "image_passes": run["image_passes"], "weights_sha256": weights_digest(keep[0])}))


def _run_process(args: argparse.Namespace, extra: list[str], busy: int) -> dict[str, Any]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        cmd = [sys.executable, "-m", "bench.determinism", "--profile", args.profile, "--threads", str(args.threads),
               "--worker", json.dumps(extra), *(["--set", *args.set] if args.set else [])]
        out = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True, check=False)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if out.returncode != 0:
        raise SystemExit(f"worker {extra} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args, machine, started = common.start(__doc__.splitlines()[0], argv, profiles=list(PROFILES), extra=[_options])
    if args.worker is not None:
        worker(args)
        return {}
    prof = PROFILES[args.profile]
    runs: dict[str, dict[str, Any]] = {}
    for label, extra, busy in RUNS:
        runs[label] = {**_run_process(args, extra, busy), "overrides": extra, "busy_processes": busy}
        log.info("%s: overall %.4f, fit %.1f s, weights %s", label, runs[label]["overall"], runs[label]["fit_s"],
                 runs[label]["weights_sha256"][7:23])
    reference = runs[RUNS[0][0]]["weights_sha256"]
    rows = [[label, r["busy_processes"], " ".join(r["overrides"]) or "-", 100 * r["overall"], r["weights_sha256"][7:23],
             "yes" if r["weights_sha256"] == reference else "no", r["fit_s"]] for label, r in runs.items()]
    det = [r["fit_s"] for label, r in runs.items() if label.startswith("deterministic, idle")]
    nondet = [r["fit_s"] for label, r in runs.items() if label.startswith("not deterministic")]
    cost = statistics.median(det) / statistics.median(nondet)
    same = [r["weights_sha256"] == reference for label, r in runs.items() if label.startswith("deterministic") and
            "thread" not in label]
    params = common.bench_params([*prof["set"], *args.set]).to_dict()
    return common.write_results(
        "determinism", args, {"profile": prof, "overrides": args.set, "resolved": params},
        [common.table(f"progressive on {prof['article']} ({prof['n'] or params['synth']['n_images']} images), "
                      "one process per run", ["run", "busy processes", "overrides", "overall %", "weights sha256",
                                              "same weights as the first", "fit s"], rows)],
        {"fit_time_deterministic_over_not": cost},
        [common.goal("deterministic runs with equal weights (idle x2, loaded)", float(sum(same)), len(same), ">="),
         common.goal("fit time, deterministic / not (median of 2 each)", cost, 1.05)],
        ["the 1-thread run's weights differ from the 2-thread runs': the resolved thread count is part of the "
         "training key (progattr_core/determinism.py)"],
        {"runs": runs}, machine, started)


if __name__ == "__main__":
    main()
