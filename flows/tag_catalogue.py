"""Batch tagging: fill in a catalogue's missing attributes with the champion model of an article.

Scores a folder, an S3 prefix, or (`--source manifest`) the manifest's unlabelled cells, batch by
batch, and writes <serving.tag_output>/<article>/tags.parquet + tags.csv (the accepted answers:
image, sha256, attribute, label, probability, model name and version), review.csv (the answers below
their attribute's calibrated threshold, least sure first, with the top-3) and rejects.csv (images that
could not be decoded).

Images are tagged in shards on `data.workers` processes, or with `pipeline.dask_address` on that Dask
cluster's workers (prefect-dask; a worker lost mid-run has its shards rerun on the others); each shard's
answers are a part file written whole, so a run killed halfway and started again with the same model and source keeps the parts it
wrote and tags only the rest.
"""

from __future__ import annotations

import os
import tempfile

from prefect import flow

from tasks.context import make_context, task_logger
from tasks.tagging import (
    MANIFEST_SOURCE,
    fetch_champion_task,
    list_catalogue_task,
    tag_parts_task,
    write_tags_task,
)


@flow(name="progattr-tag-catalogue")
def tag_catalogue_flow(source: str, article: str = "tops", params_path: str = "params.yaml",
                       overrides: list[str] | None = None, only_missing: bool = False,
                       output: str | None = None) -> dict:
    """Tag every image of `source` (folder, s3://bucket/prefix or 'manifest') with `article`'s champion."""
    log = task_logger()
    ctx = make_context(params_path, article, overrides or [], resolve_profile=False)
    params = ctx.params()
    labelled = str(ctx.path(params.data.manifest)) if only_missing and source != MANIFEST_SOURCE else None
    out_dir = output or str(ctx.path(params.serving.tag_output) / article)
    os.makedirs(out_dir, exist_ok=True)  # the model is downloaded beside the output: Dask workers reach both
    with tempfile.TemporaryDirectory(prefix=".model-", dir=out_dir) as tmp:
        champion = fetch_champion_task(ctx.store, article, params.serving.alias, tmp)
        items = list_catalogue_task(source, params, ctx.root, article)
        parts = tag_parts_task(champion, source, items, params.data.image, labelled, params.serving.tag_batch_size,
                               out_dir, params.data.workers, params.pipeline.dask_address)
    written = write_tags_task(parts, out_dir)
    summary = {"model": champion.name, "version": champion.version, "images": len(items), **written,
               "parts_reused": parts.reused}
    log.info("tagged %(images)d images with %(model)s v%(version)s: %(rows)d tags accepted, %(review)d answers "
             "to review, %(rejected)d images rejected", summary)
    return summary
