"""The paper's Tables 5-6 and section 5.1: size on disk, inference latency and throughput, training
wall time (individual vs progressive), the split-point trade-off, the machine's fp32 matmul GFLOP/s
with the model's achieved fraction, and inference levers. Every timing interleaves the compared
methods (A,B,A,B,...) in one run and reports medians, so load from other processes is shared.

    .venv/bin/python -m bench.size_speed --profile quick
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench import accuracy, common
from progattr_core.config import SPLIT_POINTS

log = logging.getLogger("bench.size_speed")
SPLITS = SPLIT_POINTS
PAPER = {"size_ratio": 450 / 1120, "inference_ratio": 0.55 / 1.4, "train_ratio": 0.5}

PROFILES: dict[str, dict[str, Any]] = {
    # smoke: every code path once, at the smallest size (CI); the other split points are not trained
    "smoke": {"article": "jeans", "sizes": [32], "archs": [None], "repeats": 1, "batch": 4, "levers": False,
              "train_repeats": 1, "train_splits": False,
              "train": {"article": "jeans", "n": 40, "set": accuracy.PROFILES["smoke"]["set"]}},
    "quick": {"article": "dresses", "sizes": [224, None], "archs": [None], "repeats": 3, "batch": 32,
              "levers": True, "train_repeats": 1, "train_splits": True,
              "train": {"article": "jeans", "n": 120, "set": ["model.image_size=32"]}},
    "full": {"article": "dresses", "sizes": [224, None], "archs": [None, "resnet34"], "repeats": 9, "batch": 32,
             "levers": True, "train_repeats": 3, "train_splits": True,
             "train": {"article": "jeans", "n": 3000, "set": []}},
}


def article_models(params: Any, article: str, arch: str, split: str, size: int) -> tuple[nn.Module, dict]:
    """(progressive with every Branch of the article, {attribute: individual one-Branch model})."""
    from progattr_core.model import ProgressiveResNet

    m = params.model
    attrs = params.attributes(article)

    def build(names: list[str], split_points: dict[str, str]) -> ProgressiveResNet:
        model = ProgressiveResNet(arch, split, size, m.mean, m.std, "scratch", params.seed, split_points)
        for a in names:
            model.add_branch(a, attrs[a])
        return model.eval()

    # the progressive model with params' per-attribute split points (whose Branches own more layers)
    return build(list(attrs), dict(m.split_points)), {a: build([a], {}) for a in attrs}


def disk_mb(models: list[nn.Module]) -> float:
    """Megabytes of the weights the models predict with (`weights_mb`; a saved file of a file- or
    ImageNet-initialised model also holds the tail template for adding Branches, which is not counted)."""
    from progattr_core.model import weights_mb

    return sum(weights_mb(m) for m in models)


def n_params(models: list[nn.Module]) -> int:
    return sum(p.numel() for m in models for p in m.parameters())


def size_rows(params: Any, article: str, archs: list[str]) -> tuple[list[list], dict]:
    rows, ratios = [], {}
    for arch in archs:
        for split in SPLITS:
            prog, indiv = article_models(params, article, arch, split, 64)
            mb_p, mb_i = disk_mb([prog]), disk_mb(list(indiv.values()))
            p_p, p_i = n_params([prog]), n_params(list(indiv.values()))
            rows.append([arch, split, len(indiv), round(mb_i, 1), round(mb_p, 1), mb_p / mb_i, p_i, p_p, p_p / p_i])
            ratios[f"size {arch} {split}"] = mb_p / mb_i
    return rows, ratios


def _forward_all(prog: nn.Module, indiv: dict[str, nn.Module], x: Tensor) -> dict[str, Callable[[], Any]]:
    """The two ways to get every attribute of a batch: one progressive pass, or every individual model."""
    def individual() -> None:
        with torch.inference_mode():
            for a, m in indiv.items():
                m(x, [a])

    def progressive() -> None:
        with torch.inference_mode():
            prog(x)

    return {"individual": individual, "progressive": progressive}


def speed(params: Any, article: str, arch: str, split: str, size: int, batch: int, repeats: int) -> dict:
    """Latency (1 image, all attributes) and throughput (batch), individual vs progressive, interleaved."""
    prog, indiv = article_models(params, article, arch, split, size)
    one = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    many = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    lat = common.interleaved(_forward_all(prog, indiv, one), repeats * 2)
    thr = common.interleaved(_forward_all(prog, indiv, many), repeats)
    return {"latency_s": {k: v["median_s"] for k, v in lat.items()},
            "throughput_img_s": {k: batch / v["median_s"] for k, v in thr.items()},
            "samples": {"latency": lat, "throughput": thr}, "n_attributes": len(indiv)}


def speed_rows(params: Any, prof: dict[str, Any], archs: list[str]) -> tuple[list[list], dict, dict]:
    rows, ratios, raw = [], {}, {}
    default = params.model.image_size
    for arch in archs:
        for size in [s or default for s in prof["sizes"]]:
            for split in (SPLITS if size == default else (params.model.split_point,)):
                r = speed(params, prof["article"], arch, split, size, prof["batch"], prof["repeats"])
                lat, thr = r["latency_s"], r["throughput_img_s"]
                ratio = lat["progressive"] / lat["individual"]
                rows.append([arch, split, size, 1000 * lat["individual"], 1000 * lat["progressive"], ratio,
                             thr["individual"], thr["progressive"], thr["individual"] / thr["progressive"]])
                ratios[f"inference latency {arch} {split} {size}px"] = ratio
                raw[f"{arch} {split} {size}px"] = r
    return rows, ratios, raw


def model_flops(model: nn.Module, x: Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def machine_fraction(params: Any, article: str, batch: int, repeats: int) -> tuple[list[list], dict]:
    """Matmul GFLOP/s and the progressive model's achieved GFLOP/s, timed interleaved in one run."""
    size = params.model.image_size
    prog, indiv = article_models(params, article, params.model.arch, params.model.split_point, size)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    flops = {"progressive": model_flops(prog, x), "individual": sum(model_flops(m, x) for m in indiv.values())}
    fns = {"matmul": lambda: torch.mm(a, b), **_forward_all(prog, indiv, x)}
    t = common.interleaved(fns, repeats)
    mm = 2 * n**3 / t["matmul"]["median_s"] / 1e9
    rows = [["fp32 matmul 1024x1024", 2 * n**3 / 1e9, 1000 * t["matmul"]["median_s"], mm, 1.0]]
    for k in ("individual", "progressive"):
        g = flops[k] / t[k]["median_s"] / 1e9
        rows.append([f"{k}, batch {batch}, {size}px, {len(indiv)} attributes", flops[k] / 1e9,
                     1000 * t[k]["median_s"], g, g / mm])
    return rows, {"matmul_gflops": mm, "flops": flops, "progressive_fraction_of_matmul": rows[2][4],
                  "flops_ratio": flops["progressive"] / flops["individual"]}


def _stacked_branches(model: nn.Module) -> Callable[[Tensor], dict[str, Tensor]]:
    """Every Branch's tail run as one vmapped call over stacked weights (same shapes), then its head."""
    import copy

    from torch.func import functional_call, stack_module_state

    names = list(model.branches)
    params_, buffers_ = stack_module_state([model.branches[a].tail for a in names])
    template = copy.deepcopy(model.branches[names[0]].tail).to("meta")

    def one(p: dict, b: dict, f: Tensor) -> Tensor:
        return functional_call(template, (p, b), (f,))

    def forward(x: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            pooled = torch.vmap(one, in_dims=(0, 0, None))(params_, buffers_, model.base(model.prepare(x)))
            pooled = pooled.mean((-2, -1))
            return {a: model.branches[a].fc(pooled[i]) for i, a in enumerate(names)}

    return forward


def levers(model: nn.Module, compile_: bool) -> dict[str, Callable[[Tensor], dict[str, Tensor]]]:
    """Inference variants of one progressive model; each maps uint8 images to logits per attribute."""
    import copy

    def grad_off(m: nn.Module) -> Callable:
        def f(x: Tensor) -> dict[str, Tensor]:
            with torch.no_grad():
                return m(x)
        return f

    def inference(m: nn.Module, cl: bool = False, bf16: bool = False) -> Callable:
        def f(x: Tensor) -> dict[str, Tensor]:
            x = x.contiguous(memory_format=torch.channels_last) if cl else x
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return {k: v.float() for k, v in m(x).items()}
        return f

    cl = copy.deepcopy(model).to(memory_format=torch.channels_last).eval()
    q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8).eval()
    out = {"no_grad (baseline)": grad_off(model), "inference_mode": inference(model),
           "inference_mode + channels_last": inference(cl, cl=True),
           "inference_mode + bf16 autocast": inference(model, bf16=True),
           "inference_mode + channels_last + bf16": inference(cl, cl=True, bf16=True),
           "int8 dynamic (Linear heads only)": inference(q), "all branches vmapped together": _stacked_branches(model)}
    if compile_:
        out["torch.compile (inductor)"] = inference(torch.compile(copy.deepcopy(model)))
        out["torch.compile + channels_last"] = inference(torch.compile(copy.deepcopy(cl)), cl=True)
    return out


def lever_rows(model: nn.Module, test: Any, batch: int, repeats: int, compile_: bool) -> tuple[list[list], dict]:
    """Each lever: median batch time (interleaved), speed-up over the baseline, and whether its
    predictions agree with fp32 on the test images of a trained model (accuracy holds?)."""
    fns, first, raw = levers(model, compile_), {}, {}
    x = test.images[:batch]
    ref = None
    for name, fn in fns.items():
        start = time.perf_counter()
        try:
            out = {k: v.argmax(1) for k, v in fn(test.images).items()}
        except Exception as exc:  # a lever that does not run here is reported, not fatal
            raw[name] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            continue
        first[name] = time.perf_counter() - start  # includes compilation for torch.compile
        ref = ref or out
        raw[name] = {"agreement": float(np.mean([(out[a] == ref[a]).float().mean() for a in ref])),
                     "accuracy": _accuracy(out, test)}
    ok = {k: (lambda f=fns[k]: f(x)) for k in first}
    times = common.interleaved(ok, repeats)
    base = times["no_grad (baseline)"]["median_s"]
    rows = [[k, 1000 * t["median_s"], batch / t["median_s"], base / t["median_s"], raw[k]["agreement"],
             100 * raw[k]["accuracy"], first[k]] for k, t in times.items()]
    rows += [[k, None, None, None, None, None, v] for k, v in raw.items() if isinstance(v, str)]
    return rows, {"levers": raw, "times": times}


def _accuracy(pred: dict[str, Tensor], data: Any) -> float:
    accs = []
    for a in pred:
        col = data.column(a)
        keep = col >= 0
        accs.append(float((pred[a][keep] == col[keep]).float().mean()))
    return float(np.mean(accs))


def _training_data(prof: dict[str, Any], overrides: list[str]) -> tuple[list[str], Any, dict[str, Any]]:
    """(overrides: the profile's then the command's --set, params, splits) of the training sections."""
    t = prof["train"]
    sets = [*t["set"], *overrides]
    base = common.bench_params(sets)
    return sets, base, common.synth_splits(base, t["article"], t["n"] or base.synth.n_images, base.synth.seed)


def training(prof: dict[str, Any], repeats: int, overrides: list[str]) -> tuple[list[list], dict, Any]:
    """Training wall time and accuracy: individual vs progressive (+ lean schedule) at the default
    split, alternated A,B,C,A,B,C; progressive once at the other split points (accuracy per split).
    overrides (the command's --set) apply after the profile's own. Returns rows, ratios and the
    trained default-split progressive model (for the levers' accuracy)."""
    t = prof["train"]
    sets, base, splits = _training_data(prof, overrides)
    runs: dict[str, list[dict]] = {}
    trained: list = []
    variants = {"individual": ("individual", []), "progressive": ("progressive", []),
                "progressive_lean": ("progressive", accuracy.LEAN)}
    for r in range(repeats):
        for name in (list(variants) if r % 2 == 0 else list(reversed(variants))):
            method, extra = variants[name]
            params = accuracy._params(sets, t["article"], 0, extra)
            keep = trained if name == "progressive" else None
            runs.setdefault(name, []).append(accuracy.run_method(method, params, splits, t["article"], 0, keep))
    for split in SPLITS if prof["train_splits"] else ():
        if split != base.model.split_point:
            params = accuracy._params(sets, t["article"], 0, [f"model.split_point={split}"])
            runs[f"progressive {split}"] = [accuracy.run_method("progressive", params, splits, t["article"], 0)]
    med = {k: float(np.median([r["train_s"] for r in v])) for k, v in runs.items()}
    rows = [[k, med[k], med[k] / med["individual"], int(v[0]["image_passes"]), 100 * v[0]["overall"]]
            for k, v in runs.items()]
    return rows, {"train_time_ratio": med["progressive"] / med["individual"],
                  "train_time_ratio_lean": med["progressive_lean"] / med["individual"], "runs": runs}, (trained[0], splits)


def split_rows(train_rows: list[list], size_rows_: list[list], speed_rows_: list[list], default: str,
               size: int) -> list[list]:
    """The split-point trade-off in one table: accuracy, size ratio, latency and batch-time ratios."""
    acc = {default if r[0] == "progressive" else r[0].split(" ")[-1]: r[4] for r in train_rows
           if r[0] == "progressive" or r[0].startswith("progressive layer")}
    individual = next(r[4] for r in train_rows if r[0] == "individual")
    out = []
    for split in SPLITS:
        size_ratio = next((r[5] for r in size_rows_ if r[1] == split), None)
        spd = next((r for r in speed_rows_ if r[1] == split and r[2] == size), None)
        out.append([split, acc.get(split), individual, size_ratio, spd[5] if spd else None, spd[8] if spd else None])
    return out


def trained_progressive(prof: dict[str, Any], overrides: list[str]) -> tuple[nn.Module, dict[str, Any]]:
    """One progressive model trained as in the training section (for the levers' accuracy check)."""
    t, keep = prof["train"], []
    sets, _, splits = _training_data(prof, overrides)
    accuracy.run_method("progressive", accuracy._params(sets, t["article"], 0), splits, t["article"], 0, keep)
    return keep[0], splits


def goals_for(params: Any, ratios: dict[str, float]) -> list[dict[str, Any]]:
    arch, split = params.model.arch, params.model.split_point
    key = f"size {arch} {split}"
    out = [common.goal(f"size ratio {arch} {split}", ratios[key], 0.40)] if key in ratios else []
    out += [common.goal(k.replace("inference latency", "inference ratio (latency)"), v, 0.30)
            for k, v in ratios.items() if k.startswith(f"inference latency {arch} {split}")]
    if "train time progressive / individual" in ratios:
        out.append(common.goal("training-time ratio (params schedule)", ratios["train time progressive / individual"],
                               0.50))
        out.append(common.goal("training-time ratio (lean: " + " ".join(accuracy.LEAN) + ")",
                               ratios["train time progressive_lean / individual"], 0.50))
    return out


NOTES = ["ratio = progressive / individual (lower is better); latency: all attributes of one image; batch time: "
         "a batch of images, all attributes", "sizes are save_model files (config + weights; a scratch-initialised "
         "model's tail template is rebuilt from its seed on load, so neither method stores it)", "results are rewritten after each section: a run cut "
         "short keeps the sections it finished"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, info, started = common.start("Tables 5-6: size, speed, training time, split points, GFLOP/s, levers", argv,
                                       extra=[_options])
    prof = PROFILES[args.profile]
    if args.article:   # size and speed depend only on the taxonomy: any article of params, real ones included
        prof = {**prof, "article": args.article}
    params = common.bench_params(args.set)
    archs = [a or params.model.arch for a in prof["archs"]]
    rows: dict[str, Any] = {}
    data: dict[str, Any] = {"paper": PAPER}

    def emit() -> dict[str, Any]:
        return common.write_results("size_speed", args, {"profile": prof, "overrides": args.set,
                                                         "values": params.to_dict()}, _tables(params, prof, rows),
                                    ratios, goals_for(params, ratios), NOTES, data, info, started)

    ratios: dict[str, float] = {}
    if args.only == "levers":  # the levers alone, on one trained progressive model (runs beside the rest)
        model, splits = trained_progressive(prof, args.set)
        rows["test_size"] = (len(splits["test"]), splits["test"].images.shape[-1])
        rows["levers"], data["levers"] = lever_rows(model, splits["test"], prof["batch"], prof["repeats"],
                                                    prof["levers"])
        return emit()
    rows["size"], ratios = size_rows(params, prof["article"], archs)
    rows["speed"], sp_ratios, data["speed"] = speed_rows(params, prof, archs)
    ratios.update(sp_ratios)
    rows["machine"], data["machine_fraction"] = machine_fraction(params, prof["article"], prof["batch"],
                                                                 prof["repeats"])
    ratios["progressive achieved / matmul GFLOP/s"] = data["machine_fraction"]["progressive_fraction_of_matmul"]
    ratios["FLOPs progressive / individual"] = data["machine_fraction"]["flops_ratio"]
    emit()
    rows["training"], tr, (model, splits) = training(prof, prof["train_repeats"], args.set)
    data["training"] = tr["runs"]
    ratios.update({"train time progressive / individual": tr["train_time_ratio"],
                   "train time progressive_lean / individual": tr["train_time_ratio_lean"]})
    rows["test_size"] = (len(splits["test"]), splits["test"].images.shape[-1])
    emit()
    rows["levers"], data["levers"] = lever_rows(model, splits["test"], prof["batch"], prof["repeats"], prof["levers"])
    return emit()


def _options(ap: Any) -> None:
    ap.add_argument("--article", default="", help="measure size and speed on this article of params' taxonomy "
                                                  "(e.g. tshirts; default: the profile's)")


def _tables(params: Any, prof: dict, rows: dict[str, Any]) -> list[dict[str, Any]]:
    art, t = prof["article"], prof["train"]
    if "size" not in rows:
        rows = {**rows, "size": [], "speed": [], "machine": []}
    out = [common.table(f"Size (MB of weights a model predicts with), {art} (paper Table 5: 1120 vs 450 MB, ratio 0.40)",
                        ["arch", "split", "attributes", "individual MB", "progressive MB", "ratio",
                         "individual params", "progressive params", "params ratio"], rows["size"]),
           common.table(f"Inference on CPU, {art}, all attributes (paper Table 6: 1.4 s vs 0.55 s, ratio 0.39)",
                        ["arch", "split", "px", "individual ms/image", "progressive ms/image", "latency ratio",
                         f"individual img/s (batch {prof['batch']})", "progressive img/s", "batch time ratio"],
                        rows["speed"]),
           common.table("How close to the machine: achieved GFLOP/s vs fp32 matmul (interleaved)",
                        ["what", "GFLOP per call", "median ms", "GFLOP/s", "fraction of matmul"], rows["machine"])]
    n_test, size = rows.get("test_size", (0, 0))
    if "training" in rows:
        out.append(common.table(f"Training wall time and accuracy, synthetic {t['article']} ({params.model.arch}, "
                                f"{size} px; methods "
                                "alternated; median over repeats)", ["method", "train s", "ratio to individual",
                                                                     "image passes", "overall accuracy %"],
                                rows["training"]))
        out.append(common.table("Split point: accuracy (training table) vs size and speed ratios (default size)",
                                ["split", "progressive accuracy %", "individual accuracy %", "size ratio",
                                 "latency ratio", "batch time ratio"],
                                split_rows(rows["training"], rows["size"], rows["speed"], params.model.split_point,
                                           params.model.image_size)))
    if "levers" in rows:
        out.append(common.table(f"Inference levers, trained progressive model ({size} px, batch {prof['batch']}; "
                                f"agreement with the baseline and accuracy on {n_test} test images)",
                                ["lever", "median ms/batch", "img/s", "speed-up", "argmax agreement", "accuracy %",
                                 "first call s (incl. compile)"], rows["levers"]))
    return out

if __name__ == "__main__":
    main()
