"""`adinspect bench-peer`: adinspect against anomalib's PatchCore, side by side in one run.

For every MVTec-layout product folder:
- adinspect: the training-free package as the default `fit` makes it (the preset, and the choice of
  matching, map normalisation and turns from the good images, `fitting.choice`) with the backbone
  held at PatchCore's, run by the in-process ONNX Runtime inspector;
- PatchCore: anomalib's torch model (`adinspect.benchmarks.patchcore`) with the same
  EfficientNet-Lite ImageNet weights (Lite0 unless `backbone` says), fitted on the same good
  training images.

Both get the same input tensors (adinspect's preprocess: resize to the fitted package's input, S x S
or, for non-square images, short side S and the long side following their aspect; ImageNet
mean/std), and both are scored by the same code (`adinspect.metrics.compute_metrics`) on maps at
that input against the masks resized to it with nearest neighbour. Fit time is wall time of each
method's fit; latency is per image at batch size 1 (tensor in, map and score out) on the same number
of threads.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

from adinspect.benchmarks.patchcore import (
    DEFAULT_LAYERS,
    PEER_BACKBONES,
    PatchCoreRunner,
    PeerBackbone,
    PeerError,
    check_layers,
    require_anomalib,
)
from adinspect.benchmarks.peer_report import write_peer
from adinspect.data.datasets import Dataset, Sample, open_dataset

PRESET = "cpu"  # adinspect's default preset (`adinspect fit` without --preset)
METRICS = ("image_auroc", "pixel_auroc", "pixel_ap", "aupro")


class PeerSettings(BaseModel):
    """What one peer run measures with; written into its JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(default=256, ge=64, le=1024, multiple_of=32, description="Input side S of both.")
    square: bool = Field(
        default=False,
        description="S x S for both whatever the images' aspect (as PatchCore's own pipeline resizes); "
        "default: adinspect's input geometry, short side S.",
    )
    coreset: float = Field(default=0.01, gt=0.0, le=1.0, description="PatchCore's coreset fraction.")
    backbone: PeerBackbone = Field(
        default="efficientnet_lite0", description=f"Both methods' backbone, one of {PEER_BACKBONES}."
    )
    layers: tuple[str, ...] = Field(default=DEFAULT_LAYERS, description="PatchCore's layers of the Lite.")
    seed: int = 0
    threads: int | None = Field(default=None, ge=1, description="torch and ONNX Runtime threads.")
    latency_images: int = Field(default=20, ge=1, description="Test images timed per method.")
    warmup: int = Field(default=3, ge=0, description="Untimed calls before the timed ones.")
    batch_size: int = Field(default=8, ge=1, description="Batch of the fit and metric passes.")


def peer_settings(**values: Any) -> PeerSettings:
    """PeerSettings from keyword values; a bad value raises PeerError naming the field."""
    try:
        return PeerSettings(**values)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PeerError(f"bench-peer settings: {where}") from exc


def run_peer_bench(
    data_dirs: Sequence[Path], out_dir: Path, settings: PeerSettings, progress: bool = True
) -> dict[str, Any]:
    """Benchmark both methods on every product; write out_dir/peer.json and peer.md after each one.

    The fitted adinspect packages are kept under out_dir/packages/<product>/.
    """
    anomalib_version = require_anomalib()  # before any work
    check_layers(settings.layers)
    datasets = [_open_test_set(Path(d)) for d in data_dirs]
    threads = settings.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    results: dict[str, Any] = {
        "settings": {**settings.model_dump(), "threads": threads},
        "protocol": _protocol(settings),
        "environment": _environment(anomalib_version),
        "products": [],
    }
    out_dir = Path(out_dir)
    for data, dataset, name in zip(data_dirs, datasets, _unique_names(data_dirs), strict=True):
        product = bench_product(
            Path(data), dataset, name, out_dir / "packages" / name, settings, threads, progress
        )
        results["products"].append(product)
        write_peer(results, out_dir)
    return results


def bench_product(
    data: Path,
    dataset: Dataset,
    name: str,
    package_dir: Path,
    settings: PeerSettings,
    threads: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Both methods on one product: metrics, fit seconds, per-image latency."""
    labels = np.array([s.label for s in dataset.test])
    adinspect, spec = _bench_adinspect(data, dataset, name, package_dir, settings, threads, progress)
    patchcore = _bench_patchcore(dataset, spec, settings, progress)
    return {
        "name": name,
        "data": str(data),
        "n_train": len(dataset.train),
        "n_test": len(dataset.test),
        "n_defective": int(labels.sum()),
        "methods": {"adinspect": adinspect, "patchcore": patchcore},
    }


def _bench_adinspect(
    data: Path,
    dataset: Dataset,
    name: str,
    package_dir: Path,
    settings: PeerSettings,
    threads: int,
    progress: bool,
) -> tuple[dict[str, Any], Any]:
    from adinspect.config import preset_config
    from adinspect.fitting.fit import fit_product
    from adinspect.fitting.pipeline import TorchPipeline
    from adinspect.runtime.inspector import Inspector

    method: dict[str, Any] = {"image_size": settings.size}
    if settings.square:
        method["input_shape"] = (settings.size, settings.size)
    backbone = {"name": settings.backbone}  # its packaged weights, as PatchCore's
    overrides: dict[str, Any] = {"method": method, "backbone": backbone, "seed": settings.seed}
    config = preset_config(PRESET, name, **overrides)
    t0 = time.perf_counter()
    held = [settings.backbone]  # the default fit's choice with PatchCore's backbone and input held
    report = fit_product(
        data, config, package_dir, overwrite=True, progress=progress, auto=True, backbones=held, sizes=False
    )
    fit_seconds = time.perf_counter() - t0
    inspector = Inspector(package_dir, threads=threads)
    spec = inspector.package.preprocess
    tensors = _latency_inputs(dataset.test, spec, settings.latency_images)
    result = {
        "metrics": _metrics(inspector, dataset.test, spec, settings, progress),
        "fit_seconds": fit_seconds,
        "fit_steps_seconds": report.seconds,
        "latency_ms": {
            "onnxruntime": _latency(inspector.run, tensors, settings.warmup),
            "torch_eager": _latency(TorchPipeline.from_package(package_dir).run, tensors, settings.warmup),
        },
        "details": {
            "preset": PRESET,
            "backbone": config.backbone.name,
            "choice": report.choice,
            "n_references": report.n_references,
            "n_scored": report.n_scored,
            "weights_sha256": inspector.package.manifest.backbone.weights_sha256,
            "package": str(package_dir),
        },
    }
    return result, spec


def _bench_patchcore(dataset: Dataset, spec: Any, settings: PeerSettings, progress: bool) -> dict[str, Any]:
    runner = PatchCoreRunner(settings.layers, settings.coreset, backbone=settings.backbone)
    t0 = time.perf_counter()
    steps = runner.fit(_batches(dataset.train, spec, settings.batch_size, progress), seed=settings.seed)
    fit_seconds = time.perf_counter() - t0
    tensors = _latency_inputs(dataset.test, spec, settings.latency_images)
    return {
        "metrics": _metrics(runner, dataset.test, spec, settings, progress),
        "fit_seconds": fit_seconds,
        "fit_steps_seconds": steps,
        "latency_ms": {"torch_eager": _latency(runner.run, tensors, settings.warmup)},
        "details": {
            "implementation": "anomalib.models.image.patchcore.torch_model.PatchcoreModel",
            "backbone": f"timm tf_{settings.backbone} (pretrained=False), weights loaded strictly",
            "layers": list(runner.layers),
            "coreset": settings.coreset,
            "bank_size": runner.bank_size,
            "num_neighbors": runner.model.num_neighbors,
            "weights_sha256": runner.weights.sha256,
        },
    }


def _metrics(runner: Any, samples: list[Sample], spec: Any, settings: PeerSettings, progress: bool) -> dict:
    """The four metrics of `runner.run` over the test split, maps and masks at the package's input."""
    from adinspect.evaluation.evaluate import collect
    from adinspect.metrics import compute_metrics

    data = collect(runner, samples, spec.shape, spec, batch_size=settings.batch_size, progress=progress)
    labels = np.array([s.label for s in samples])
    return compute_metrics(data.scores, labels, data.maps, data.masks, names=METRICS)


def _batches(paths: list[Path], spec: Any, batch_size: int, progress: bool) -> Iterator[np.ndarray]:
    from adinspect.geometry import preprocess_batch
    from adinspect.imageio import read_image

    for start in tqdm(range(0, len(paths), batch_size), desc="patchcore fit", disable=not progress):
        yield preprocess_batch([read_image(p) for p in paths[start : start + batch_size]], spec)


def _latency_inputs(samples: list[Sample], spec: Any, n: int) -> list[np.ndarray]:
    """The first n test images as (1, 3, H_in, W_in) tensors (the same ones for both methods)."""
    from adinspect.geometry import preprocess
    from adinspect.imageio import read_image

    return [preprocess(read_image(s.path), spec)[None] for s in samples[:n]]


def _latency(run: Any, tensors: list[np.ndarray], warmup: int) -> dict[str, float]:
    """Milliseconds per image at batch size 1, each image once, after `warmup` untimed calls."""
    from adinspect.benchmarks.inprocess import latency_stats, time_calls

    time_calls(partial(run, tensors[0]), warmup, 0)
    return latency_stats([ms for x in tensors for ms in time_calls(partial(run, x), 0, 1)])


def _open_test_set(data: Path) -> Dataset:
    dataset = open_dataset(data)
    labels = {s.label for s in dataset.test}
    if not dataset.train or labels != {0, 1}:
        raise PeerError(
            f"{data}: bench-peer needs good training images and good and defective test images with "
            "masks (MVTec layout: train/good/, test/good/, test/<defect>/, ground_truth/<defect>/)"
        )
    return dataset


def _unique_names(data_dirs: Sequence[Path]) -> list[str]:
    """Product names from the folder names (lower-case identifiers), made unique with a suffix."""
    names: list[str] = []
    for data in data_dirs:
        base = re.sub(r"[^a-z0-9_]", "_", Path(data).resolve().name.lower()).strip("_") or "product"
        base = base if base[0].isalpha() else f"p_{base}"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def _protocol(settings: PeerSettings) -> dict[str, str]:
    s = settings.size
    shape = (
        f"{s} x {s} whatever the images' aspect"
        if settings.square
        else (f"short side {s}, H x W from the training images' aspect")
    )
    return {
        "inputs": "the same tensors for both: adinspect's preprocess (resize to the package's input, "
        f"{shape}; ImageNet mean/std)",
        "adinspect": "the default fit (preset and the choice from the good images) with PatchCore's backbone",
        "metrics": "adinspect.metrics.compute_metrics on maps at that input, masks resized to it (nearest)",
        "fit_seconds": "wall time: adinspect fit_product (embed, bank, calibration, ONNX export, parity "
        "check, package); PatchCore training pass and coreset",
        "latency_ms": "per image, batch size 1, tensor in, map and score out",
    }


def _environment(anomalib_version: str) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {p: md.version(p) for p in ("adinspect", "torch", "timm", "onnxruntime")}
    return {
        "versions": {**versions, "anomalib": anomalib_version},
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
