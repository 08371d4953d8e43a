"""Catalogue scale (issue 32): wall time and peak memory of every pipeline step on synthetic catalogues of
growing size, each step in its own process (its peak RSS is its own), the growth exponent per step and
a log-log plot.

Steps, in a scratch project (a git + DVC repository, so ingest tracks the raw folder as a nightly does):

    synth      draw the built-in catalogue (setup: what a real catalogue already has)
    import     `progattr data import wide` from a table of the drawn images: check, hash, copy
    ingest     the pipeline's ingest (DVC add of the raw folder, the article's manifest)
    validate   Great Expectations' label-sparsity suite
    slice      per-attribute slices
    store      decode every image into the decode cache (all cores; and one process at the middle size)
    train      one epoch of the first progressive stage, reading the split from the cache
    evaluate   the trained model's probabilities on the test split, read from the cache
    tag        batch tagging of every image of the catalogue (tasks/tagging.tag_batch)

At the middle size the store build and tagging also run in one process, and tagging once more on a Dask
LocalCluster of two worker processes (`pipeline.dask_address`, as a cluster deployment runs it). The store
build runs 5 times each way there, alternated, and the ratio is of the medians. Every step starts with the
disk synced, and the store with its last build deleted, before its clock starts.

With `--changed 0.01`, the largest catalogue then has 1% of its images replaced (new content, same
names) and the data steps (import to slice) run again: the nightly's cost when little changed, against the
first run's, with the import and without it (ingest to slice: what the nightly flow itself runs). Three pairs,
each a first run on fresh data and the night after it (the goal is the median of the pairs' ratios: this
machine's speed drifts within minutes); then once more with nothing changed. `--steps import ingest validate
slice` runs the data steps and the nightly alone.

    .venv/bin/python -m bench.scale --profile quick     # 1,000 and 10,000 images
    .venv/bin/python -m bench.scale --profile full      # and 100,000 (about an hour on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import common

ARTICLE = "tops"
SIZES = {"smoke": [100, 400], "quick": [1_000, 10_000], "full": [1_000, 10_000, 100_000]}
DATA_STEPS = ("import", "ingest", "validate", "slice")
STEPS = ("synth", *DATA_STEPS, "store", "train", "evaluate", "tag")
DASK_TAG = "tag (Dask LocalCluster, 2 workers x 1 thread)"
# the store build at the middle size, every core and one process, alternated: one run of a few seconds that
# writes 10,000 files varies 2-3x with the disk's writeback; the ratio is of the medians
STORE_REPEATS = 5
NIGHTLY_REPEATS = 3  # nights with --changed of the images changed, each step's median reported
SMALL_DATA = ["validation.min_class_count=0", "validation.min_label_coverage=0.3"]  # the suite runs whole; no stop


# ---- the steps: each runs in a child process (`--child STEP`) and prints one JSON line ----

def _ctx(project: Path, overrides: list[str]) -> Any:
    from tasks.context import make_context

    return make_context(project / "params.yaml", ARTICLE, overrides, resolve_profile=False)


def _data_ref(project: Path) -> Any:
    from tasks.context import DataRef

    return DataRef(**json.loads((project / "outputs" / ARTICLE / "data_version.json").read_text()))


def step_synth(project: Path, n: int, overrides: list[str], workers: int | None) -> int:
    from progattr_core.data.synth import generate_catalogue

    p = _ctx(project, overrides).params()
    s = p.synth
    out = project.parent / "drawn"
    m = generate_catalogue(ARTICLE, n, out, p.taxonomy, s.image_size, s.full_label_fraction, s.label_rate,
                           s.label_noise, s.seed, p.data.split, root=out, workers=workers or 0)
    attrs = list(p.attributes(ARTICLE))
    table = m[["path", *attrs]].rename(columns={"path": "image"})
    table.to_csv(project.parent / "table.csv", index=False)
    return len(m)


def step_import(project: Path, n: int, overrides: list[str], workers: int | None) -> int:
    from progattr_core.data.import_files import new_import_run, write_index
    from progattr_core.data.importers import import_wide

    ctx = _ctx(project, overrides)
    p = ctx.params()
    run = new_import_run(ctx.path(p.data.root), "raw/catalogue", ctx.path(p.data.cache))  # as `progattr data import`
    r = import_wide(project.parent / "table.csv", project.parent / "drawn", ARTICLE, p.taxonomy,
                    ctx.path(p.data.root), run.part, p.data.split, p.data.image,
                    workers=p.data.workers if workers is None else workers, state=run.state)
    write_index(run, r.manifest)
    return len(r.manifest)


def step_ingest(project: Path, n: int, overrides: list[str], workers: int | None) -> int:
    from tasks.ingest import ingest

    return ingest(_ctx(project, overrides), "data/raw/catalogue").n_images


def step_validate(project: Path, n: int, overrides: list[str], workers: int | None) -> int:
    from tasks.ingest import validate

    ref = _data_ref(project)
    validate(_ctx(project, overrides), ref)
    return ref.n_images


def step_slice(project: Path, n: int, overrides: list[str], workers: int | None) -> int:
    from tasks.ingest import slice_data

    ref = _data_ref(project)
    slice_data(_ctx(project, overrides), ref)
    return ref.n_images


def _store_dir(ctx: Any, workers: int | None) -> Path:
    """The decode cache a store step builds (the one-process rate is measured into a cache of its own)."""
    cache = ctx.path(ctx.params().data.cache)
    return cache.with_name(cache.name + "-one-process") if workers == 1 else cache


def setup_store(project: Path, n: int, overrides: list[str], workers: int | None) -> None:
    """Before the clock: the decoded images of the last build deleted (10,000 files take seconds to delete)."""
    from progattr_core.data.images import RESIZE_TAG

    ctx = _ctx(project, overrides)
    shutil.rmtree(_store_dir(ctx, workers) / f"{RESIZE_TAG}-s{ctx.params().model.image_size}", ignore_errors=True)


def step_store(project: Path, n: int, overrides: list[str], workers: int | None) -> int:
    from progattr_core.data.arrays import build_cache
    from progattr_core.data.manifest import read_manifest

    ctx = _ctx(project, overrides)
    p, ref = ctx.params(), _data_ref(project)
    build_cache(read_manifest(ctx.path(ref.manifest)), ctx.path(ref.data_root), _store_dir(ctx, workers),
                p.model.image_size, p.data.image, p.data.workers if workers is None else workers, print)
    return ref.n_images


def step_train(project: Path, n: int, overrides: list[str], workers: int | None) -> int:
    import dataclasses

    import torch

    from progattr_core.model import build_model
    from progattr_core.model_file import save_model
    from progattr_core.schedule import build_schedule
    from progattr_core.stages import train_stage
    from tasks.training import load_split

    ctx = _ctx(project, overrides)
    p = ctx.params()
    train = load_split(ctx, _data_ref(project), "train")
    stage = dataclasses.replace(build_schedule(p, ARTICLE)[0], epochs=1)
    model = build_model(p.model, p.seed)
    result = train_stage(model, stage, train, p, p.seed, torch.device("cpu"), None, print)
    save_model(model, project.parent / "model.pt")
    return result.image_passes


def step_evaluate(project: Path, n: int, overrides: list[str], workers: int | None) -> int:
    from progattr_core.model_file import load_model
    from progattr_core.predict import predict_proba
    from tasks.training import load_split

    ctx = _ctx(project, overrides)
    test = load_split(ctx, _data_ref(project), "test")
    probs = predict_proba(load_model(project.parent / "model.pt"), test.images, ctx.params().train.batch_size)
    return len(next(iter(probs.values())))


def step_tag(project: Path, n: int, overrides: list[str], workers: int | None) -> int:
    from tasks.tagging import ChampionRef, list_catalogue, tag_parts, write_tags

    ctx = _ctx(project, overrides)
    p = ctx.params()
    champion = ChampionRef(ARTICLE, "bench", "0", str(project.parent / "model.pt"))
    source = str(project / "data" / "raw" / "catalogue")
    items = list_catalogue(source, p, str(project), ARTICLE)
    out = str(project.parent / f"tags-{workers}")
    parts = tag_parts(champion, source, items, p.data.image, None, p.serving.tag_batch_size, out,
                      p.data.workers if workers is None else workers, p.pipeline.dask_address)
    write_tags(parts, out)
    return parts.images


def child(step: str, project: Path, n: int, overrides: list[str], workers: int | None, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    import progattr_core.data.importers  # noqa: F401  (imports are not the step's time)
    import tasks.ingest  # noqa: F401
    import tasks.tagging  # noqa: F401
    import tasks.training  # noqa: F401

    if f"setup_{step}" in globals():
        globals()[f"setup_{step}"](project, n, overrides, workers)
    os.sync()  # the earlier steps' files reach the disk now, not as writeback inside this step's time
    start = time.perf_counter()
    items = globals()[f"step_{step}"](project, n, overrides, workers)
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"step": step, "seconds": seconds, "items": items, "peak_rss_mb": rss_mb}))


# ---- the driver ----

def run_step(step: str, project: Path, n: int, overrides: list[str], threads: int,
             workers: int | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.scale", "--child", step, "--project", str(project), "--n", str(n),
           "--threads", str(threads), "--set", *overrides]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    out = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{step} at n={n} failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  n={n:>7,} {step:9s}{'' if workers is None else f' (workers={workers})':13s} "
          f"{result['seconds']:8.1f} s  {result['peak_rss_mb']:7.0f} MB peak RSS", flush=True)
    return result


def tag_on_dask(project: Path, n: int, overrides: list[str], threads: int) -> dict[str, Any]:
    """The tag step with its shards on a real Dask LocalCluster on loopback (two worker processes, one thread
    each, started here), through `pipeline.dask_address` (prefect-dask), as a cluster deployment would run it;
    the step's time includes the Prefect flow that maps the shards (a temporary local Prefect server when no
    PREFECT_API_URL is set)."""
    from distributed import LocalCluster

    before = dict(os.environ)  # a LocalCluster's nannies set OMP_NUM_THREADS=1 and more in this process's environment
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster:
            return run_step("tag", project, n, [*overrides, f"pipeline.dask_address={cluster.scheduler_address}"],
                            threads)
    finally:
        os.environ.clear()
        os.environ.update(before)


def make_project(folder: Path) -> Path:
    project = folder / "project"
    project.mkdir(parents=True)
    shutil.copyfile(common.ROOT / "params.yaml", project / "params.yaml")
    for cmd in (["git", "init", "-q"], [str(Path(sys.executable).parent / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=project, check=True, capture_output=True)
    return project


def change_images(project: Path, fraction: float, seed: int = 1) -> int:
    """Replace `fraction` of the drawn images with new content under the same names (a re-shot product)."""
    from PIL import Image

    drawn = project.parent / "drawn"
    files = sorted(p for p in drawn.rglob("*") if p.suffix in (".png", ".jpg", ".jpeg"))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), max(1, round(fraction * len(files))), replace=False)
    for i in chosen:
        with Image.open(files[i]) as img:
            pixels = np.asarray(img.convert("RGB")).copy()
        pixels[0, :] = rng.integers(0, 256, pixels[0, :].shape, dtype=np.uint8)  # a visible change, same size
        Image.fromarray(pixels).save(files[i])
    return len(chosen)


def fresh_data(project: Path) -> None:
    """The project as before its first data step: imported images, the import state, DVC's cache and state, the
    validation memo and the outputs deleted (the drawn images, their table, git and DVC's config stay)."""
    for rel in ("data", "outputs", ".dvc/cache", ".dvc/tmp"):
        shutil.rmtree(project / rel, ignore_errors=True)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time, with every run's seconds (`repeats`)."""
    ranked = sorted(runs, key=lambda r: r["seconds"])
    return {**ranked[len(ranked) // 2], "repeats": [round(r["seconds"], 2) for r in runs]}


def exponent(ns: list[int], seconds: list[float]) -> float:
    """The slope of log(seconds) on log(n): 1 = linear."""
    return float(np.polyfit(np.log(ns), np.log(np.maximum(seconds, 1e-6)), 1)[0]) if len(ns) > 1 else float("nan")


def plot(results: dict[int, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for step in STEPS:
        xs = [n for n in ns if step in results[n]]
        ax1.loglog(xs, [results[n][step]["seconds"] for n in xs], "o-", label=step)
        ax2.semilogx(xs, [results[n][step]["peak_rss_mb"] for n in xs], "o-", label=step)
    ax1.set(xlabel="images in the catalogue", ylabel="seconds", title="Wall time per step")
    ax2.set(xlabel="images in the catalogue", ylabel="MB", title="Peak RSS per step (its own process)")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
        ap.add_argument("--project", help=argparse.SUPPRESS)
        ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
        ap.add_argument("--workers", type=int, default=None, help=argparse.SUPPRESS)
        ap.add_argument("--sizes", type=int, nargs="*", help="catalogue sizes (default: the profile's)")
        ap.add_argument("--changed", type=float, default=0.01,
                        help="fraction of the largest catalogue's images replaced for the nightly rerun (0: none)")
        ap.add_argument("--steps", nargs="+", choices=STEPS[1:], default=list(STEPS[1:]),
                        help="the steps to run (default: every one; synth always runs): e.g. `--steps import "
                             "ingest validate slice` for the data steps and the nightly alone")

    if argv is None and "--child" in sys.argv:
        args = common.parse_args(__doc__, None, tuple(SIZES), [options])
        return child(args.child, Path(args.project), args.n, args.set, args.workers, args.threads) or {}
    args, info, started = common.start("Catalogue scale: time and memory per step", argv, tuple(SIZES), [options])
    overrides = [*SMALL_DATA, *args.set]
    sizes = args.sizes or SIZES[args.profile]
    results: dict[int, dict[str, dict[str, Any]]] = {}
    nightly: dict[str, Any] = {}
    keep = Path(os.environ.get("PROGATTR_BENCH_SCALE_DIR") or tempfile.mkdtemp(prefix="progattr-scale-"))
    middle = sizes[-2] if len(sizes) > 1 else sizes[0]
    try:
        for n in sizes:
            folder = keep / f"n{n}"
            shutil.rmtree(folder, ignore_errors=True)
            project = make_project(folder)
            results[n] = {s: run_step(s, project, n, overrides, args.threads) for s in STEPS
                          if s == "synth" or s in args.steps}
            if n == middle and "store" in args.steps:  # the one-process rate against every core's, alternated
                runs = {"store": [results[n]["store"]], "store (one process)": []}
                for i in range(STORE_REPEATS):
                    runs["store (one process)"].append(run_step("store", project, n, overrides, args.threads, 1))
                    if i < STORE_REPEATS - 1:
                        runs["store"].append(run_step("store", project, n, overrides, args.threads))
                results[n].update({k: median_run(v) for k, v in runs.items()})
            if n == middle and "tag" in args.steps:
                results[n]["tag (one process)"] = run_step("tag", project, n, overrides, args.threads, 1)
                results[n]["tag (one process, 1 thread)"] = run_step("tag", project, n, overrides, 1, 1)
                results[n][DASK_TAG] = tag_on_dask(project, n, overrides, args.threads)
            if n == sizes[-1] and args.changed > 0 and set(DATA_STEPS) <= set(args.steps):
                # pairs of a first run and the night after it, each pair on fresh data: this machine's speed drifts
                # by up to ~1.7x within minutes, so each night is compared with a first run timed just before it
                firsts, nights = [{s: results[n][s] for s in DATA_STEPS}], []
                for night in range(NIGHTLY_REPEATS):
                    if night:
                        fresh_data(project)
                        firsts.append({s: run_step(s, project, n, overrides, args.threads) for s in DATA_STEPS})
                    nightly["changed_images"] = change_images(project, args.changed, seed=1 + night)
                    nights.append({s: run_step(s, project, n, overrides, args.threads) for s in DATA_STEPS})
                nightly["firsts"] = {s: median_run([first[s] for first in firsts]) for s in DATA_STEPS}
                nightly["steps"] = {s: median_run([night[s] for night in nights]) for s in DATA_STEPS}
                nightly["nights_seconds"] = [round(sum(r["seconds"] for r in night.values()), 2) for night in nights]
                nightly["firsts_seconds"] = [round(sum(r["seconds"] for r in first.values()), 2) for first in firsts]
                for name, steps in (("import_to_slice", DATA_STEPS), ("ingest_to_slice", DATA_STEPS[1:])):
                    nightly[f"pair_ratios_{name}"] = [round(sum(night[s]["seconds"] for s in steps)
                                                            / sum(first[s]["seconds"] for s in steps), 4)
                                                      for first, night in zip(firsts, nights, strict=True)]
                # and a night on which nothing changed: what is left is each step's walk over the catalogue
                nightly["unchanged"] = {s: run_step(s, project, n, overrides, args.threads) for s in DATA_STEPS}
            if n != sizes[-1]:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if "PROGATTR_BENCH_SCALE_DIR" not in os.environ:
            shutil.rmtree(keep, ignore_errors=True)
    return report(args, info, started, sizes, middle, results, nightly)


def report(args: argparse.Namespace, info: dict[str, Any], started: float, sizes: list[int], middle: int,
           results: dict[int, dict[str, dict[str, Any]]], nightly: dict[str, Any]) -> dict[str, Any]:
    big, ten = sizes[-1], middle
    rows, goals = [], []
    ran = [step for step in STEPS if step in results[big]]
    for step in ran:
        secs = [results[n][step]["seconds"] for n in sizes]
        per_image = [1e3 * results[n][step]["seconds"] / max(results[n][step]["items"], 1) for n in sizes]
        rows.append([step, *[round(s, 1) for s in secs], *[round(r, 3) for r in per_image],
                     *[round(results[n][step]["peak_rss_mb"]) for n in sizes], round(exponent(sizes, secs), 2)])
        if step != "synth" and big != ten:
            goals.append(common.goal(f"{step}: time per image at {big:,} / at {ten:,}", per_image[-1] /
                                     per_image[sizes.index(ten)], 1.5, "<="))
    columns = ["step", *[f"s @{n:,}" for n in sizes], *[f"ms/image @{n:,}" for n in sizes],
               *[f"peak MB @{n:,}" for n in sizes], "exponent"]
    ratios: dict[str, Any] = {}
    if "train" in ran:
        rss = ratios["train_rss_big_over_middle"] = (results[big]["train"]["peak_rss_mb"]
                                                     / results[ten]["train"]["peak_rss_mb"])
        goals.insert(0, common.goal(f"training stage peak RSS at {big:,} / at {ten:,}", rss, 1.5, "<="))
    if "store (one process)" in results[middle]:
        speedup = ratios["store_speedup_all_cores"] = (results[middle]["store (one process)"]["seconds"]
                                                       / results[middle]["store"]["seconds"])
        goals.append(common.goal(f"store build at {middle:,}: all cores / one process (rate; medians of {STORE_REPEATS} "
                                 "alternated runs each)", speedup, 1.6, ">="))
    if "tag (one process)" in results[middle]:
        one, tagged = results[middle]["tag (one process)"]["seconds"], results[middle]["tag"]["seconds"]
        ratios["tag_speedup_all_cores"] = one / tagged
        goals.append(common.goal(f"tagging at {middle:,}: all cores / one process with {args.threads} torch "
                                 "threads (rate)", one / tagged, 1.6, ">="))
        ratios["tag_pool_over_one_thread"] = (results[middle]["tag (one process, 1 thread)"]["seconds"]
                                              / tagged)  # does the pool scale at all
        ratios["tag_dask_over_one_process"] = one / results[middle][DASK_TAG]["seconds"]
    for extra in ("store (one process)", "tag (one process)", "tag (one process, 1 thread)", DASK_TAG):
        if extra not in results[middle]:
            continue
        r = results[middle][extra]
        at = [n == middle for n in sizes]
        rows.append([extra, *[round(r["seconds"], 1) if m else "" for m in at],
                     *[round(1e3 * r["seconds"] / max(r["items"], 1), 3) if m else "" for m in at],
                     *[round(r["peak_rss_mb"]) if m else "" for m in at], ""])
    tables = [common.table(f"Time and peak RSS per step, synthetic {ARTICLE} (exponent: slope of log time on "
                           "log images; 1 = linear)", columns, rows)]
    if nightly:
        tables.append(common.table(
            f"Nightly with {nightly['changed_images']:,} of {big:,} images changed: data steps again vs the first run "
            f"({NIGHTLY_REPEATS} pairs, each step's median)",
            ["step", "first run s", "changed night s", "ratio", "nothing changed s"],
            [[s, round(nightly["firsts"][s]["seconds"], 1), round(nightly["steps"][s]["seconds"], 1),
              round(nightly["steps"][s]["seconds"] / max(nightly["firsts"][s]["seconds"], 1e-9), 3),
              round(nightly["unchanged"][s]["seconds"], 1)] for s in DATA_STEPS]))
        # the goal: the median over the pairs of (night / its own first run); ingest to slice is the issue's own
        # wording (what the nightly flow runs), import to slice adds the team's import in front
        for name, label in (("import_to_slice", "nightly data steps (import..slice) with 1% changed / full run"),
                            ("ingest_to_slice", "nightly pipeline data steps (ingest..slice) with 1% changed / full run")):
            value = float(np.median(nightly[f"pair_ratios_{name}"]))
            ratios[f"nightly_{name}_over_full"] = value
            goals.append(common.goal(f"{label} (median of {NIGHTLY_REPEATS} pairs)", value, 0.1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / "scale.png")
    notes = [f"one process per step: peak RSS is that step's alone (torch and the step's imports included); "
             f"{args.threads} torch threads; data.workers=0 (every core: {os.cpu_count()})"]
    if "train" in ran:
        notes.append("train: one epoch of the first progressive stage (the images labelled for its attribute), read "
                     "from the decode cache; ms/image per image trained")
    if "store (one process)" in results[middle]:
        notes.append(f"store at {middle:,}: {STORE_REPEATS} runs each, every core and one process alternated, the "
                     "cache folder emptied and the disk synced before each, outside the clock; seconds, every core "
                     f"{results[middle]['store']['repeats']}, one process {results[middle]['store (one process)']['repeats']}"
                     "; the table shows each one's median run")
    if "tag (one process)" in results[middle]:
        notes += ["tag: the tagging flow's parts (tasks/tagging.tag_parts + write_tags) over every image: read, "
                  "decode, resize, predict, write; one process = one worker with the torch threads of the run (the "
                  "goal's baseline: torch already spreads a batch over every core); 'one process, 1 thread' shows "
                  "how the pool itself scales (ratios.tag_pool_over_one_thread)",
                  f"{DASK_TAG}: the tag step with its shards mapped over a Dask LocalCluster on loopback through "
                  "pipeline.dask_address (prefect-dask), the Prefect flow that maps them included"]
    if nightly:
        notes.append(f"nightly: {NIGHTLY_REPEATS} pairs, each a first run of the data steps on fresh data (the "
                     "project's data, DVC cache and outputs deleted; the first pair's is the table above) and the night "
                     "after it, with other images re-drawn under the same names, labels unchanged; data steps per "
                     f"first run {nightly['firsts_seconds']} s, per night {nightly['nights_seconds']} s; pair ratios "
                     f"import..slice {nightly['pair_ratios_import_to_slice']}, ingest..slice "
                     f"{nightly['pair_ratios_ingest_to_slice']}; validate reuses the last report when the checked "
                     "content is the same (tasks/validation.py), which a label change would not be")
    notes.append(f"plot: {out / 'scale.png'}")
    options = "".join([f" --sizes {' '.join(map(str, args.sizes))}" if args.sizes else "",
                       f" --changed {args.changed:g}" if args.changed != 0.01 else "",
                       f" --steps {' '.join(args.steps)}" if list(args.steps) != list(STEPS[1:]) else ""])
    return common.write_results("scale", args, {"sizes": sizes, "overrides": args.set}, tables, ratios, goals,
                                notes, {"results": {str(n): r for n, r in results.items()}, "nightly": nightly},
                                info, started, options=options)


if __name__ == "__main__":
    main()
