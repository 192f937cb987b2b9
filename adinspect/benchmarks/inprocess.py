"""`adinspect bench`: in-process ONNX Runtime inspector vs the PyTorch eager reference, same images.

Two timings per runner and image, batch size 1, after a warm-up:
- `model`: normalised tensor → map and score (what the exported models do);
- `end_to_end`: decoded RGB image → InspectionResult (preprocess + model + map resize + regions).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from adinspect.data.datasets import open_dataset
from adinspect.geometry import preprocess
from adinspect.imageio import read_image
from adinspect.runtime.postprocess import find_regions, resize_map


def latency_stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "n": int(a.size),
        "mean_ms": float(a.mean()),
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "images_per_s": float(1000.0 / a.mean()),
    }


def time_calls(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Milliseconds of `repeats` calls of fn() after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def bench_inprocess(
    model_dir: Path,
    data_dir: Path,
    n_images: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    eager: bool = True,
    product: str | None = None,
) -> dict:
    """Per-image latency of the ONNX Runtime inspector and (optionally) the torch eager reference.

    A unified package is timed as `product` (default: the product named like the data folder, else
    its first): the model is the same for all, the product's threshold only shapes the regions."""
    from adinspect.package import ModelPackage
    from adinspect.runtime.inspector import Inspector

    threads = threads or os.cpu_count() or 1
    dataset = open_dataset(Path(data_dir))
    package = ModelPackage.load(Path(model_dir), verify=False)
    product = package.product_for_data(product, dataset.name) or package.products[0]
    inspector = Inspector(model_dir, threads=threads, product=product)
    paths = [s.path for s in dataset.test][:n_images] or dataset.train[:n_images]
    images = [read_image(p) for p in paths]
    spec = inspector.package.preprocess
    tensors = [preprocess(im, spec)[None] for im in images]
    runners: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {"onnxruntime": inspector.run}
    if eager:
        import torch

        torch.set_num_threads(threads)
        runners["torch_eager"] = _eager_runner(model_dir, package.is_unified)

    def end_to_end(run, image):
        amap, score = run(preprocess(image, spec)[None])
        full = resize_map(amap[0], image.shape[0], image.shape[1])
        return find_regions(full, inspector.threshold), float(score[0])

    results: dict = {
        "model_dir": str(model_dir),
        "product": product,
        "images": len(images),
        "threads": threads,
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "runners": {},
    }
    raw: dict[str, list[float]] = {}
    for name, run in runners.items():
        model_ms, e2e_ms = [], []
        for x, image in zip(tensors, images, strict=True):
            model_ms += time_calls(partial(run, x), warmup, 1)
            e2e_ms += time_calls(partial(end_to_end, run, image), 0, 1)
        raw[name] = model_ms
        results["runners"][name] = {"model": latency_stats(model_ms), "end_to_end": latency_stats(e2e_ms)}
    if eager:
        ort_p50 = results["runners"]["onnxruntime"]["model"]["p50_ms"]
        results["speedup_onnxruntime_vs_eager_p50"] = (
            results["runners"]["torch_eager"]["model"]["p50_ms"] / ort_p50
        )
    results["_latencies_ms"] = raw
    return results


def _eager_runner(model_dir: Path, unified: bool) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The torch eager reference of the package's ONNX graphs: (B, 3, S, S) → maps (B, S, S), scores."""
    import torch

    if not unified:
        from adinspect.fitting.pipeline import TorchPipeline

        return TorchPipeline.from_package(model_dir).run
    from adinspect.train.unified_package import load_unified_graph

    graph = load_unified_graph(model_dir)

    @torch.no_grad()
    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        amap, score = graph(torch.from_numpy(batch))
        return amap[:, 0].numpy(), score.numpy()

    return run


def write_bench(results: dict, json_path: Path, plot: bool = True) -> str:
    """Write JSON (+ a latency histogram PNG beside it) and return a readable table."""
    raw = results.pop("_latencies_ms", {})
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    if plot and raw:
        from adinspect.evaluation.plots import plot_latency_histogram

        plot_latency_histogram(raw, json_path.with_suffix(".png"))
    rows = [f"{'runner':<14}{'stage':<12}{'p50 ms':>9}{'p95 ms':>9}{'img/s':>9}"]
    for name, stages in results["runners"].items():
        for stage, s in stages.items():
            rows.append(
                f"{name:<14}{stage:<12}{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}{s['images_per_s']:>9.1f}"
            )
    if "speedup_onnxruntime_vs_eager_p50" in results:
        speedup = results["speedup_onnxruntime_vs_eager_p50"]
        rows.append(f"ONNX Runtime speed-up over eager (model p50): {speedup:.2f}x")
    return "\n".join(rows)
