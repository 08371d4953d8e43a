"""The paper's Table 6: serving latency and throughput, all attributes of an article per request,
the progressive model (Base once + one Branch per attribute) versus the individual models (one full
ResNet per attribute, the paper's baseline) answering the same request.

Both are served by the real app (serving.app under uvicorn, loopback HTTP, one worker in this
process) and also called in process (decode + resize + forward + top-k, the route's work without
HTTP); every method is timed interleaved with the others so machine load falls on all alike.
Weights are untrained: speed does not depend on them. The paper: 0.55 s vs 1.4 s on CPU for 7
attributes at 224 px, a ratio of 0.39; our goal is a lower ratio.

    .venv/bin/python -m bench.serving --profile quick
"""

from __future__ import annotations

import io
import statistics
import threading
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from bench import common

PAPER = {"progressive_s": 0.55, "individual_s": 1.4, "ratio": 0.55 / 1.4, "attributes": 7, "image_size": 224}
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"archs": ["resnet18"], "sizes": [64], "repeats": 8, "batch": 8},
    "quick": {"archs": ["resnet18"], "sizes": [224, None], "repeats": 30, "batch": 16},
    "full": {"archs": ["resnet18", "resnet34"], "sizes": [224, None], "repeats": 100, "batch": 32},
}
ARTICLE = "dresses"  # 7 attributes, as in the paper's Table 6


class IndividualModels(nn.Module):
    """One full ResNet per attribute (each a ProgressiveResNet with a single Branch), answering together."""

    def __init__(self, models: dict[str, nn.Module]):
        super().__init__()
        self.models = nn.ModuleDict(models)
        self.classes = {a: m.classes[a] for a, m in models.items()}
        self.image_size = next(iter(models.values())).image_size

    def forward(self, x: torch.Tensor, attributes: list[str] | None = None) -> dict[str, torch.Tensor]:
        return {a: self.models[a](x)[a] for a in (attributes or list(self.classes))}

    def probabilities(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {a: torch.softmax(v, dim=1) for a, v in logits.items()}


def build_models(params: Any, arch: str, size: int) -> dict[str, nn.Module]:
    from progattr_core.model import ProgressiveResNet

    m = params.model
    def new() -> ProgressiveResNet:
        return ProgressiveResNet(arch, m.split_point, size, m.mean, m.std, "scratch", params.seed)
    progressive = new()
    singles = {}
    for attr, classes in params.attributes(ARTICLE).items():
        progressive.add_branch(attr, classes)
        singles[attr] = new()
        singles[attr].add_branch(attr, classes)
    return {"progressive": progressive.eval(), "individual": IndividualModels(singles).eval()}


class StaticSource:
    """A registry stand-in serving fixed in-memory models under the names `progressive` / `individual`."""

    def __init__(self, models: dict[str, nn.Module]):
        self.models = models

    def current(self, article: str, alias: str):
        from tracking.registry import VersionRef

        return VersionRef(article, "1", "")

    def load(self, ref):
        return self.models[ref.name]

    def listing(self, article: str) -> list[dict[str, object]]:
        return [{"version": "1", "aliases": ["bench"]}]


def start_server(params: Any, models: dict[str, nn.Module]):
    """The real app under uvicorn in a thread, on a free loopback port; returns (server, thread, port)."""
    import uvicorn

    from serving.app import AppConfig, create_app
    from serving.follower import ModelFollower

    follower = ModelFollower(list(models), StaticSource(models), "bench", poll_interval_s=3600)
    follower.poll_once()
    cfg = AppConfig(tuple(models), params.serving.max_body_bytes, params.data.image, params.serving.top_k, None, "bench")
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, follower), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


def catalogue_photo() -> bytes:
    """A 480x640 portrait JPEG, the shape of a catalogue photo."""
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (640, 480, 3), dtype=np.uint8)).resize((480, 640))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def measure(params: Any, arch: str, size: int, prof: dict[str, Any]) -> dict[str, dict[str, Any]]:
    import requests

    from progattr_core.inference import image_array, predict_one

    models = build_models(params, arch, size)
    photo, limits, top_k = catalogue_photo(), params.data.image, params.serving.top_k
    server, thread, port = start_server(params, models)
    session = requests.Session()

    def http(name: str):
        def call() -> None:
            r = session.post(f"http://127.0.0.1:{port}/v1/articles/{name}/predict", data=photo,
                             headers={"Content-Type": "image/jpeg"}, timeout=120)
            r.raise_for_status()
        return call

    def direct(name: str):
        return lambda: predict_one(models[name], image_array(photo, limits, size), top_k)

    batch = torch.from_numpy(np.stack([image_array(photo, limits, size)] * prof["batch"]))

    def batched(name: str):
        def call() -> None:
            with torch.inference_mode():
                models[name].probabilities(models[name](batch))
        return call

    try:
        fns = {f"{kind}:{name}": make(name) for kind, make in (("http", http), ("in-process", direct))
               for name in models}
        timed = common.interleaved(fns, prof["repeats"], warmup=2)
        timed.update({f"batch:{name}": v for name, v in common.interleaved(
            {n: batched(n) for n in models}, max(3, prof["repeats"] // 5), warmup=1).items()})
    finally:
        server.should_exit = True
        thread.join(30)
    return timed


def summarise(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_s": statistics.median(s), "p99_s": float(np.percentile(s, 99)), "mean_s": statistics.fmean(s)}


def main(argv: list[str] | None = None) -> int:
    args, info, started = common.start("Table 6: serving latency, progressive vs individual models", argv)
    params = common.bench_params(args.set)
    prof = PROFILES[args.profile]
    rows, ratios, data = [], {}, {}
    n_attr = len(params.attributes(ARTICLE))
    for arch in prof["archs"]:
        for size in [s or params.model.image_size for s in prof["sizes"]]:
            timed = measure(params, arch, size, prof)
            data[f"{arch}@{size}"] = {k: v["samples_s"] for k, v in timed.items()}
            for kind in ("http", "in-process"):
                stats = {m: summarise(timed[f"{kind}:{m}"]["samples_s"]) for m in ("progressive", "individual")}
                ratio = stats["progressive"]["p50_s"] / stats["individual"]["p50_s"]
                ratios[f"{arch}@{size}px {kind} p50 progressive/individual"] = ratio
                for m, st in stats.items():
                    rows.append([arch, size, kind, m, 1000 * st["p50_s"], 1000 * st["p99_s"], 1 / st["mean_s"],
                                 ratio if m == "progressive" else None])
            for m in ("progressive", "individual"):
                per = timed[f"batch:{m}"]["median_s"]
                rows.append([arch, size, f"batch {prof['batch']}", m, 1000 * per / prof["batch"], None,
                             prof["batch"] / per, None])
    key = next((k for k in ratios if "@224px http" in k), next(iter(ratios)))
    goals = [common.goal(f"{key} below the paper's {PAPER['ratio']:.2f}", ratios[key], PAPER["ratio"])]
    tables = [common.table(f"{ARTICLE}: all {n_attr} attributes per request (latency per image; throughput "
                           "one client, sequential, or batched forward)",
                           ["arch", "px", "path", "method", "p50 ms", "p99 ms", "throughput img/s", "ratio p50"],
                           rows)]
    notes = [f"paper (Table 6, CPU): progressive {PAPER['progressive_s']} s vs individual {PAPER['individual_s']} s "
             f"for 7 attributes at 224 px, ratio {PAPER['ratio']:.3f}",
             "individual = one full ResNet (Base + one Branch) per attribute, all answering the same request; "
             "the decoded image is shared, as a real service would do",
             "http = the real FastAPI app under uvicorn on loopback, client in the same process (2 cores shared); "
             "in-process = decode + resize + forward + top-k, the route's work without HTTP",
             f"split point {params.model.split_point}; untrained weights (speed does not depend on them)"]
    common.write_results("serving", args, {"article": ARTICLE, **prof, "split_point": params.model.split_point},
                         tables, ratios, goals, notes, data, info, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
