"""The Pareto picture per article (issue 31): each method and recipe of the fine-grained benchmark as a
point of its fine attributes' mean macro-F1 (or accuracy) against model size and against training time.

Reads the results files bench.accuracy wrote (`accuracy_fine*.json`, every catalogue in them, epoch-matched
runs), sizes each method's models by weights from the recipe the file records, and writes one PNG per
article (two panels: size, time) beside a table of the points:

    .venv/bin/python -m bench.pareto bench/results/fine/*/accuracy_fine*.json --out bench/results/fine
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.accuracy import group_mean

MARKERS = {"individual": "o", "multilabel": "v", "multilabel_masked": "s", "progressive": "*", "progressive_split": "P"}


def method_mb(params: Any, article: str, method: str) -> float:
    """Megabytes of weights the method predicts the article's attributes with (bench.size_speed.disk_mb)."""
    from bench.size_speed import article_models, disk_mb
    from progattr_core.model import MultiLabelResNet

    m = params.model
    if method.startswith("multilabel"):
        return disk_mb([MultiLabelResNet(m.arch, dict(params.attributes(article)), m.image_size, m.mean, m.std)])
    prog, indiv = article_models(params, article, m.arch, m.split_point, m.image_size)
    return disk_mb([prog] if method.startswith("progressive") else list(indiv.values()))


def points(path: Path) -> list[dict[str, Any]]:
    """One point per (catalogue, method) of a results file: fine macro-F1 and accuracy (mean over seeds),
    size (MB), progressive-equivalent training seconds (mean over seeds)."""
    from bench.accuracy import fine_attributes

    result = json.loads(path.read_text())
    # the run's overrides over today's params.yaml (a file written before a params key existed still reads)
    params = common.bench_params(result["params"]["overrides"])
    recipe = path.parent.name
    out = []
    for label, cat in result["data"]["catalogues"].items():
        article = cat["article"]
        fine = [a for a in fine_attributes(params, article) if a in cat["seeds"][0]["epoch_matched"]["progressive"]["accuracy"]]
        if not fine:
            continue
        for method in cat["seeds"][0]["epoch_matched"]:
            runs = [s["epoch_matched"][method] for s in cat["seeds"]]
            out.append({"article": article, "catalogue": label, "recipe": recipe, "method": method,
                        "fine_macro_f1": 100 * float(np.mean([group_mean(r, "macro_f1", fine) for r in runs])),
                        "fine_accuracy": 100 * float(np.mean([group_mean(r, "accuracy", fine) for r in runs])),
                        "train_s": float(np.mean([r["train_s"] for r in runs])),
                        "mb": float(np.mean([method_mb(_with_splits(result, r), article, method) for r in runs])),
                        "seeds": len(runs)})
    return out


def _with_splits(result: dict[str, Any], run: dict[str, Any]) -> Any:
    """The run's params; a progressive_split run's with the split points its seed chose (they set its size)."""
    extra = [f"model.split_points={json.dumps(run['split_points'])}"] if run.get("split_points") else []
    return common.bench_params([*result["params"]["overrides"], *extra])


def plot(article: str, pts: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = sorted({p["recipe"] for p in pts})
    colours = {r: plt.get_cmap("tab10")(i) for i, r in enumerate(recipes)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, xlabel in ((axes[0], "mb", "size of the weights (MB)"), (axes[1], "train_s", "training time (s)")):
        for p in pts:
            ax.scatter(p[key], p["fine_macro_f1"], marker=MARKERS.get(p["method"], "x"), color=colours[p["recipe"]],
                       s=120 if p["method"] == "progressive" else 50)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fine attributes: mean macro-F1 (%)")
    handles = [plt.Line2D([], [], marker=mk, ls="", color="grey", label=m) for m, mk in MARKERS.items()]
    handles += [plt.Line2D([], [], marker="o", ls="", color=colours[r], label=r) for r in recipes]
    axes[1].legend(handles=handles, fontsize=8, loc="best")
    fig.suptitle(f"{article}: fine attributes by method (marker) and recipe (colour); "
                 f"{pts[0]['catalogue'].removeprefix('real ' + article).strip(', ') or 'natural labels'}", fontsize=9)
    fig.tight_layout()
    path = out / f"pareto_{article}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="accuracy_fine*.json files of bench.accuracy")
    ap.add_argument("--out", default=str(common.RESULTS / "fine"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pts = [p for path in args.results for p in points(Path(path))]
    rows = [[p["article"], p["recipe"], p["method"], p["fine_accuracy"], p["fine_macro_f1"], p["mb"], p["train_s"]]
            for p in sorted(pts, key=lambda p: (p["article"], p["recipe"], p["method"]))]
    commit, dirty = common.git_commit()
    columns = ["article", "recipe", "method", "fine accuracy %", "fine macro-F1 %", "MB", "train s"]
    text = "\n".join([f"# Fine attributes: every method and recipe (commit `{commit[:12]}`{' (dirty)' if dirty else ''})",
                      "", "Means over seeds, epoch-matched; from " + ", ".join(args.results), "",
                      *common.markdown_table(common.table("Every method and recipe", columns, rows))])
    for article in sorted({p["article"] for p in pts}):
        text += f"\n![{article}](pareto_{article}.png)\n"
        plot(article, [p for p in pts if p["article"] == article], out)
    (out / "pareto.md").write_text(text)
    print(text)
    return pts


if __name__ == "__main__":
    main()
