"""Calibrate the synthetic catalogue: the product's individual baseline (one ResNet-18 per attribute,
from scratch, params' schedule and baseline epochs: exactly what `make demo` trains) on each article,
printing test accuracy per attribute and the mean. Prints numbers; asserts nothing.

    .venv/bin/python bench/calibrate_synth.py --profile full   # the README's numbers (~10 min on 2 cores)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from progattr_core.baselines import train_one_individual
from progattr_core.config import load_params
from progattr_core.data.arrays import load_images
from progattr_core.data.synth import generate_catalogue
from progattr_core.train import LabelledImages, accuracy_on

PROFILES = {  # images per article, articles
    "smoke": (300, ("jeans",)),
    "quick": (1200, ("tops", "dresses", "jeans")),  # ~840 training images: a lower bound of "full"
    "full": (3400, ("tops", "dresses", "jeans")),  # ~2,400 training images: the demo's catalogue and budget
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", choices=PROFILES, default="quick")
    ap.add_argument("--articles", nargs="*")
    ap.add_argument("--attributes", nargs="*", help="only these attributes (quick iteration on one knob)")
    ap.add_argument("--set", nargs="*", default=[], help="params overrides, e.g. baselines.epochs=10 "
                                                         "synth.label_noise=0.05")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on an oversubscribed machine)")
    args = ap.parse_args(argv)
    n, articles = PROFILES[args.profile]
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", args.set)
    torch.set_num_threads(args.threads)
    s = params.synth
    with tempfile.TemporaryDirectory() as tmp:
        for article in args.articles or articles:
            t0 = time.time()
            m = generate_catalogue(article, n, tmp, params.taxonomy, s.image_size, s.full_label_fraction,
                                   s.label_rate, s.label_noise, s.seed, params.data.split)
            attrs = list(params.attributes(article))
            classes = {a: list(params.attributes(article)[a]) for a in attrs}
            data = {split: LabelledImages.from_arrays(*load_images(m, tmp, Path(tmp) / "cache", params.model.image_size,
                                                                   attrs, split)[:2], attrs, classes)
                    for split in ("train", "val", "test")}
            test, accs = data["test"], {}
            for attr in attrs:
                if args.attributes and attr not in args.attributes:
                    continue
                model, _ = train_one_individual(params, data["train"], attr, "cpu", data["val"])
                accs[attr] = accuracy_on(model, test, [attr], torch.device("cpu"))[attr]
                print(f"  {article:8s} {attr:14s} classes={len(classes[attr]):2d} "
                      f"train={int((data['train'].column(attr) >= 0).sum()):5d} "
                      f"test={int((test.column(attr) >= 0).sum()):4d} "
                      f"acc={accs[attr]:.3f}", flush=True)
            print(f"{article}: mean accuracy {np.mean(list(accs.values())):.3f} over {len(accs)} attributes "
                  f"({len(data['train'])} train images, {params.baselines.epochs} epochs, {time.time() - t0:.0f}s)",
                  flush=True)


if __name__ == "__main__":
    main()
