"""Synthetic catalogue generation speed: images/s writing N garment JPEGs (+ the manifest) at 64 px.

    .venv/bin/python bench/bench_synth.py --profile full     # 10,000 images (the issue's target: < 60 s)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from progattr_core.config import load_params  # noqa: E402
from progattr_core.data.synth import generate_catalogue  # noqa: E402

PROFILES = {"smoke": 150, "quick": 2000, "full": 10000}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=PROFILES, default="quick")
    ap.add_argument("--article", default="dresses", help="dresses (7 attributes) is the most expensive to draw")
    ap.add_argument("--workers", type=int, default=0, help="processes (default 0: every core from 400 images)")
    args = ap.parse_args(argv)
    p = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    s, n = p.synth, PROFILES[args.profile]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = generate_catalogue(args.article, n, tmp, p.taxonomy, s.image_size, s.full_label_fraction, s.label_rate,
                               s.label_noise, s.seed, p.data.split, workers=args.workers)
        dt = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*.jpg"))
    print(f"bench_synth profile={args.profile} article={args.article} n={len(m)} size={s.image_size}px "
          f"cores={os.cpu_count()} load_avg_1m={os.getloadavg()[0]:.1f}")
    print(f"  {dt:.1f} s, {len(m) / dt:.0f} images/s, {size / len(m) / 1024:.1f} KiB/image; "
          f"10,000 images would take {10000 / (len(m) / dt):.0f} s")


if __name__ == "__main__":
    main()
