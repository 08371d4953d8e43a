"""Synthetic catalogue generation speed: images/s writing N garment JPEGs (+ the manifest) at 64 px.

    .venv/bin/python bench/bench_synth.py --profile full     # 10,000 images (the issue's target: < 60 s)
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from progattr_core.config import load_params  # noqa: E402
from progattr_core.data.synth import generate_catalogue  # noqa: E402

PROFILES = {"smoke": 150, "quick": 2000, "full": 10000}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the worker pool)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=PROFILES, default="quick")
    ap.add_argument("--article", default="dresses", help="dresses (7 attributes) is the most expensive to draw")
    ap.add_argument("--workers", type=int, default=0, help="processes (default 0: every core from 400 images)")
    args = ap.parse_args(argv)
    p = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    s, n = p.synth, PROFILES[args.profile]
    with tempfile.TemporaryDirectory() as tmp:
        t0, cpu0 = time.perf_counter(), _cpu()
        m = generate_catalogue(args.article, n, tmp, p.taxonomy, s.image_size, s.full_label_fraction, s.label_rate,
                               s.label_noise, s.seed, p.data.split, workers=args.workers)
        dt, cpu = time.perf_counter() - t0, _cpu() - cpu0
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*.jpg"))
    print(f"bench_synth profile={args.profile} article={args.article} n={len(m)} size={s.image_size}px "
          f"cores={os.cpu_count()} load_avg_1m={os.getloadavg()[0]:.1f}")
    print(f"  {dt:.1f} s, {len(m) / dt:.0f} images/s, {size / len(m) / 1024:.1f} KiB/image; "
          f"10,000 images would take {10000 / (len(m) / dt):.0f} s")
    print(f"  CPU {1000 * cpu / len(m):.1f} ms/image (all processes): on 2 otherwise idle cores ~{2 * len(m) / cpu:.0f} "
          f"images/s, 10,000 in ~{10000 * cpu / len(m) / 2:.0f} s")


if __name__ == "__main__":
    main()
