"""Writing the models of a Triton repository: each model's directory (config.pbtxt, the version
with its files, and for Python-backend models their `model.py` and a copy of the adinspect library),
one product's models, and the gpu flavour's shared ones."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import adinspect
from adinspect import __version__
from adinspect.contracts import (
    BACKBONE_MODEL,
    POSTPROCESS_MODEL,
    PREPROCESS_MODEL,
    residual_model,
    seg_model,
    shared_model,
)
from adinspect.package import RESIDUAL_DATA, ModelPackage
from adinspect.repository.bake import bake_seg, bake_threshold
from adinspect.repository.configs import (
    ensemble,
    ensemble_steps,
    onnx_model,
    postprocess_model,
    preprocess_model,
    product_model,
    seg_step,
)
from adinspect.repository.gpu import select_plan, sha256_bytes
from adinspect.repository.monitoring import MONITORING_FILE, MonitoringTable
from adinspect.repository.packages import RepositoryError, monitoring_entry, package_seg
from adinspect.repository.pbtxt import to_pbtxt
from adinspect.repository.settings import Flavor, RepositorySettings
from adinspect.repository.tensors import Shapes

LIBRARY = "adinspect"  # the library copy's folder name inside a Python model's version directory


def model_source(name: str) -> bytes:
    return resources.files("adinspect.repository.models").joinpath(f"{name}.py").read_bytes()


def _copy_library(version_dir: Path) -> None:
    """The installed adinspect's Python sources → `<version_dir>/adinspect/` (what model.py imports)."""
    source = Path(adinspect.__file__).resolve().parent
    shutil.copytree(
        source, version_dir / LIBRARY, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    )


def write_model(
    root: Path, config: dict[str, Any], files: Mapping[str, bytes | Path], version_number: int = 1
) -> None:
    model_dir = root / config["name"]
    if model_dir.resolve().parent != root.resolve():  # names are validated; this is the last guard
        raise RepositoryError(f"model name {config['name']!r} would write outside {root}")
    version = model_dir / str(version_number)
    version.mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(to_pbtxt(config))
    for name, content in files.items():
        if isinstance(content, Path):
            _link_or_copy(content, version / name)
        else:
            (version / name).write_bytes(content)
    if "model.py" in files:
        _copy_library(version)


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link a package file (a bank can be gigabytes), or copy it across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _residual_data(package: ModelPackage) -> dict[str, Path]:
    """residual.onnx's external data file (large banks): it must sit beside model.onnx."""
    return {RESIDUAL_DATA: package.path(RESIDUAL_DATA)} if package.has(RESIDUAL_DATA) else {}


def _write_onnx_model(
    root: Path,
    name: str,
    settings: RepositorySettings,
    io: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    onnx: bytes,
    engines_dir: Path | None,
    version: int = 1,
    external_data: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """One ONNX step of the gpu flavour at `version` (pinned); a plan from `engines_dir` replaces it
    if it was built from exactly these ONNX bytes at this model's precision (else EngineError).
    `external_data` (a large bank's data file) goes beside model.onnx unless a plan replaces it."""
    precision = settings.precision_of(name)
    plan = select_plan(engines_dir, name, onnx, precision, settings.max_batch_size)
    config = pinned(onnx_model(name, settings, io, plan is not None, sha256_bytes(onnx)), [version])
    files: dict[str, bytes | Path] = {"model.plan": plan} if plan is not None else {"model.onnx": onnx}
    if plan is None and external_data:
        files.update(external_data)
    write_model(root, config, files, version)
    return config


def write_shared_models(
    root: Path,
    packages: Sequence[ModelPackage],
    settings: RepositorySettings,
    shapes: Shapes,
    engines_dir: Path | None,
    suffix: str = "",
) -> None:
    """The gpu flavour's ensembles of the products of one backbone model: shared preprocess, backbone
    and postprocess (named with `suffix` when the repository serves several input shapes), and each
    product's own models."""
    spec = packages[0].preprocess.model_dump_json()
    write_model(
        root,
        preprocess_model(settings, spec, shapes.input_shape, shared_model(PREPROCESS_MODEL, suffix)),
        {"model.py": model_source("preprocess")},
    )
    backbone = packages[0].path("backbone.onnx").read_bytes()
    name = shared_model(BACKBONE_MODEL, suffix)
    _write_onnx_model(root, name, settings, shapes.backbone_io(), backbone, engines_dir)
    for package in packages:
        write_product(root, package, "gpu", settings, shapes, engines_dir, shared=suffix)
    table = MonitoringTable(products=[monitoring_entry(p) for p in packages])
    write_model(
        root,
        postprocess_model(settings, shapes.input_shape, shared_model(POSTPROCESS_MODEL, suffix)),
        {"model.py": model_source("postprocess"), MONITORING_FILE: table.model_dump_json(indent=2).encode()},
    )


def pinned(config: dict[str, Any], versions: Sequence[int]) -> dict[str, Any]:
    """The config serving exactly these versions (so a new one can load beside the old one)."""
    return {**config, "version_policy": {"specific": {"versions": sorted(versions)}}}


def _client_params(package: ModelPackage, seg: Any, settings: RepositorySettings) -> dict[str, str]:
    """What clients read from the ensemble's config: threshold, labels, versions, raw input size."""
    params = {
        "product": package.product,
        "threshold": repr(package.threshold if seg is None else seg.threshold),
        "random_weights": json.dumps(package.manifest.backbone.random_weights),
        "adinspect_version": __version__,
        "package_sha256": package.manifest_sha256(),
        # clients send raw pixels only at this size (else an encoded PNG): see RepositorySettings.raw_size
        "raw_size": "x".join(map(str, settings.raw_size)) if settings.raw_size else "",
    }
    if seg is not None:
        params["defect_types"] = json.dumps(list(seg.defect_types))
    return params


def write_product(
    root: Path,
    package: ModelPackage,
    flavor: Flavor,
    settings: RepositorySettings,
    shapes: Shapes,
    engines_dir: Path | None = None,
    version: int = 1,
    shared: str = "",
) -> dict[str, dict[str, Any]]:
    """Write one product's models at `version`: in the gpu flavour `residual_<p>`, `seg_<p>` (with
    ADClick-Seg) and the ensemble `inspect_<p>` pinned to them; in the cpu flavour the one model
    `inspect_<p>`, which carries the backbone, the baked residual and seg models and its monitoring table
    (`shared`, gpu: the suffix of the shared models the ensemble runs on, "" or "<H>x<W>").

    Returns:
        model name → the config written for it (`repo update` rewrites their version policies).
    """
    product = package.product
    residual = bake_threshold(package.path("residual.onnx"), package.threshold, product)
    seg = package_seg(package)
    params = _client_params(package, seg, settings)
    if flavor == "cpu":
        table = MonitoringTable(products=[monitoring_entry(package)])
        files: dict[str, bytes | Path] = {
            "model.py": model_source("inspect"),
            "backbone.onnx": package.path("backbone.onnx"),
            "model.onnx": residual,
            **_residual_data(package),
            MONITORING_FILE: table.model_dump_json(indent=2).encode(),
        }
        if seg is not None:
            files["seg.onnx"] = bake_seg(seg)
        spec_json = package.preprocess.model_dump_json()
        config = pinned(product_model(product, settings, params, spec_json), [version])
        write_model(root, config, files, version)
        return {config["name"]: config}
    written: dict[str, dict[str, Any]] = {}
    name = residual_model(product)
    io = shapes.residual_io()
    written[name] = _write_onnx_model(
        root, name, settings, io, residual, engines_dir, version, _residual_data(package)
    )
    raw = settings.raw_size is not None
    if seg is not None:
        name = seg_model(product)
        io = shapes.seg_io(len(seg.defect_types))
        written[name] = _write_onnx_model(root, name, settings, io, bake_seg(seg), engines_dir, version)
    steps = ensemble_steps(product, None if seg is None else seg_step(product), shared, raw=raw)
    config = ensemble(product, steps, params, {m: version for m in written}, settings.raw_size)
    write_model(root, config, {})
    written[config["name"]] = config
    return written
