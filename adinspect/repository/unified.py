"""Serving a unified package (one InvAD model for several products): one model for all of them.

For a package named `m` with products p1..pn the repository holds ONE model `invad_m` running
invad.onnx, and per product a `postprocess_<p>` (the shared postprocess code with the product's
threshold and name baked into its parameters) and the ensemble `inspect_<p>` the client calls, as
for any product:

- cpu: `inspect_<p>` = invad_m (Python: decode, preprocess, invad.onnx on ONNX Runtime)
  → postprocess_<p>;
- gpu: `inspect_<p>` = preprocess → invad_m (onnxruntime_onnx with TensorRT, or a plan)
  → postprocess_<p>.

The model never sees the product: the request names it by calling `inspect_<p>`, whose last step
holds p's threshold. Packages from `adinspect fit` and unified ones are built into separate
repositories (their shared steps differ).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adinspect import __version__
from adinspect.contracts import (
    INSPECT_IN,
    INSPECT_OUT,
    POSTPROCESS_IN,
    PREPROCESS_MODEL,
    PREPROCESS_OUT,
    UNIFIED,
    UNIFIED_OUT,
    product_postprocess_model,
    unified_model,
)
from adinspect.package import ModelPackage
from adinspect.repository.configs import (
    Step,
    ensemble,
    limits,
    onnx_model,
    postprocess_model,
    preprocess_model,
    python_model,
)
from adinspect.repository.gpu import select_plan, sha256_bytes
from adinspect.repository.monitoring import MONITORING_FILE, MonitoringTable, ProductCalibration, product_id
from adinspect.repository.packages import RepositoryError
from adinspect.repository.settings import Flavor, RepositorySettings
from adinspect.repository.tensors import ensemble_io, tensor
from adinspect.repository.write import model_source, write_model

ONNX_FILE = "invad.onnx"  # in the package (the served copy is the model's model.onnx)


def check_unified(packages: Sequence[ModelPackage]) -> bool:
    """True when every package is unified, False when none is; mixing them, or unified packages
    with different inputs (they share `preprocess`), is refused."""
    unified = [p for p in packages if p.is_unified]
    if not unified:
        return False
    if len(unified) != len(packages):
        other = next(p for p in packages if not p.is_unified)
        raise RepositoryError(
            f"{unified[0].root} is a unified package and {other.root} is not: they share no step; "
            "build them into separate repositories"
        )
    names = [p.product for p in unified]
    if len(set(names)) != len(names):
        raise RepositoryError(
            f"unified packages {[str(p.root) for p in unified]} share a model name (their folder "
            "names); each becomes a served model invad_<name>: rename one and rebuild"
        )
    for package in unified[1:]:
        if package.preprocess != unified[0].preprocess:
            raise RepositoryError(
                f"{unified[0].root} and {package.root} have different input specs; build them into "
                "separate repositories"
            )
    return True


def calibration_of(package: ModelPackage, product: str) -> ProductCalibration:
    """A unified package's product for the monitor: its threshold and held-out scores."""
    record = json.loads(package.path("calibration.json").read_text())[product]
    return ProductCalibration(
        product=product,
        product_id=product_id(product),
        threshold=package.threshold_for(product),
        calibration_scores=[float(s) for s in record["holdout_scores"]],
    )


def _unified_python(name: str, settings: RepositorySettings, spec_json: str, size: int) -> dict[str, Any]:
    """`invad_<m>` of the cpu flavour: the ensemble's image inputs → map, score, original size."""
    inputs = [t for t in ensemble_io(settings.raw_size)[0] if t["name"] != INSPECT_IN.map_format]
    outputs = [
        tensor(UNIFIED_OUT.anomaly_map, "TYPE_FP32", [1, size, size]),
        tensor(UNIFIED_OUT.score, "TYPE_FP32", [1]),
        tensor(UNIFIED_OUT.original_size, "TYPE_INT32", [2]),
    ]
    params = {
        "preprocess_spec": spec_json,
        **limits(settings),
        "intra_op_threads": str(settings.intra_op_threads),
        "warmup": json.dumps(settings.warmup),
    }
    return python_model(name, settings, inputs, outputs, params)


def _unified_io(size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`invad_<m>` of the gpu flavour: invad.onnx's tensors ((B,) score served as [1])."""
    return (
        [tensor(UNIFIED.image, "TYPE_FP32", [3, size, size])],
        [
            tensor(UNIFIED.anomaly_map, "TYPE_FP32", [1, size, size]),
            tensor(UNIFIED.score, "TYPE_FP32", [1], reshape={"shape": []}),
        ],
    )


def _postprocess(product: str, threshold: float, settings: RepositorySettings, size: int) -> dict[str, Any]:
    """`postprocess_<p>`: postprocess's config without the threshold and product-id inputs, which
    its parameters hold instead."""
    config = postprocess_model(settings, (size, size))
    baked = (POSTPROCESS_IN.threshold, POSTPROCESS_IN.product_id, POSTPROCESS_IN.defect_type)
    inputs = [t for t in config["input"] if t["name"] not in baked]
    params = {"threshold": repr(threshold), "product": product}
    return python_model(product_postprocess_model(product), settings, inputs, config["output"], params)


def unified_steps(model: str, product: str, flavor: Flavor, raw: bool = False) -> list[Step]:
    """The steps of `inspect_<product>` for a unified package's model `invad_<model>` (`raw`: the
    ensemble takes image_raw, built with `--raw-size`)."""
    steps = []
    image = {name: name for name in (INSPECT_IN.image_bytes, *([INSPECT_IN.image_raw] if raw else []))}
    if flavor == "gpu":
        steps.append(
            Step(
                PREPROCESS_MODEL,
                image,
                {PREPROCESS_OUT.image: "image", PREPROCESS_OUT.original_size: "original_size"},
            )
        )
        steps.append(
            Step(
                unified_model(model),
                {UNIFIED.image: "image"},
                {UNIFIED.anomaly_map: "map", UNIFIED.score: "raw_score"},
            )
        )
    else:
        outputs = {
            UNIFIED_OUT.anomaly_map: "map",
            UNIFIED_OUT.score: "raw_score",
            UNIFIED_OUT.original_size: "original_size",
        }
        steps.append(Step(unified_model(model), image, outputs))
    post = {
        POSTPROCESS_IN.anomaly_map: "map",
        POSTPROCESS_IN.score: "raw_score",
        POSTPROCESS_IN.original_size: "original_size",
        POSTPROCESS_IN.map_format: INSPECT_IN.map_format,
    }
    steps.append(Step(product_postprocess_model(product), post, {name: name for name in INSPECT_OUT}))
    return steps


def write_unified(
    root: Path,
    packages: Sequence[ModelPackage],
    flavor: Flavor,
    settings: RepositorySettings,
    engines_dir: Path | None = None,
) -> None:
    """Write every model serving `packages` (all unified) into `root`: the shared preprocess once
    (gpu), then each package's model and each product's threshold step and ensemble."""
    size = packages[0].preprocess.image_size
    spec_json = packages[0].preprocess.model_dump_json()
    if flavor == "gpu":
        write_model(
            root,
            preprocess_model(settings, spec_json, (size, size)),
            {"model.py": model_source("preprocess")},
        )
    for package in packages:
        name, onnx = unified_model(package.product), package.path(ONNX_FILE).read_bytes()
        if flavor == "cpu":
            config = _unified_python(name, settings, spec_json, size)
            write_model(root, config, {"model.py": model_source("unified"), "model.onnx": onnx})
        else:
            plan = select_plan(engines_dir, name, onnx, settings.precision_of(name), settings.max_batch_size)
            config = onnx_model(name, settings, _unified_io(size), plan is not None, sha256_bytes(onnx))
            write_model(root, config, {"model.plan": plan} if plan is not None else {"model.onnx": onnx})
        for product in package.products:
            _write_product(root, package, product, flavor, settings)


def _write_product(
    root: Path, package: ModelPackage, product: str, flavor: Flavor, settings: RepositorySettings
) -> None:
    """`postprocess_<product>` with the product's threshold, and the ensemble `inspect_<product>`."""
    threshold = package.threshold_for(product)
    table = MonitoringTable(products=[calibration_of(package, product)])
    files = {
        "model.py": model_source("postprocess"),
        MONITORING_FILE: table.model_dump_json(indent=2).encode(),
    }
    write_model(root, _postprocess(product, threshold, settings, package.preprocess.image_size), files)
    params = {
        "product": product,
        "threshold": repr(threshold),
        "random_weights": json.dumps(package.manifest.backbone.random_weights),
        "adinspect_version": __version__,
        "package_sha256": package.manifest_sha256(),
        "model": unified_model(package.product),
    }
    steps = unified_steps(package.product, product, flavor, raw=settings.raw_size is not None)
    write_model(root, ensemble(product, steps, params, raw_size=settings.raw_size), {})
