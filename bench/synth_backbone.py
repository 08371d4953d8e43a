"""A Base pretrained on other built-in articles, for the built-in catalogue (issue 17, part 1).

Trains the pretraining flow's network and loss (the masked multi-task network of `progattr pretrain`:
`multilabel_spec` + `fit`) on the built-in catalogues of `--articles` (default: dresses and jeans),
one head per `<article>.<attribute>`, and writes it as a backbone file with its lineage (every
image's content hash, so the leakage check of a later run can refuse it) for `model.init`. The
generated article's own images are never in it. Then compare on the article left out, e.g.:

    .venv/bin/python -m bench.synth_backbone --profile full
    .venv/bin/python -m bench.stages --profile full --article tops --n 3000 \\
        --set model.init=data/bench/backbone-synth-dresses-jeans-n3000-px64.pt --references individual,progressive \\
        --variant profile=pretrained

`progattr pretrain` reads a Kaggle-layout catalogue; the built-in articles are not one, hence this
script (the same model, loss, fit loop and lineage format).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench import common

log = logging.getLogger("bench.synth_backbone")
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"n": 40, "set": ["model.image_size=32", "pretrain.epochs=1"]},
    "quick": {"n": 300, "set": ["model.image_size=32"]},
    "full": {"n": 3000, "set": []},
}


def _options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--articles", nargs="+", default=["dresses", "jeans"], help="built-in articles to pretrain on")
    ap.add_argument("--n", type=int, default=None, help="images per article (default: the profile's)")
    ap.add_argument("--backbone", default=None, help="where the backbone file goes (default: data/bench/"
                                                     "backbone-synth-<articles>-n<N>-px<size>.pt)")


def merged(parts: dict[str, Any], split: str) -> Any:
    """One LabelledImages of every article's `split`: heads `<article>.<attribute>`, each image
    labelled only for its own article's attributes (-1 elsewhere: masked out of the loss)."""
    from progattr_core.train import LabelledImages

    heads = [f"{art}.{a}" for art, s in parts.items() for a in s[split].attributes]
    classes = {f"{art}.{a}": s[split].classes[a] for art, s in parts.items() for a in s[split].attributes}
    images, labels, col = [], [], 0
    for s in parts.values():
        d = s[split]
        block = np.full((len(d), len(heads)), -1, dtype=np.int64)
        block[:, col:col + len(d.attributes)] = d.labels.numpy()
        col += len(d.attributes)
        images.append(d.images.numpy())
        labels.append(block)
    return LabelledImages.from_arrays(np.concatenate(images), np.concatenate(labels), heads, classes)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import torch

    from progattr_core.baselines import multilabel_spec
    from progattr_core.data.synth import ensure_catalogue
    from progattr_core.model_file import save_model
    from progattr_core.pretrain import lineage, write_lineage
    from progattr_core.train import fit

    args, machine, started = common.start(__doc__.splitlines()[0], argv, profiles=tuple(PROFILES), extra=[_options])
    prof = PROFILES[args.profile]
    params = common.bench_params([*prof["set"], *args.set])
    n = args.n or prof["n"]
    parts, manifests = {}, []
    for art in args.articles:
        out_dir = common.DATA / f"synth-{art}-n{n}-seed{params.synth.seed}-px{params.synth.image_size}"
        manifest, _ = ensure_catalogue(params, art, out_dir, n=n, seed=params.synth.seed)
        parts[art] = common.manifest_splits(params, manifest, out_dir, art)
        manifests.append(manifest)
    train, val = merged(parts, "train"), merged(parts, "val")
    log.info("pretraining on %s: %d training images, %d heads", "+".join(args.articles), len(train),
             len(train.attributes))
    model, spec = multilabel_spec(params, train, True, attributes=train.attributes, epochs=params.pretrain.epochs,
                                  name="pretrain")
    result = fit(model, spec, train, params, torch.device("cpu"), val, log.info)
    path = args.backbone or common.DATA / (f"backbone-synth-{'-'.join(args.articles)}-n{n}-"
                                           f"px{params.model.image_size}.pt")
    save_model(model, path)
    seen = pd.concat(manifests, ignore_index=True)
    source = f"built-in catalogue {args.articles}, {n} images each"
    # the pretraining flow's lineage format; no Kaggle columns or article types were involved here
    write_lineage(path, {**lineage(seen, params, source, {h: tuple(c) for h, c in train.classes.items()}),
                         "excluded_article_types": [], "columns": {}, "seconds": round(result.seconds, 1)})
    log.info("backbone written to %s (%.0f s)", path, result.seconds)
    rows = [[e + 1, result.epoch_losses[e], 100 * result.val_scores[e] if result.val_scores else None]
            for e in range(len(result.epoch_losses))]
    tables = [common.table(f"pretraining on {'+'.join(args.articles)} ({len(train)} training images)",
                           ["epoch", "loss", "validation mean head accuracy %"], rows)]
    return common.write_results("synth_backbone", args, {"overrides": [*prof["set"], *args.set], "n": n,
                                                         "articles": args.articles},
                                tables, {}, [], [f"backbone: {path}"],
                                {"backbone": str(path), "seconds": result.seconds,
                                 "image_passes": result.image_passes, "n_train": len(train),
                                 "heads": {h: len(c) for h, c in train.classes.items()},
                                 "fit": json.loads(json.dumps(result.to_dict(), default=str))},
                                machine, started)


if __name__ == "__main__":
    main()
