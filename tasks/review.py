"""The review loop: the answers a model is least sure of go to people, and their labels come back.

`progattr tag` writes review.csv: every answer below its attribute's calibrated threshold, least sure
first. `export_review` turns the next N of them into a contact sheet: `sheet.html`, one self-contained
page (thumbnails inlined, no script, nothing fetched) that any browser opens offline, and
`labels.csv`, the long-format table (image, attribute, value, annotator + what the model said) a
person fills in any spreadsheet. No labelling server to run or secure; the CSV is the format the data
importers already read. `import_review` takes the filled table back: each value is checked against
the attribute's vocabulary, matched to the source catalogue's images by content hash, and written into
that catalogue's manifest, with a line per label in `reviews.csv` beside it (who, when, what it
replaced). The next nightly run sees a new data version (the manifest changed) and retrains on it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from progattr_core.config import ImageParams, Params
from progattr_core.data.images import ImageRejected, read_image_bytes
from progattr_core.data.import_files import REVIEWS
from progattr_core.data.importers import REJECT_COLUMNS, ImportLog, long_labels, normalise
from progattr_core.data.manifest import read_manifest, write_manifest
from progattr_core.errors import DataValidationError
from tasks import s3_images
from tasks.ingest import source_manifest

QUEUE_COLUMNS = ("image", "location", "sha256", "attribute", "label", "probability", "threshold", "margin", "top_k")
LABEL_COLUMNS = ["item", "image", "sha256", "attribute", "value", "annotator", "options", "model_top_k"]
THUMB = 128


def _thumbnail(location: str, limits: ImageParams) -> str:
    """A PNG data URI of the image, at most THUMB pixels a side; "" when it cannot be read."""
    try:
        data = (s3_images.read_object(location, limits.max_bytes) if location.startswith("s3://")
                else read_image_bytes(location, limits))
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            img.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
    except (ImageRejected, OSError, ValueError):
        return ""
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def export_review(queue: str | Path, n: int, out_dir: str | Path, article: str, params: Params) -> dict[str, Any]:
    """The queue's first `n` items (least sure first) as out_dir/sheet.html + out_dir/labels.csv."""
    queue = Path(queue)
    if not queue.is_file():
        raise DataValidationError(f"no review queue at {queue}: run `progattr tag --article {article} --source ...` "
                                  "first (it writes review.csv beside tags.csv)")
    df = pd.read_csv(queue, dtype={"model_version": str})
    missing = [c for c in QUEUE_COLUMNS if c not in df.columns]
    if missing:
        raise DataValidationError(f"{queue}: not a review queue written by `progattr tag` (no columns {missing})")
    if n < 1:
        raise DataValidationError(f"--n {n}: export at least one item")
    vocab = params.attributes(article)
    items = df.head(n).reset_index(drop=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = pd.DataFrame({"item": range(1, len(items) + 1), "image": items["image"], "sha256": items["sha256"],
                           "attribute": items["attribute"], "value": "", "annotator": "",
                           "options": ["|".join(vocab.get(a, ())) for a in items["attribute"]],
                           "model_top_k": items["top_k"]}, columns=LABEL_COLUMNS)
    tmp = out / ".labels.csv.tmp"
    labels.to_csv(tmp, index=False)
    os.replace(tmp, out / "labels.csv")
    rows = [_sheet_row(i + 1, rec, params.data.image) for i, rec in enumerate(items.to_dict("records"))]
    (out / "sheet.html").write_text(_SHEET.format(article=html.escape(article), n=len(items), total=len(df),
                                                  queue=html.escape(str(queue)), rows="\n".join(rows),
                                                  command=html.escape(f"progattr review import --article {article} "
                                                                      f"--table {out / 'labels.csv'}")))
    return {"items": len(items), "queue": len(df), "sheet": str(out / "sheet.html"), "labels": str(out / "labels.csv")}


def _sheet_row(item: int, rec: dict, limits: ImageParams) -> str:
    thumb = _thumbnail(str(rec["location"]), limits)
    img = f'<img src="{thumb}" alt="image {item}">' if thumb else "<em>image unreadable</em>"
    top = "".join(f"<li>{html.escape(str(lab))} <span>{100 * float(p):.0f}%</span></li>"
                  for lab, p in json.loads(rec["top_k"]))
    return (f'<tr><td class="n">{item}</td><td>{img}</td><td><b>{html.escape(str(rec["attribute"]))}</b><br>'
            f'<small>{html.escape(str(rec["image"]))}</small></td><td><ol>{top}</ol><small>threshold '
            f'{100 * float(rec["threshold"]):.0f}%</small></td></tr>')


_SHEET = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>progattr review: {article}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }}
td {{ border-top: 1px solid #ccc; padding: 6px 12px; vertical-align: top; }}
td.n {{ font-size: 1.4em; font-weight: bold; }}
img {{ max-width: {thumb}px; max-height: {thumb}px; image-rendering: pixelated; }}
ol {{ margin: 0; padding-left: 1.2em; }} li span {{ color: #666; }}
code {{ background: #f3f3f3; padding: 1px 4px; }}
</style></head><body>
<h1>Review: {article}, {n} of {total} answers the model is least sure of</h1>
<p>For each numbered item, fill <code>value</code> (one of <code>options</code>) and <code>annotator</code> on the
same <code>item</code> row of <code>labels.csv</code>; leave <code>value</code> empty to skip. The model's own top-3
is beside each image. Then: <code>{command}</code></p>
<p><small>queue: {queue}</small></p>
<table>
{rows}
</table></body></html>
""".replace("{thumb}", str(THUMB))


def import_review(table: str | Path, source: str | Path, article: str, params: Params) -> dict[str, Any]:
    """The filled labels.csv into the manifest of `source` (the catalogue folder the pipeline ingests),
    matching images by sha256; a line per applied label in reviews.csv beside that manifest."""
    table, vocab = Path(table), params.attributes(article)
    if not table.is_file():
        raise DataValidationError(f"review table {table} not found")
    log_ = ImportLog()
    _, labels = long_labels(table, vocab, log_, key="sha256")
    annotators = _annotators(table)
    path = source_manifest(Path(source), article)
    manifest = read_manifest(path)
    rows_of: dict[str, list[int]] = {}
    for i, sha in enumerate(manifest["sha256"]):
        rows_of.setdefault(str(sha), []).append(i)
    for attr in vocab:
        if attr not in manifest:
            manifest[attr] = None
        manifest[attr] = manifest[attr].astype(object)
    applied, counts = [], {"labelled": 0, "corrected": 0, "confirmed": 0}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for sha, cells in labels.items():
        rows = rows_of.get(sha)
        for attr, raw in cells.items():
            value = normalise(raw)
            if value is None:
                continue
            if value not in vocab[attr]:
                log_.reject(table.name, 0, "label", f"value not in vocabulary ({attr})",
                            f"image {sha[:12]}: {attr} = {raw!r} is not one of {list(vocab[attr])}")
                continue
            if not rows:
                log_.reject(table.name, 0, "row", "image not in the catalogue",
                            f"image {sha[:12]} is not in {path}: import the image first (progattr data import)")
                break
            before = manifest.at[rows[0], attr]
            before = None if pd.isna(before) else str(before)
            kind = "labelled" if before is None else "confirmed" if before == value else "corrected"
            counts[kind] += 1
            manifest.loc[rows, attr] = value
            applied.append({"sha256": sha, "image_id": manifest.at[rows[0], "image_id"], "attribute": attr,
                            "value": value, "previous": before, "annotator": annotators.get((sha, attr), ""),
                            "imported_at": now, "table": table.name})
    if applied:
        write_manifest(manifest, path)
        log_path = path.parent / REVIEWS
        pd.DataFrame(applied).to_csv(log_path, mode="a", header=not log_path.exists(), index=False)
    rejects = pd.DataFrame(log_.rejects, columns=list(REJECT_COLUMNS))
    return {"manifest": str(path), "applied": len(applied), **counts, "rejected": len(rejects),
            "reasons": rejects["reason"].tolist()[:20] if len(rejects) else []}


def _annotators(table: Path) -> dict[tuple[str, str], str]:
    """(sha256, attribute) -> the annotator(s) who filled it, for the provenance log."""
    df = pd.read_csv(table, dtype=str, keep_default_na=False)
    if "annotator" not in df:
        return {}
    out: dict[tuple[str, str], set[str]] = {}
    for sha, attr, value, who in df[["sha256", "attribute", "value", "annotator"]].itertuples(index=False):
        if value.strip():
            out.setdefault((sha, attr), set()).add(who.strip())
    return {k: ";".join(sorted(w for w in v if w)) for k, v in out.items()}
