"""The approval report: one self-contained HTML page per registered version, for the person who approves it.

Per attribute: test accuracy, macro-F1 and coverage at the target precision (with the precision reached),
this version beside the champion's (its registered tags); the precision-coverage curves and confusion
matrices the evaluation drew; and the test images where this version and the champion disagree most
confidently (both answers, their calibrated probabilities and the label), or, with no champion yet,
this version's most confident mistakes. Images are inlined as PNG data URIs and the page has no script,
so it opens offline from MLflow or disk. `approval_report` writes it; tasks/registry.py logs it to the
version's run and tags the version with where it is (`progattr.report`).
"""

from __future__ import annotations

import base64
import html
import io
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from progattr_core.calibration import temper
from progattr_core.data.arrays import CachedImages
from progattr_core.model import resolve_device
from progattr_core.model_file import load_model
from progattr_core.predict import predict_proba
from tasks.context import DataRef, PipelineContext, task_logger
from tasks.evaluation import EvaluationRef
from tasks.training import load_split
from tracking.registry import CHAMPION, Registry, model_name
from tracking.store import TAG

SHOWN = 12        # disagreement (or mistake) thumbnails on the page
THUMB = 112       # pixels a side


def _png(array_chw: np.ndarray) -> str:
    img = Image.fromarray(np.ascontiguousarray(array_chw.transpose(1, 2, 0))).resize((THUMB, THUMB), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.is_file() else ""


def _pct(v: Any) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(v) else f"{100 * v:.1f}"


def _champion(ctx: PipelineContext) -> tuple[Any, Any]:
    """(the champion's ModelVersion, its model loaded) or (None, None)."""
    registry = Registry.of(ctx.store)
    mv = registry.at_alias(model_name(ctx.article), CHAMPION)
    if mv is None:
        return None, None
    ref = registry.current(ctx.article, CHAMPION)
    with tempfile.TemporaryDirectory(prefix="progattr-report-") as tmp:
        return mv, load_model(registry.download(ref, tmp))


def _cases(images: CachedImages | np.ndarray, labels: np.ndarray, attrs: list[str], vocab: dict[str, list[str]],
           mine: dict[str, np.ndarray], theirs: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
    """The SHOWN (image, attribute) cells to look at: with a champion, where the two answers differ,
    most confident first (the smaller of the two top-1 probabilities); without one, or for an attribute
    it does not have (a branch-add's new one), this version's mistakes on labelled images, most confident
    first."""
    found = []
    for j, attr in enumerate(attrs):
        if attr not in mine:
            continue
        p = mine[attr]
        a = p.argmax(1)
        if theirs is not None and attr in theirs and theirs[attr].shape == p.shape:
            b = theirs[attr].argmax(1)
            which = np.flatnonzero(a != b)
            score = np.minimum(p.max(1), theirs[attr].max(1))
        elif theirs is None or attr not in theirs:  # no champion, or one without this attribute
            which = np.flatnonzero((labels[:, j] >= 0) & (a != labels[:, j]))
            score = p.max(1)
        else:
            continue
        for i in which:
            y = int(labels[i, j])
            found.append({"score": float(score[i]), "i": int(i), "attribute": attr,
                          "mine": (vocab[attr][a[i]], float(p[i, a[i]])),
                          "theirs": None if theirs is None or attr not in theirs else (
                              vocab[attr][int(theirs[attr][i].argmax())], float(theirs[attr][i].max())),
                          "label": vocab[attr][y] if y >= 0 else None})
    found.sort(key=lambda c: -c["score"])
    return [{**c, "thumb": _png(np.asarray(images[c["i"]]))} for c in found[:SHOWN]]


def approval_report(ctx: PipelineContext, data: DataRef, evaluation: EvaluationRef, model_path: str,
                    version: str, gate: str, method: str = "progressive") -> Path:
    """<evaluation.out_dir>/report.html for `version` (registered from `model_path`), whose numbers are
    `method`'s in `evaluation` (the training flow's progressive model, or a branch-add's new model)."""
    params = ctx.params()
    vocab = params.attributes(ctx.article)
    attrs = list(vocab)
    test = load_split(ctx, data, "test")
    images, labels = test.images, test.labels.numpy()
    device = resolve_device(params.compute.device)
    raw = predict_proba(load_model(model_path), images, params.train.batch_size, device, calibrated=False)
    mine = {a: temper(p, evaluation.calibration[a]["temperature"]) if a in evaluation.calibration else p
            for a, p in raw.items()}
    champ_mv, champ_model = _champion(ctx)
    theirs = None
    if champ_model is not None and champ_model.image_size == images.shape[-1]:
        known = [a for a in attrs if a in champ_model.classes and champ_model.classes[a] == list(vocab[a])]
        theirs = predict_proba(champ_model, images, params.train.batch_size, device, known)
    cases = _cases(images, labels, attrs, vocab, mine, theirs)
    out = Path(evaluation.out_dir) / "report.html"
    out.write_text(_page(ctx, data, evaluation, method, version, gate, champ_mv, cases, champ_model is not None
                         and theirs is None))
    task_logger().info("approval report: %s", out)
    return out


def _champion_value(mv: Any, metric: str, attr: str) -> str:
    return _pct(mv.tags.get(f"{TAG}{metric}.{attr}")) if mv is not None else "-"


def _page(ctx: PipelineContext, data: DataRef, evaluation: EvaluationRef, method: str, version: str, gate: str,
          champ: Any, cases: list[dict[str, Any]], champion_unusable: bool) -> str:
    e = html.escape
    name = model_name(ctx.article)
    summary = evaluation.metrics[method]
    publish = evaluation.publish.get(method, {})
    cv = f"version {champ.version}" if champ is not None else "none yet"
    rows = []
    for attr in [*[a for a in summary if a != "overall"], "overall"]:
        m, p = summary[attr], publish.get(attr, {})
        target = p.get("target_precision", float("nan"))
        rows.append(
            f'<tr data-attribute="{e(attr)}"><th>{e(attr)}</th>'
            f'<td class="accuracy">{_pct(m["accuracy"])}</td><td>{_champion_value(champ, "accuracy", attr)}</td>'
            f'<td class="macro_f1">{_pct(m["macro_f1"])}</td><td>{_champion_value(champ, "macro_f1", attr)}</td>'
            f'<td class="coverage">{_pct(p.get("coverage"))}</td><td>{_champion_value(champ, "coverage", attr)}</td>'
            f'<td>{_pct(target)}</td><td class="precision">{_pct(p.get("precision_at_threshold"))}</td>'
            f'<td>{_pct(p.get("ece_raw"))} &rarr; {_pct(p.get("ece"))}</td></tr>')
    baselines = "".join(f"<li>{e(m)}: {_pct(a['overall'])}%</li>" for m, a in evaluation.accuracy.items()
                        if m != method)
    out_dir = Path(evaluation.out_dir)
    if champ is None:
        title = "This version's most confident mistakes (no champion to compare with yet)"
    elif champion_unusable:
        title = "No comparison of answers: the champion takes another image size"
    else:
        title = (f"Where this version and the champion (version {champ.version}) disagree most confidently "
                 "(an attribute the champion lacks: this version's most confident mistakes)")
    cells = "".join(
        f'<figure><img src="{c["thumb"]}" alt="test image {c["i"]}"><figcaption><b>{e(c["attribute"])}</b><br>'
        f'this: {e(c["mine"][0])} ({100 * c["mine"][1]:.0f}%)<br>'
        + (f'champion: {e(c["theirs"][0])} ({100 * c["theirs"][1]:.0f}%)<br>' if c["theirs"] else "")
        + f'label: {e(c["label"]) if c["label"] else "<i>none</i>"}</figcaption></figure>' for c in cases)
    return _TEMPLATE.format(
        title=e(f"{name} version {version}"), name=e(name), version=e(version), data=e(data.data_version),
        recipe=e(ctx.recipe), gate=e(gate), champion=e(cv), rows="\n".join(rows), baselines=baselines,
        curves=_file_uri(out_dir / "precision_coverage.png"), confusion=_file_uri(out_dir / "confusion" / f"{method}.png"),
        cases_title=e(title), cases=cells or "<p>None.</p>", n=len(cases))


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ text-align: left; background: #f6f6f6; }}
td.accuracy, td.macro_f1, td.coverage {{ font-weight: bold; }}
figure {{ display: inline-block; margin: 6px; width: 150px; vertical-align: top; font-size: 12px; }}
img.plot {{ max-width: 100%; }}
</style></head><body>
<h1>Approval report: {name} version {version}</h1>
<p>data version <code>{data}</code>; recipe: {recipe}<br>gate: <b>{gate}</b><br>champion: {champion}</p>
<h2>Per attribute, on the test split (%)</h2>
<table id="metrics">
<tr><th>attribute</th><th>accuracy</th><th>champion</th><th>macro-F1</th><th>champion</th>
<th>coverage</th><th>champion</th><th>target precision</th><th>precision reached</th><th>ECE raw &rarr; calibrated</th></tr>
{rows}
</table>
<p>Coverage: the share of test images whose answer clears its attribute's threshold, chosen on the validation
split to reach the target precision; those are published, the rest go to review.</p>
<p>The other models on the same test images, overall accuracy:</p><ul>{baselines}</ul>
<h2>Precision against coverage</h2>
<img class="plot" src="{curves}" alt="precision-coverage curves">
<h2>Confusion matrices (this version)</h2>
<img class="plot" src="{confusion}" alt="confusion matrices">
<h2>{cases_title}</h2>
<div id="cases" data-n="{n}">{cases}</div>
</body></html>
"""


def publish_report(ctx: PipelineContext, data: DataRef, evaluation: EvaluationRef, model_path: str, version: str,
                   gate: str, method: str = "progressive") -> str | None:
    """Write the report, log it to the version's run (`report/report.html`) and tag the version with its
    URI (`progattr.report`); the URI, or None (with a warning) when it could not be made: the version
    stays registered either way, its approver just has no page."""
    from tracking.store import Store

    try:
        path = approval_report(ctx, data, evaluation, model_path, version, gate, method)
        store = Store.of(ctx.store)
        store.log_artifacts(ctx.flow_run_id, path.parent / "report.html", "report")
        uri = f"{store.get_run(ctx.flow_run_id).info.artifact_uri.rstrip('/')}/report/report.html"
        Registry.of(ctx.store).set_tags(model_name(ctx.article), version, {"report": uri})
    except Exception as exc:  # noqa: BLE001 - the version is registered; say what is missing and why
        task_logger().warning("no approval report for %s version %s: %s: %s", model_name(ctx.article), version,
                              type(exc).__name__, exc)
        return None
    return uri
