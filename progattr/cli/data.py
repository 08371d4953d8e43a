"""`progattr data ...` (synthetic catalogue, imports, slices) and `progattr pretrain`."""

from __future__ import annotations

import argparse
from pathlib import Path

from progattr_core.errors import ProgattrError

from .common import common_parent, load, only, print_json, quiet_tool_logs, under_root

# ---------------------------------------------------------------- data


def add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    common = common_parent()
    data = subparsers.add_parser("data", help="build the manifest: synthetic catalogue, imports, slices")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="{synth,import,slice}")

    synth = sub.add_parser("synth", parents=[common], help="generate the built-in synthetic catalogue")
    synth.add_argument("--article", required=True, help="dresses | tops | jeans")
    synth.add_argument("--n", type=int, help="number of images (default: synth.n_images)")
    synth.add_argument("--out", default=None, help="output folder inside the data root (default: <data.raw>/synth)")
    synth.add_argument("--manifest", default=None,
                       help="also add the images to this manifest (paths relative to data.root), e.g. data/manifest.parquet")
    synth.set_defaults(handler=_data_synth)

    imp = sub.add_parser("import", help="import a real catalogue into the manifest")
    kinds = imp.add_subparsers(dest="import_kind", required=True, metavar="{wide,long,kaggle,folder}")
    for kind, text in (("wide", "a table with one row per image and one column per attribute"),
                       ("long", "a table of (image, attribute, value[, annotator]) rows"),
                       ("kaggle", "the Kaggle Fashion Product Images layout (styles.csv + images/)"),
                       ("folder", "an image tree <folder>/<class>/<image> labelling one attribute")):
        p = kinds.add_parser(kind, parents=[common], help=text, description=text)
        if kind in ("wide", "long"):
            p.add_argument("--table", required=True, help="CSV or parquet file")
            p.add_argument("--images", required=True, help="folder the table's image paths are relative to")
        else:
            p.add_argument("--folder", required=True)
        p.add_argument("--article", required=kind != "kaggle", help="taxonomy article (kaggle: default all in imports.kaggle)")
        if kind == "folder":
            p.add_argument("--attribute", required=True)
        p.add_argument("--dest", default=None, help="the import folder, relative to the data root (default: "
                       "<raw>/<name>): each run copies what it found new or changed into <dest>/parts/<part>/ and "
                       "writes <dest>/index/manifest.parquet")
        p.add_argument("--manifest", default=None,
                       help="also add the rows to this manifest (paths relative to data.root), e.g. data/manifest.parquet")
        p.add_argument("--rejects", default=None, help="rejects CSV (default: data.rejects)")
        p.add_argument("--recheck", action="store_true",
                       help="check and hash every image again, even those unchanged (size and mtime) since the "
                            "last import into --dest")
        p.set_defaults(handler=_data_import)

    sl = sub.add_parser("slice", parents=[common], help="per-attribute labelled rows and class counts per split")
    sl.add_argument("--article", required=True)
    sl.add_argument("--manifest", default=None, help="default: data.manifest")
    sl.add_argument("--out", default=None, help="default: data.slices")
    sl.set_defaults(handler=_data_slice)


def _save_manifest(new, manifest_path: str | None, taxonomy) -> str:
    """Merge `new` into the manifest at `manifest_path` (if one is asked for); a line saying what was written."""
    from progattr_core.data.manifest import merge_manifests, read_manifest, write_manifest

    if not manifest_path:
        return ""
    path = Path(manifest_path)
    merged = merge_manifests(read_manifest(path, taxonomy), new, taxonomy) if path.exists() else new
    write_manifest(merged, path)
    return f"; manifest {path}: {len(merged)} rows"


def _data_synth(args: argparse.Namespace) -> int:
    from progattr_core.data.synth import generate_catalogue

    p = load(args)
    s = p.synth
    out = Path(args.out or Path(p.data.raw) / "synth")
    manifest = generate_catalogue(args.article, args.n or s.n_images, out, p.taxonomy, s.image_size,
                                  s.full_label_fraction, s.label_rate, s.label_noise, s.seed, p.data.split,
                                  root=p.data.root)
    saved = _save_manifest(manifest, args.manifest, p.taxonomy)
    print(f"{len(manifest)} synthetic {args.article} images and their manifest under {out / args.article}{saved}")
    return 0


def _data_import(args: argparse.Namespace) -> int:
    from progattr_core.data import importers, kaggle
    from progattr_core.data.import_files import apply_reviews, new_import_run, write_index

    p = load(args)
    name = Path(getattr(args, "table", None) or args.folder).stem
    run = new_import_run(p.data.root, args.dest or under_root(Path(p.data.raw) / name, Path(p.data.root)),
                           p.data.cache, args.recheck)
    common = {"taxonomy": p.taxonomy, "root": p.data.root, "split": p.data.split, "limits": p.data.image,
              "workers": p.data.workers, "state": run.state, "dest": run.part}
    article = args.article
    if args.import_kind == "wide":
        result = importers.import_wide(args.table, args.images, args.article, **common)
    elif args.import_kind == "long":
        result = importers.import_long(args.table, args.images, args.article, **common)
    elif args.import_kind == "folder":
        result = importers.import_folder(args.folder, args.article, args.attribute, **common)
    else:
        article = args.article or only(list(p.imports.kaggle), "imports.kaggle articles")
        if article not in p.imports.kaggle:
            raise ProgattrError(f"article {article!r} has no mapping in imports.kaggle {list(p.imports.kaggle)}")
        result = kaggle.import_kaggle(args.folder, article, p.imports.kaggle[article], **common)
    rejects = result.write_rejects(args.rejects or p.data.rejects)
    manifest, reviewed = apply_reviews(result.manifest, run.reviews, p.attributes(article))
    index, copied = write_index(run, manifest)
    saved = _save_manifest(manifest, args.manifest, p.taxonomy)
    print(result.summary_text())
    if reviewed:
        print(f"labels people gave ({run.reviews}) kept over the table's: {reviewed}")
    print(f"{copied} new or changed images copied into {run.part}" if copied else "no new or changed images")
    print(f"rejects: {rejects} ({len(result.rejects)} lines); source manifest {index}{saved}")
    return 0


def _data_slice(args: argparse.Namespace) -> int:
    from progattr_core.data.manifest import read_manifest
    from progattr_core.data.slicing import slice_by_attribute

    p = load(args)
    manifest = read_manifest(args.manifest or p.data.manifest, p.taxonomy)
    summary = slice_by_attribute(manifest, args.article, p.attributes(args.article), args.out or p.data.slices)
    for attr, counts in summary["attributes"].items():
        print(f"{args.article}.{attr}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


# ---------------------------------------------------------------- pretrain


def add_pretrain_parser(subparsers: argparse._SubParsersAction) -> None:
    pre = subparsers.add_parser("pretrain", parents=[common_parent()],
                                help="pretrain a Base on a densely labelled catalogue (params `pretrain:`), register it "
                                "as a version of progattr-backbone, for model.init")
    pre.add_argument("--out", default=None, help="also copy the backbone to this file (its lineage, every image's "
                     "content hash, goes beside it as <out>.lineage.json), e.g. for --set model.init=<out>")
    pre.add_argument("--source", default=None, help="Kaggle-layout folder (default: pretrain.source)")
    pre.add_argument("--json", action="store_true", help="print the result as JSON")
    pre.set_defaults(handler=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    """The pretraining flow: import the catalogue (minus the excluded article types), train the masked
    multi-task network with a checkpoint per epoch in MLflow (a rerun resumes), register the backbone."""
    quiet_tool_logs()
    from flows.pretrain import pretrain_flow

    source = str(Path(args.source).resolve()) if args.source else None
    out = str(Path(args.out).resolve()) if args.out else None
    result = pretrain_flow(args.params, args.overrides, out, source)
    if args.json:
        print_json(result)
        return 0
    run, data = result["run"], result["data"]
    how = f"trained in {run['seconds']:.0f}s" if run["trained_now"] else "reused from an earlier run"
    if run["resumed_from_epoch"]:
        how += f", resumed after epoch {run['resumed_from_epoch']}"
    print(f"backbone {result['uri']}: {data['n_images']} images of {len(data['article_types'])} article types "
          f"(excluded: {', '.join(load(args).pretrain.exclude_article_types)}), data version "
          f"{data['data_version']}; {how}")
    print(f"start a training from it with --set model.init={result['uri']}" + (f" (or model.init={out})" if out else ""))
    return 0
