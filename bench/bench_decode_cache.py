"""Decode-cache speed: images/s loading a manifest through load_images with a cold cache (decode +
write), a warm cache (read bytes), and decoding every image without any cache.

    .venv/bin/python bench/bench_decode_cache.py --profile full
    .venv/bin/python bench/bench_decode_cache.py --profile quick --kaggle   # real 60x80 JPEGs (../shared)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from progattr_core.config import load_params  # noqa: E402
from progattr_core.data.arrays import _PARALLEL_FROM, decode_to_array, load_images  # noqa: E402
from progattr_core.data.kaggle import import_kaggle  # noqa: E402
from progattr_core.data.synth import generate_catalogue  # noqa: E402
from progattr_core.parallel import resolve_workers  # noqa: E402

PROFILES = {"smoke": 150, "quick": 2000, "full": 10000}
KAGGLE = REPO.parent / "shared" / "datasets" / "fashion-product-images-small"


def _catalogue(p, n: int, root: Path, kaggle: bool):
    if kaggle:
        m = import_kaggle(KAGGLE, "topwear", p.imports.kaggle["topwear"], p.taxonomy, root, "raw/kaggle",
                          p.data.split, p.data.image).manifest
        return m.iloc[:n].reset_index(drop=True), "topwear"
    s = p.synth
    return generate_catalogue("tops", n, root, p.taxonomy, s.image_size, s.full_label_fraction, s.label_rate,
                              s.label_noise, s.seed, p.data.split), "tops"


def _rate(label: str, n: int, fn, pooled: bool = False) -> np.ndarray:
    """Time `fn`; its CPU per image only when it ran in this process (a pool's workers are the forkserver's
    children, whose CPU this process's clocks never see)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_core = ("in worker processes, not measured" if pooled else
                f"CPU {1e6 * cpu / n:6.0f} us/image = {n / max(cpu, 1e-9):8.0f} images/s per core")
    print(f"  {label:40s} {dt:7.2f} s wall {n / dt:8.0f} images/s | {per_core}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=PROFILES, default="quick")
    ap.add_argument("--kaggle", action="store_true", help="use the shared Kaggle catalogue's topwear images")
    ap.add_argument("--workers", type=int, default=0, help="decoding processes (default 0: every core from 512 images)")
    args = ap.parse_args(argv)
    p = load_params(REPO / "params.yaml")
    size = p.model.image_size
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        m, article = _catalogue(p, PROFILES[args.profile], root, args.kaggle)
        attrs, n = list(p.attributes(article)), len(m)
        print(f"bench_decode_cache profile={args.profile} source={'kaggle' if args.kaggle else 'synth'} n={n} "
              f"size={size}px cores={os.cpu_count()} load_avg_1m={os.getloadavg()[0]:.1f}")
        rows = list(zip(m["path"], m["sha256"], strict=True))
        plain = _rate("no cache (decode every image)", n,
                      lambda: np.stack([decode_to_array(root, r, h, size, p.data.image) for r, h in rows]))
        def load() -> np.ndarray:
            return load_images(m, root, root / "cache", size, attrs, None, workers=args.workers)[0][:].numpy()

        cold = _rate("load_images, cold cache (decode+write)", n, load,
                     pooled=resolve_workers(args.workers, n, _PARALLEL_FROM) > 1)
        warm = _rate("load_images, warm cache", n, load)
        assert np.array_equal(plain, cold) and np.array_equal(cold, warm), "cache differs from decoding"
        print(f"  cached arrays equal fresh decoding; {warm.nbytes / 2**20:.1f} MiB of uint8")


if __name__ == "__main__":
    main()
