"""Calibrate the synthetic catalogue: the individual baseline (one ResNet-18 per attribute, from scratch)
on each article, printing test accuracy per attribute and the mean. Prints numbers; asserts nothing.

    .venv/bin/python bench/calibrate_synth.py --profile full   # the README's numbers (~15-25 min on 2 cores)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from progattr_core.config import load_params
from progattr_core.data.arrays import load_arrays
from progattr_core.data.synth import generate_catalogue

PROFILES = {  # images per article, epochs, articles
    "smoke": (300, 1, ("jeans",)),
    "quick": (1200, 2, ("tops", "dresses", "jeans")),  # ~840 training images: a lower bound of "full"
    "full": (3400, 3, ("tops", "dresses", "jeans")),  # ~2400 training images, the demo budget
}


def train_eval(x_tr, y_tr, x_te, y_te, classes: int, epochs: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=classes)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def prep(x: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(x).float() / 255 - mean) / std

    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x_tr), generator=gen).split(64):
            xb = prep(x_tr[idx.numpy()])
            flip = torch.rand(len(xb), generator=gen) < 0.5
            xb[flip] = xb[flip].flip(-1)
            loss = torch.nn.functional.cross_entropy(model(xb), torch.from_numpy(y_tr[idx.numpy()]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(prep(x_te[i:i + 256])).argmax(1) for i in range(0, len(x_te), 256)])
    return float((pred.numpy() == y_te).mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", choices=PROFILES, default="quick")
    ap.add_argument("--articles", nargs="*")
    ap.add_argument("--set", nargs="*", default=[], help="params overrides, e.g. synth.label_noise=0.05")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on an oversubscribed machine)")
    args = ap.parse_args(argv)
    n, epochs, articles = PROFILES[args.profile]
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", args.set)
    torch.set_num_threads(args.threads)
    s = params.synth
    with tempfile.TemporaryDirectory() as tmp:
        for article in args.articles or articles:
            t0 = time.time()
            m = generate_catalogue(article, n, tmp, params.taxonomy, s.image_size, s.full_label_fraction,
                                   s.label_rate, s.label_noise, s.seed, params.data.split)
            attrs = list(params.attributes(article))
            x_tr, y_tr, _ = load_arrays(m, tmp, Path(tmp) / "cache", s.image_size, attrs, "train")
            x_te, y_te, _ = load_arrays(m, tmp, Path(tmp) / "cache", s.image_size, attrs, "test")
            accs = {}
            for j, attr in enumerate(attrs):
                tr, te = y_tr[:, j] >= 0, y_te[:, j] >= 0
                accs[attr] = train_eval(x_tr[tr], y_tr[tr, j], x_te[te], y_te[te, j],
                                        len(params.attributes(article)[attr]), epochs, s.seed)
                print(f"  {article:8s} {attr:14s} classes={len(params.attributes(article)[attr]):2d} "
                      f"train={int(tr.sum()):5d} test={int(te.sum()):4d} acc={accs[attr]:.3f}", flush=True)
            print(f"{article}: mean accuracy {np.mean(list(accs.values())):.3f} over {len(attrs)} attributes "
                  f"({len(x_tr)} train images, {epochs} epochs, {time.time() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
