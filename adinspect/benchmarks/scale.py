"""`adinspect bench-scale`: how fit and inference cost grow with the number of reference images.

For every preset and bank size N: fit a package whose bank holds exactly N references (the first
good images in a seeded order; above the dataset's count, flipped and rotated copies of them,
counted in `augmented`), then inspect test images with the in-process inspector. Each fit and
each inference run happens in a fresh process, so its peak resident memory (ru_maxrss) is its own.
Writes JSON after every point (a long run keeps what it measured), a Markdown table and a PNG plot.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import queue as queue_module
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from adinspect.benchmarks.inprocess import latency_stats, time_calls
from adinspect.data.datasets import open_dataset
from adinspect.errors import InputError

MB = 1 << 20
# flips and rotations of a good image are good images of a part seen from above (bottle, screw, ...)
AUGMENTATIONS = ("flip_lr", "flip_ud", "rot90", "rot180", "rot270")


def make_subset(goods: Sequence[Path], total: int, out: Path, seed: int = 0) -> int:
    """Write out/train/good with `total` images: symlinks to goods in a seeded order, then augmented
    copies (AUGMENTATIONS in turn) of them. Returns how many are augmented."""
    import cv2

    folder = out / "train" / "good"
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(goods))
    for i in range(total):
        source = Path(goods[order[i % len(goods)]]).resolve()
        target = folder / f"{i:04d}{source.suffix if i < len(goods) else '.png'}"
        if target.exists() or target.is_symlink():
            continue
        if i < len(goods):
            target.symlink_to(source)
            continue
        kind = AUGMENTATIONS[(i // len(goods) - 1) % len(AUGMENTATIONS)]
        image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InputError(f"{source}: unreadable image; remove it from the dataset")
        cv2.imwrite(str(target), _augment(image, kind))
    return max(0, total - len(goods))


def _augment(image: np.ndarray, kind: str) -> np.ndarray:
    if kind == "flip_lr":
        return image[:, ::-1]
    if kind == "flip_ud":
        return image[::-1]
    turns = {"rot90": 1, "rot180": 2, "rot270": 3}[kind]
    return np.ascontiguousarray(np.rot90(image, turns))


def _fit_summary(report: Any, seconds: float) -> dict[str, Any]:
    """What a fit in a child process reports to the parent (a FitReport's plain fields)."""
    return {
        "fit_s": seconds,
        "fit_seconds": report.seconds,
        "fit_peak_rss_mb": _peak_rss_mb(),
        "fit_memory": report.memory,
        "n_references": report.n_references,
        "parity": report.parity,
    }


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _fit_child(queue: Any, data: str, out: str, preset: str, random_weights: bool) -> None:
    from adinspect.config import preset_config
    from adinspect.fitting.fit import fit_product

    try:
        backbone = {"allow_random": True} if random_weights else {}
        config = preset_config(preset, "scale", backbone=backbone)
        t = time.perf_counter()
        report = fit_product(Path(data), config, Path(out), overwrite=True, progress=False)
        queue.put(_fit_summary(report, time.perf_counter() - t))
    except BaseException as exc:  # reported to the parent, which prints it
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _fit_generated_child(queue: Any, n_images: int, out: str, preset: str, random_weights: bool) -> None:
    """Every fit stage after the backbone, on features generated at the preset's shapes (seeded
    Gaussian, fp16): the memory of bank, calibration, export and parity without the backbone's time."""
    import torch

    from adinspect.config import preset_config
    from adinspect.features.backbones import create_backbone
    from adinspect.features.embedder import FeatureEmbedder
    from adinspect.fitting.fit import Embedded, fit_embedded, shapes_of
    from adinspect.geometry import PreprocessSpec
    from adinspect.residual.budget import plan_memory

    try:
        config = preset_config(preset, "scale", backbone={"allow_random": random_weights})
        extractor, spec, weights = create_backbone(config.backbone.name, allow_random=random_weights)
        embedder = FeatureEmbedder(extractor, spec, config.method).eval()
        shapes = shapes_of(embedder, config)
        n_refs = n_images  # every good image is a reference
        n_params = sum(p.numel() for p in embedder.parameters())
        plan = plan_memory(config, shapes, n_images, n_refs, n_params)
        gen = torch.Generator().manual_seed(0)
        (gh, gw), (ggh, ggw) = shapes.grid, shapes.global_grid
        feats = torch.empty(n_images, shapes.feature_dim, gh, gw, dtype=torch.float16)
        for i in range(n_images):
            feats[i] = torch.randn(shapes.feature_dim, gh, gw, generator=gen).half()
        gmaps = torch.randn(n_images, shapes.global_channels, ggh, ggw, generator=gen)
        s = config.method.image_size  # the preset's square input
        pre = PreprocessSpec(image_size=s, mean=spec.mean, std=spec.std, height=s, width=s)
        goods = [Path(f"generated/{i:04d}") for i in range(n_images)]
        embedded = Embedded(goods, feats, gmaps, embedder, spec.name, weights, pre, plan, from_files=False)
        del feats, gmaps
        t = time.perf_counter()
        report = fit_embedded(embedded, config, Path("generated"), Path(out), {})
        queue.put(_fit_summary(report, time.perf_counter() - t))
    except BaseException as exc:
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _infer_child(queue: Any, model: str, test_images: list[str], warmup: int) -> None:
    from adinspect.geometry import preprocess
    from adinspect.imageio import read_image
    from adinspect.runtime.inspector import Inspector

    try:
        t = time.perf_counter()
        inspector = Inspector(Path(model))
        load_s = time.perf_counter() - t
        tensors = [preprocess(read_image(p), inspector.package.preprocess)[None] for p in test_images]
        latencies: list[float] = []
        for i, tensor in enumerate(tensors):
            latencies += time_calls(partial(inspector.run, tensor), warmup if i == 0 else 0, 1)
        queue.put(
            {"load_s": load_s, "latency": latency_stats(latencies), "infer_peak_rss_mb": _peak_rss_mb()}
        )
    except BaseException as exc:
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _in_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(queue, *args))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():  # e.g. killed by the kernel's OOM killer
                return {"error": f"the measuring process died (exit code {proc.exitcode})"}
    proc.join()
    return result


def _package_mb(model: Path) -> dict[str, float]:
    sizes = {p.name: p.stat().st_size / MB for p in model.iterdir() if p.is_file()}
    return {"total": sum(sizes.values()), **sizes}


def run_scale_bench(
    data_dir: Path,
    out_dir: Path,
    presets: Sequence[str],
    sizes: Sequence[int],
    random_weights: bool = False,
    n_images: int = 10,
    warmup: int = 2,
    generated: Sequence[str] = (),
) -> dict[str, Any]:
    """Fit and inspect at every (preset, N); returns and writes out_dir/scale.json, scale.md, scale.png.

    Presets in `generated` skip the backbone in fit (`_fit_generated_child`); inference still runs
    the whole package on real test images.
    """

    dataset = open_dataset(Path(data_dir))
    if not dataset.train:
        raise InputError(f"{data_dir}: no good training images to build banks from")
    tests = [str(s.path) for s in dataset.test][:n_images] or [str(p) for p in dataset.train[:n_images]]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "data": str(data_dir),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "random_weights": random_weights,
        "augmentations": list(AUGMENTATIONS),
        "points": [],
    }
    for preset in presets:
        for n_refs in sizes:
            total = n_refs  # every good image is a reference
            subset = out_dir / "data" / f"n{total}"
            model = out_dir / "models" / f"{preset}_{n_refs}"
            point: dict[str, Any] = {"preset": preset, "references": n_refs, "images": total}
            if preset in generated:
                point.update(features="generated", augmented=0)
                point.update(_in_child(_fit_generated_child, total, str(model), preset, random_weights))
            else:
                point.update(features="embedded", augmented=make_subset(dataset.train, total, subset))
                point.update(_in_child(_fit_child, str(subset), str(model), preset, random_weights))
            if "error" not in point:
                point["package_mb"] = _package_mb(model)
                manifest = json.loads((model / "package.json").read_text())
                point["random_weights"] = manifest["backbone"]["random_weights"]
                point.update(_in_child(_infer_child, str(model), tests, warmup))
            results["points"].append(point)
            print(_row(point), flush=True)
            write_scale(results, out_dir)
    return results


def write_scale(results: dict[str, Any], out_dir: Path) -> None:
    (out_dir / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "scale.md").write_text(scale_table(results))
    plot_scale(results, out_dir / "scale.png")


HEADER = (
    "| preset | references (augmented) | fit s | fit peak RSS MB | package MB | "
    "latency p50 / p95 ms | inference peak RSS MB |\n| --- | --- | --- | --- | --- | --- | --- |"
)


def _row(p: dict[str, Any]) -> str:
    notes = [
        n
        for n, on in (
            ("random weights", p.get("random_weights")),
            ("generated features", p.get("features") == "generated"),
        )
        if on
    ]
    label = f"{p['preset']} ({', '.join(notes)})" if notes else p["preset"]
    head = f"| {label} | {p['references']} ({p['augmented']}) |"
    if "error" in p:
        return f"{head} failed: {p['error']} | | | | |"
    lat = p["latency"]
    return (
        f"{head} {p['fit_s']:.0f} | {p['fit_peak_rss_mb']:.0f} | {p['package_mb']['total']:.0f} | "
        f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f} | {p['infer_peak_rss_mb']:.0f} |"
    )


def scale_table(results: dict[str, Any]) -> str:
    lines = [
        "Cost against bank size; latency per image, batch 1, in-process ONNX Runtime. With generated",
        "features, fit s excludes the backbone (every later stage runs on features of the preset's shape).",
        "",
        HEADER,
    ]
    return "\n".join(lines + [_row(p) for p in results["points"]]) + "\n"


def plot_scale(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("fit time (s)", lambda p: p["fit_s"]),
        ("fit peak RSS (MB)", lambda p: p["fit_peak_rss_mb"]),
        ("package size (MB)", lambda p: p["package_mb"]["total"]),
        ("latency p50 per image (ms)", lambda p: p["latency"]["p50_ms"]),
        ("inference peak RSS (MB)", lambda p: p["infer_peak_rss_mb"]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    points = [p for p in results["points"] if "error" not in p]
    for ax, (title, value) in zip(axes, panels, strict=True):
        for preset in sorted({p["preset"] for p in points}):
            mine = [p for p in points if p["preset"] == preset]
            ax.plot([p["references"] for p in mine], [value(p) for p in mine], "o-", label=preset)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("references in the bank")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend()
    if results["random_weights"]:
        fig.suptitle("paper preset with random backbone weights (WRN50 weights are not offline)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def subset_quality(
    data_dir: Path, out_dir: Path, preset: str, fractions: Sequence[float], progress: bool = True
) -> dict[str, Any]:
    """Image AUROC / AUPRO of banks capped by `--max-references` (k-center greedy) at `fractions` of
    the references; the good images are embedded once and every bank is fitted from those features.
    Writes out_dir/subsets.json."""
    import dataclasses

    from adinspect.config import preset_config
    from adinspect.evaluation.evaluate import evaluate_package
    from adinspect.fitting.fit import embed_goods, fit_embedded

    config = preset_config(preset, "subset")
    t = time.perf_counter()
    embedded = embed_goods(Path(data_dir), config, progress)
    embed_s = time.perf_counter() - t
    n_refs = len(embedded.goods)
    results: dict[str, Any] = {"data": str(data_dir), "preset": preset, "embed_s": embed_s, "points": []}
    for fraction in fractions:
        cap = max(1, int(round(fraction * n_refs)))
        capped = preset_config(preset, "subset", scale={"max_references": cap})
        copy = dataclasses.replace(embedded, feats=embedded.feats.clone(), gmaps=embedded.gmaps.clone())
        model = Path(out_dir) / f"{preset}_{cap}"
        report = fit_embedded(copy, capped, Path(data_dir), model, {})
        metrics = evaluate_package(model, Path(data_dir), progress=progress)
        point = {"fraction": fraction, "references": report.n_references, "fit": report.seconds}
        point.update({k: metrics[k] for k in ("image_auroc", "aupro", "pixel_auroc") if k in metrics})
        results["points"].append(point)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "subsets.json").write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(point), flush=True)
    return results
