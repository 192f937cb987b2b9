"""`adinspect repo build`: fitted model packages → a Triton model repository (DESIGN.md §6).

Checks before writing anything: every package loads (format version, checksums), product names
are unique, and all products share one backbone (name, weights, input spec, feature shapes).
The repository is assembled in a temporary sibling directory and moved into place at the end;
only directories listed in a previous build's marker file are replaced, so a README or other
files beside them survive. The marker is also the repository's manifest (`integrity.py`): the
SHA-256 of every file written, which `serve` verifies before starting.

Every Python-backend model carries a copy of the adinspect library it was built with, next to its
`model.py`: Triton's Python stub runs its own interpreter (it ignores PYTHONPATH and the launcher's
site-packages), so this is what makes a repository built from an installed wheel serve from any
folder, and what keeps served code and checksummed code the same.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

import adinspect
from adinspect import __version__
from adinspect.contracts import (
    BACKBONE_MODEL,
    RESIDUAL_OUT,
    SEG_OUT,
    residual_model,
    seg_model,
)
from adinspect.errors import InputError
from adinspect.package import RESIDUAL_DATA, ModelPackage, PackageError
from adinspect.repository.configs import (
    Flavor,
    RepositorySettings,
    Shapes,
    ensemble,
    ensemble_steps,
    onnx_model,
    postprocess_model,
    preprocess_model,
    product_model,
    seg_step,
)
from adinspect.repository.gpu import select_plan, sha256_bytes
from adinspect.repository.integrity import MARKER, RepositoryManifest, hash_models, read_manifest
from adinspect.repository.monitoring import (
    MONITORING_FILE,
    MonitoringTable,
    ProductCalibration,
    product_id,
    served_calibration,
)
from adinspect.repository.pbtxt import to_pbtxt
from adinspect.runtime.seg import SEG_META, SegInfo, seg_info

FLAVORS = ("cpu", "gpu")


class RepositoryError(InputError):
    """The packages cannot be served together, or the output is not ours to replace."""


@dataclass(frozen=True)
class BuildReport:
    out_dir: Path
    flavor: str
    products: list[str]
    models: list[str]


# ------------------------------------------------------------------------------------ checks


def load_packages(model_dirs: Sequence[Path]) -> list[ModelPackage]:
    """Load and verify every package; refuse duplicates and incompatible versions."""
    if not model_dirs:
        raise RepositoryError(
            "no model packages given; pass one or more directories written by `adinspect fit`"
        )
    packages = []
    for model_dir in model_dirs:
        try:
            packages.append(ModelPackage.load(Path(model_dir)))
        except PackageError as exc:
            raise RepositoryError(f"cannot serve {model_dir}: {exc}") from exc
    seen: dict[str, Path] = {}
    for package in packages:
        if package.product in seen:
            raise RepositoryError(
                f"two packages for product {package.product!r}: {seen[package.product]} and {package.root}; "
                "each product is served once (re-fit one under another --product name)"
            )
        seen[package.product] = package.root
        unknown = sorted(set(package.manifest.optional_models) - {"seg"})
        if unknown:
            raise RepositoryError(
                f"{package.root}: optional models {unknown} cannot be served (only 'seg' is); "
                "build the repository with a package from this adinspect version"
            )
    return packages


def backbone_identity(package: ModelPackage) -> dict[str, Any]:
    """What must be equal for products to share one `backbone` model."""
    record = package.manifest.backbone.model_dump(exclude={"weights_source"})
    method = package.config.method
    return {
        **record,
        "preprocess": package.preprocess.model_dump(mode="json"),
        "layer_dim": method.layer_dim,
        "aggregate_kernel": method.aggregate_kernel,
        "global_pool": method.global_pool,
    }


def check_shared_backbone(packages: Sequence[ModelPackage]) -> None:
    first = packages[0]
    reference = backbone_identity(first)
    for package in packages[1:]:
        other = backbone_identity(package)
        differing = [key for key in reference if reference[key] != other[key]]
        if differing:
            detail = ", ".join(f"{k}: {reference[k]!r} vs {other[k]!r}" for k in differing)
            raise RepositoryError(
                f"products {first.product!r} ({first.root}) and {package.product!r} ({package.root}) "
                f"cannot share one backbone ({detail}); re-fit them with the same backbone and preset, "
                "or build separate repositories"
            )


def _onnx_modules():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise RepositoryError("building a repository needs the `onnx` package: pip install onnx") from exc
    return onnx, helper, numpy_helper


def _add_batch_constant(model, like: str, name: str, value: float, elem_type: int | None = None) -> None:
    """Add output `name` (B,): `value` repeated over the batch of output `like` (B,), float32
    unless `elem_type` (an onnx.TensorProto type) says otherwise."""
    onnx, helper, numpy_helper = _onnx_modules()
    dtype = np.float32 if elem_type is None else onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    shape_name = f"{name}_batch_shape"
    constant = numpy_helper.from_array(np.array([value], dtype=dtype), name="value")
    model.graph.node.extend(
        [
            helper.make_node("Shape", [like], [shape_name], name=f"{name}_shape"),
            helper.make_node("ConstantOfShape", [shape_name], [name], value=constant, name=name),
        ]
    )
    _append_output(model.graph, like, name, elem_type)


def _append_output(graph, like: str, name: str, elem_type: int | None) -> None:
    output = copy.deepcopy({o.name: o for o in graph.output}[like])
    output.name = name
    if elem_type is not None:
        output.type.tensor_type.elem_type = elem_type
    graph.output.append(output)


def _check_outputs(path: Path, model, expected: Sequence[str], added: Sequence[str]) -> None:
    names = [o.name for o in model.graph.output]
    if not set(expected) <= set(names) or set(added) & set(names):
        raise RepositoryError(
            f"{path}: expected outputs {list(expected)} without {list(added)}, got {names}; "
            "re-create it with this adinspect version"
        )


def bake_threshold(residual_onnx: Path, threshold: float, product: str) -> bytes:
    """The residual model with extra outputs `threshold` (B,) float32, the product's threshold,
    and `product_id` (B,) int32, which the shared `postprocess` counts metrics under.

    Done with ONNX graph edits (Shape → ConstantOfShape) so the product's constants — bank and
    threshold — live in one model and `postprocess` stays shared across products.
    """
    onnx, _, _ = _onnx_modules()
    # a large bank stays in its external data file (copied beside model.onnx), never in memory
    model = onnx.load(str(residual_onnx), load_external_data=False)
    baked = [RESIDUAL_OUT.threshold, RESIDUAL_OUT.product_id]
    _check_outputs(residual_onnx, model, list(RESIDUAL_OUT)[:3], baked)
    _add_batch_constant(model, RESIDUAL_OUT.score, RESIDUAL_OUT.threshold, threshold)
    _add_batch_constant(
        model, RESIDUAL_OUT.score, RESIDUAL_OUT.product_id, product_id(product), onnx.TensorProto.INT32
    )
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        onnx.checker.check_model(model)  # with external data the checker needs the file beside it
    return model.SerializeToString()


def bake_seg(info: SegInfo) -> bytes:
    """seg.onnx with extra outputs `threshold` (B,) float32, the seg model's calibrated threshold,
    and `defect_name` (B,) string, the name of the `defect_type` index (a Gather over the
    package's defect-type names, all empty when the package names no type), so `postprocess`
    stays shared and knows no product."""
    onnx, helper, numpy_helper = _onnx_modules()
    model = onnx.load(str(info.onnx))
    expected = [SEG_OUT.anomaly_map, SEG_OUT.score, SEG_OUT.defect_type, SEG_OUT.type_scores]
    _check_outputs(info.onnx, model, expected, [SEG_OUT.threshold, SEG_OUT.defect_name])
    _add_batch_constant(model, SEG_OUT.score, SEG_OUT.threshold, info.threshold)
    names = [(info.type_name(i) or "").encode() for i in range(len(info.defect_types))]
    table = numpy_helper.from_array(np.array(names, dtype=object), "names")
    model.graph.initializer.append(table)
    model.graph.node.append(
        helper.make_node(
            "Gather", ["names", SEG_OUT.defect_type], [SEG_OUT.defect_name], axis=0, name="names"
        )
    )
    _append_output(model.graph, SEG_OUT.defect_type, SEG_OUT.defect_name, onnx.TensorProto.STRING)
    onnx.checker.check_model(model)
    return model.SerializeToString()


# ------------------------------------------------------------------------------------ writing


LIBRARY = "adinspect"  # the library copy's folder name inside a Python model's version directory


def _model_source(name: str) -> bytes:
    return resources.files("adinspect.repository.models").joinpath(f"{name}.py").read_bytes()


def _copy_library(version_dir: Path) -> None:
    """The installed adinspect's Python sources → `<version_dir>/adinspect/` (what model.py imports)."""
    source = Path(adinspect.__file__).resolve().parent
    shutil.copytree(
        source, version_dir / LIBRARY, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    )


def _write_model(
    root: Path, config: dict[str, Any], files: dict[str, bytes | Path], version_number: int = 1
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
    _write_model(root, config, files, version)
    return config


def build_repository(
    model_dirs: Sequence[Path],
    flavor: Flavor,
    out_dir: Path,
    settings: RepositorySettings | None = None,
    engines_dir: Path | None = None,
) -> BuildReport:
    """Write the Triton repository serving `inspect_<product>` for every package.

    Args:
        model_dirs: packages written by `adinspect fit`, one per product, sharing one backbone.
        flavor: "cpu" (Python backend + ONNX Runtime) or "gpu" (ORT+TensorRT or TensorRT plans).
        out_dir: the repository; models from an earlier build there are replaced, other files kept.
        settings: batching, instances and limits.
        engines_dir: gpu only: `<model>.plan` files from export/build_trt.py, used where present.

    Raises:
        RepositoryError: unknown flavour, bad or duplicate packages, differing backbones, foreign
            models in out_dir.
    """
    if flavor not in FLAVORS:
        raise RepositoryError(f"flavor must be one of {list(FLAVORS)}, got {flavor!r}")
    if engines_dir is not None and flavor != "gpu":
        raise RepositoryError(
            f"TensorRT engines ({engines_dir}) are only used by the gpu flavour, got {flavor!r}"
        )
    settings = settings or RepositorySettings()
    packages = load_packages(model_dirs)
    check_shared_backbone(packages)
    out_dir = Path(out_dir)
    previous = _previous_models(out_dir)
    shapes = Shapes.of(packages[0])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if flavor == "cpu":
            for package in packages:
                write_product(tmp, package, flavor, settings, shapes)
        else:
            _write_shared_models(tmp, packages, settings, shapes, engines_dir)
        models = sorted(p.name for p in tmp.iterdir() if p.is_dir())
        _check_precision_names(settings, models)
        marker = RepositoryManifest(
            adinspect_version=__version__,
            flavor=flavor,
            models=models,
            products={p.product: str(p.root.resolve()) for p in packages},
            settings=settings.model_dump(),
            backbone_sha256=packages[0].manifest.files["backbone.onnx"],
            preprocess=packages[0].preprocess.model_dump(mode="json"),
            files=hash_models(tmp, models),
        )
        _move_into_place(tmp, out_dir, previous, models, marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BuildReport(out_dir, flavor, [p.product for p in packages], models)


def _write_shared_models(
    root: Path,
    packages: Sequence[ModelPackage],
    settings: RepositorySettings,
    shapes: Shapes,
    engines_dir: Path | None,
) -> None:
    """The gpu flavour's ensembles: shared preprocess, backbone and postprocess, and each product's
    own models."""
    _write_model(
        root,
        preprocess_model(settings, packages[0].preprocess.model_dump_json(), shapes.image_size),
        {"model.py": _model_source("preprocess")},
    )
    backbone = packages[0].path("backbone.onnx").read_bytes()
    _write_onnx_model(root, BACKBONE_MODEL, settings, shapes.backbone_io(), backbone, engines_dir)
    for package in packages:
        write_product(root, package, "gpu", settings, shapes, engines_dir)
    table = MonitoringTable(products=[monitoring_entry(p) for p in packages])
    _write_model(
        root,
        postprocess_model(settings, shapes.image_size),
        {"model.py": _model_source("postprocess"), MONITORING_FILE: table.model_dump_json(indent=2).encode()},
    )


def pinned(config: dict[str, Any], versions: Sequence[int]) -> dict[str, Any]:
    """The config serving exactly these versions (so a new one can load beside the old one)."""
    return {**config, "version_policy": {"specific": {"versions": sorted(versions)}}}


def write_product(
    root: Path,
    package: ModelPackage,
    flavor: Flavor,
    settings: RepositorySettings,
    shapes: Shapes,
    engines_dir: Path | None = None,
    version: int = 1,
) -> dict[str, dict[str, Any]]:
    """Write one product's models at `version`: in the gpu flavour `residual_<p>`, `seg_<p>` (with
    ADClick-Seg) and the ensemble `inspect_<p>` pinned to them; in the cpu flavour the one model
    `inspect_<p>`, which carries the backbone, the baked residual and seg models and its monitoring table.

    Returns:
        model name → the config written for it (`repo update` rewrites their version policies).
    """
    product = package.product
    residual = bake_threshold(package.path("residual.onnx"), package.threshold, product)
    seg = _package_seg(package)
    params = {
        "product": product,
        "threshold": repr(package.threshold if seg is None else seg.threshold),
        "random_weights": json.dumps(package.manifest.backbone.random_weights),
        "adinspect_version": __version__,
        "package_sha256": package.manifest_sha256(),
    }
    if seg is not None:
        params["defect_types"] = json.dumps(list(seg.defect_types))
    if flavor == "cpu":
        table = MonitoringTable(products=[monitoring_entry(package)])
        files: dict[str, bytes | Path] = {
            "model.py": _model_source("inspect"),
            "backbone.onnx": package.path("backbone.onnx"),
            "model.onnx": residual,
            **_residual_data(package),
            MONITORING_FILE: table.model_dump_json(indent=2).encode(),
        }
        if seg is not None:
            files["seg.onnx"] = bake_seg(seg)
        spec_json = package.preprocess.model_dump_json()
        config = pinned(product_model(product, settings, params, spec_json), [version])
        _write_model(root, config, files, version)
        return {config["name"]: config}
    written: dict[str, dict[str, Any]] = {}
    name = residual_model(product)
    io = shapes.residual_io()
    written[name] = _write_onnx_model(
        root, name, settings, io, residual, engines_dir, version, _residual_data(package)
    )
    steps = ensemble_steps(product)
    if seg is not None:
        name = seg_model(product)
        io = shapes.seg_io(len(seg.defect_types))
        written[name] = _write_onnx_model(root, name, settings, io, bake_seg(seg), engines_dir, version)
        steps = ensemble_steps(product, seg_step(product))
    config = ensemble(product, steps, params, versions={m: version for m in written})
    _write_model(root, config, {})
    written[config["name"]] = config
    return written


def _check_precision_names(settings: RepositorySettings, models: list[str]) -> None:
    unknown = sorted(set(settings.model_precision) - set(models))
    if unknown:
        raise RepositoryError(
            f"--precision names models {unknown} this repository lacks; its models: {models}"
        )


def _package_seg(package: ModelPackage) -> SegInfo | None:
    try:
        return seg_info(package)
    except PackageError as exc:
        raise RepositoryError(f"cannot serve the seg model of {package.root}: {exc}") from exc


def monitoring_entry(package: ModelPackage) -> ProductCalibration:
    """The product's served threshold and calibration scores, for postprocess's drift metrics."""
    seg = _package_seg(package)
    if seg is None:
        return served_calibration(package, None, package.threshold)
    return served_calibration(package, package.path(SEG_META), seg.threshold)


def _previous_models(out_dir: Path) -> list[str]:
    """Model dirs of an earlier build (from its marker); refuse to mix with foreign model dirs."""
    if not out_dir.exists():
        return []
    if not out_dir.is_dir():
        raise RepositoryError(f"{out_dir} exists and is not a directory")
    try:
        manifest = read_manifest(out_dir)
    except InputError as exc:
        raise RepositoryError(f"{exc}; refusing to replace anything in {out_dir}") from exc
    previous = manifest.models if manifest is not None else []
    foreign = sorted(
        p.name
        for p in out_dir.iterdir()
        if p.is_dir() and p.name not in previous and not p.name.startswith(".")
    )
    if foreign:
        raise RepositoryError(
            f"{out_dir} holds model directories not written by `adinspect repo build`: {foreign}; "
            "choose an empty --out or remove them"
        )
    return previous


def _move_into_place(
    tmp: Path, out_dir: Path, previous: list[str], models: list[str], marker: RepositoryManifest
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in previous:  # validated model names: direct children of out_dir only
        target = out_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
    for name in models:
        shutil.move(str(tmp / name), str(out_dir / name))
    (out_dir / MARKER).write_text(marker.model_dump_json(indent=2) + "\n")
