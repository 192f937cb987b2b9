"""A trained InvAD → a unified model package (`package/manifest.py` describes the files).

First the per-position statistics of the distance map, from an equal number of each product's
training images (`position_statistics`); the graph standardises its maps with them. Then one pass
over every product's held-out good images (never trained on) runs the torch graph and
the exported `invad.onnx` side by side: the torch scores calibrate each product's threshold with
the project's rule (`fitting.calibration.calibrate`), the differences are the package's parity
check. The package is assembled in a temporary sibling folder and moved into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from adinspect import __version__
from adinspect.config import check_product_name
from adinspect.contracts import UNIFIED
from adinspect.errors import InputError
from adinspect.features.backbones import WeightsError, WeightsInfo, create_backbone
from adinspect.fitting.calibration import Calibration, calibrate
from adinspect.fitting.write import finalise_manifest, replace_dir
from adinspect.geometry import PreprocessSpec, preprocess_batch
from adinspect.imageio import read_image
from adinspect.models.invad import INVAD_VERSION, InvAD, InvADConfig
from adinspect.models.invad_graph import InvADGraph, export_invad
from adinspect.package import (
    FORMAT_VERSION,
    BackboneRecord,
    Manifest,
    ModelPackage,
    PackageError,
    ProductThreshold,
    UnifiedRecord,
    sha256_of,
    write_manifest,
)
from adinspect.package.card import write_unified_card
from adinspect.runtime.sessions import make_session
from adinspect.train.checkpoint import load_weights, read_meta, save_weights
from adinspect.train.unified_data import ProductImages
from adinspect.train.unified_settings import UnifiedSettings

ONNX_FILE = "invad.onnx"
WEIGHTS = "invad.safetensors"
POSITION = "position.safetensors"
PER_PRODUCT = 32  # training images per product for the position statistics
SETTINGS = "unified.json"
CALIBRATION = "calibration.json"


@dataclass
class PackageReport:
    thresholds: dict[str, float]
    parity: dict[str, float]  # max |Δ| between ONNX Runtime and torch on the held-out images
    size_bytes: int


def model_name(out_dir: Path) -> str:
    """The unified model's name (its served model is named after it): the --out folder's name."""
    try:
        return check_product_name(Path(out_dir).name)
    except ValueError as exc:
        raise InputError(f"--out {out_dir}: the folder's name names the model; {exc}") from exc


def position_statistics(
    graph: InvADGraph, products: list[ProductImages], pre: PreprocessSpec, seed: int, batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (S, S) of the blurred distance over up to `PER_PRODUCT` training
    images of every product (the same number from each, chosen with `seed`): product-agnostic."""
    rng = np.random.default_rng(seed)
    count = min(PER_PRODUCT, *(len(p.train) for p in products))
    paths = [p.train[i] for p in products for i in sorted(rng.choice(len(p.train), count, replace=False))]
    total = torch.zeros(pre.image_size, pre.image_size, dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(paths), batch_size):
        batch = preprocess_batch([read_image(p) for p in paths[start : start + batch_size]], pre)
        with torch.no_grad():
            d = graph.distance(graph.features(torch.from_numpy(batch)))[:, 0].double()
        total += d.sum(0)
        squares += (d * d).sum(0)
    mean = total / len(paths)
    std = torch.sqrt(torch.clamp(squares / len(paths) - mean * mean, min=0.0))
    return mean.float(), std.float()


def _holdout_pass(
    graph: InvADGraph, session, paths: list[Path], pre: PreprocessSpec, batch_size: int = 8
) -> tuple[np.ndarray, float, float]:
    """Torch scores (N,) of `paths`, and the largest map and score differences to ONNX Runtime."""
    scores, map_diff, score_diff = [], 0.0, 0.0
    for start in range(0, len(paths), batch_size):
        batch = preprocess_batch([read_image(p) for p in paths[start : start + batch_size]], pre)
        with torch.no_grad():
            amap, score = graph(torch.from_numpy(batch))
        ort_map, ort_score = session.run([UNIFIED.anomaly_map, UNIFIED.score], {UNIFIED.image: batch})
        map_diff = max(map_diff, float(np.abs(ort_map - amap.numpy()).max()))
        score_diff = max(score_diff, float(np.abs(ort_score - score.numpy()).max()))
        scores.append(score.numpy())
    return np.concatenate(scores), map_diff, score_diff


def _calibrations(
    graph: InvADGraph, tmp: Path, products: list[ProductImages], pre: PreprocessSpec, target_frr: float
) -> tuple[dict[str, Calibration], dict[str, float]]:
    session = make_session(tmp / ONNX_FILE, threads=torch.get_num_threads())
    calibrations, parity = {}, {"map_max_abs_diff": 0.0, "score_max_abs_diff": 0.0, "score_scale": 0.0}
    for product in products:
        held = list(product.holdout)
        scores, map_diff, score_diff = _holdout_pass(graph, session, held, pre)
        cal = calibrate(scores, [str(p) for p in held], target_frr, "held out of training")
        cal.holdout_files = [Path(os.path.relpath(p, product.root)).as_posix() for p in held]
        cal.holdout_sha256 = [sha256_of(p) for p in held]
        calibrations[product.name] = cal
        parity["map_max_abs_diff"] = max(parity["map_max_abs_diff"], map_diff)
        parity["score_max_abs_diff"] = max(parity["score_max_abs_diff"], score_diff)
        parity["score_scale"] = max(parity["score_scale"], float(np.abs(scores).max()))
    return calibrations, parity


def _manifest(
    name: str,
    tmp: Path,
    pre: PreprocessSpec,
    info: WeightsInfo,
    backbone: str,
    products: list[ProductImages],
    calibrations: dict[str, Calibration],
) -> Manifest:
    entries = {
        p.name: ProductThreshold(
            threshold=calibrations[p.name].threshold,
            threshold_rule=calibrations[p.name].rule,
            n_train=len(p.train),
            n_holdout=len(p.holdout),
        )
        for p in products
    }
    # the backbone runs inside invad.onnx: no separate feature graph, so no feature shapes (0)
    record = BackboneRecord(
        name=backbone, weights_source=info.source, weights_sha256=info.sha256, random_weights=info.random,
        feature_dim=0, feature_shape=(0, 0), global_channels=0, global_shape=(0, 0),
    )  # fmt: skip
    files = [ONNX_FILE, WEIGHTS, POSITION, SETTINGS, CALIBRATION]
    return Manifest(
        format_version=FORMAT_VERSION,
        adinspect_version=__version__,
        product=name,
        preprocess=pre,
        backbone=record,
        threshold=max(e.threshold for e in entries.values()),
        threshold_rule="one threshold per product (unified.products); this is the largest",
        n_references=sum(len(p.train) for p in products),
        files={f: sha256_of(tmp / f) for f in files},
        unified=UnifiedRecord(products=entries),
    )


def write_unified_package(
    out_dir: Path,
    graph: InvADGraph,
    products: list[ProductImages],
    settings: UnifiedSettings,
    pre: PreprocessSpec,
    info: WeightsInfo,
    meta: dict,
    seconds: dict[str, float],
) -> PackageReport:
    """Calibrate, export, check parity and write the package to `out_dir` (replacing it, if any,
    only once the new one is complete). `settings` is the run's `UnifiedSettings`; `meta` goes into
    the weights file (model config, products, backbone); `seconds` gains `package`."""
    t0 = time.perf_counter()
    name = model_name(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        graph.set_position_statistics(*position_statistics(graph, products, pre, settings.seed))
        save_file(
            {"mean": graph.position_mean[0, 0], "scale": graph.position_scale[0, 0]}, str(tmp / POSITION)
        )
        export_invad(graph, tmp / ONNX_FILE)
        save_weights(tmp / WEIGHTS, graph.model, meta)
        for written in (WEIGHTS, POSITION):
            (tmp / written).chmod(0o644)  # safetensors writes 0600; servers may run as another user
        calibrations, parity = _calibrations(graph, tmp, products, pre, settings.target_frr)
        record = {
            "settings": settings.model_dump(),
            "products": {p.name: str(Path(p.root).resolve()) for p in products},
        }
        (tmp / SETTINGS).write_text(json.dumps(record, indent=2) + "\n")
        cal_json = {n: c.__dict__ for n, c in calibrations.items()}
        (tmp / CALIBRATION).write_text(json.dumps(cal_json, indent=2) + "\n")
        manifest = _manifest(name, tmp, pre, info, settings.backbone, products, calibrations)
        write_manifest(tmp, manifest)
        seconds["package"] = time.perf_counter() - t0
        count = min(PER_PRODUCT, *(len(p.train) for p in products))
        write_unified_card(
            tmp,
            manifest,
            calibrations,
            parity=parity,
            seconds=seconds,
            settings=record,
            position_images=count,
        )
        finalise_manifest(tmp, "model_card.md")
        ModelPackage.load(tmp)  # the package as written must load and verify
        size = sum(f.stat().st_size for f in tmp.iterdir() if f.is_file())
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackageReport({n: c.threshold for n, c in calibrations.items()}, parity, size)


def load_unified_graph(model_dir: Path) -> InvADGraph:
    """The torch graph of a unified package (the eager reference of its invad.onnx), in eval mode.

    Raises:
        PackageError: not a unified package, or corrupt; WeightsError: the backbone weights on this
            machine are not the ones it was trained with.
    """
    package = ModelPackage.load(Path(model_dir))
    if not package.is_unified:
        raise PackageError(f"{model_dir}: not a unified package (from `adinspect train-unified`)")
    meta = read_meta(package.path(WEIGHTS))
    model = InvAD(InvADConfig.from_dict(meta["invad"]))
    load_weights(package.path(WEIGHTS), model, {"kind": meta.get("kind"), "invad_version": INVAD_VERSION})
    record = package.manifest.backbone
    extractor, _, info = create_backbone(record.name)
    if info.sha256 != record.weights_sha256:
        raise WeightsError(
            f"{model_dir}: trained with backbone weights {record.weights_sha256}, but {info.source} has "
            f"{info.sha256}; restore the original weights file"
        )
    graph = InvADGraph(extractor.requires_grad_(False), model.eval()).eval()
    position = load_file(str(package.path(POSITION)))
    graph.position_mean.copy_(position["mean"].view(graph.position_mean.shape))
    graph.position_scale.copy_(position["scale"].view(graph.position_scale.shape))
    return graph
