"""Which fitted packages one repository can serve together: each loads and verifies, products are
unique, products of one input shape share one backbone; and what each serves (its seg model, its
monitoring calibration)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adinspect.errors import InputError
from adinspect.package import ModelPackage, PackageError
from adinspect.repository.finite import NonFiniteError, check_onnx_constants, check_threshold
from adinspect.repository.monitoring import ProductCalibration, served_calibration
from adinspect.runtime.seg import SEG_META, SegInfo, seg_info


class RepositoryError(InputError):
    """The packages cannot be served together, or the output is not ours to replace."""


SERVED_GRAPHS = ("backbone.onnx", "residual.onnx", "seg.onnx")


def load_packages(model_dirs: Sequence[Path]) -> list[ModelPackage]:
    """Load and verify every package; refuse duplicates, incompatible versions and non-finite numbers
    (threshold, the constants of every served graph: the bank is the residual graph's)."""
    if not model_dirs:
        raise RepositoryError(
            "no model packages given; pass one or more directories written by `adinspect fit`"
        )
    packages = []
    for model_dir in model_dirs:
        try:
            package = ModelPackage.load(Path(model_dir))
            for product in package.products:
                threshold = package.threshold_for(product if package.is_unified else None)
                check_threshold(f"{product}'s threshold", threshold, package.root / "package.json")
            for graph in SERVED_GRAPHS:
                if package.has(graph):
                    check_onnx_constants(package.path(graph))
        except (PackageError, NonFiniteError) as exc:
            raise RepositoryError(f"cannot serve {model_dir}: {exc}") from exc
        packages.append(package)
    seen: dict[str, Path] = {}
    for package in packages:
        for product in package.products:
            if product in seen:
                raise RepositoryError(
                    f"two packages for product {product!r}: {seen[product]} and {package.root}; "
                    "each product is served once (re-fit one under another --product name)"
                )
            seen[product] = package.root
        unknown = sorted(set(package.manifest.optional_models) - {"seg"})
        if unknown:
            raise RepositoryError(
                f"{package.root}: optional models {unknown} cannot be served (only 'seg' is); "
                "build the repository with a package from this adinspect version"
            )
    return packages


def backbone_identity(package: ModelPackage) -> dict[str, Any]:
    """What must be equal for products to share one `backbone` model (the input shape included)."""
    record = package.manifest.backbone.model_dump(mode="json", exclude={"weights_source"})
    method = package.config.method
    return {
        **record,
        "preprocess": package.preprocess.model_dump(mode="json"),
        "layer_dim": method.layer_dim,
        "aggregate_kernel": method.aggregate_kernel,
        "global_pool": method.global_pool,
    }


@dataclass(frozen=True)
class BackboneGroup:
    """Products served by one backbone model (gpu flavour: one preprocess, backbone and postprocess)."""

    suffix: str  # "" when the repository has one group, else the input shape "<H>x<W>"
    packages: list[ModelPackage]


def backbone_groups(packages: Sequence[ModelPackage]) -> list[BackboneGroup]:
    """The packages grouped by `backbone_identity`, in order of first appearance.

    One group keeps the plain model names. Several groups (products of different input shapes)
    are told apart by their input shape; two groups of the same shape (another backbone, weights or
    feature settings) cannot be, and are refused naming the first two products that differ.
    """
    groups: dict[str, list[ModelPackage]] = {}
    for package in packages:
        groups.setdefault(json.dumps(backbone_identity(package), sort_keys=True), []).append(package)
    if len(groups) == 1:
        return [BackboneGroup("", list(packages))]
    by_shape: dict[tuple[int, int], ModelPackage] = {}
    out = []
    for members in groups.values():
        first = members[0]
        other = by_shape.setdefault(first.preprocess.shape, first)
        if other is not first:
            _refuse(other, first)
        h, w = first.preprocess.shape
        out.append(BackboneGroup(f"{h}x{w}", members))
    return out


def _refuse(first: ModelPackage, package: ModelPackage) -> None:
    reference, other = backbone_identity(first), backbone_identity(package)
    differing = [key for key in reference if reference[key] != other[key]]
    detail = ", ".join(f"{k}: {reference[k]!r} vs {other[k]!r}" for k in differing)
    raise RepositoryError(
        f"products {first.product!r} ({first.root}) and {package.product!r} ({package.root}) have the same "
        f"input shape but cannot share one backbone ({detail}); re-fit them with the same backbone and "
        "preset, or build separate repositories"
    )


def package_seg(package: ModelPackage) -> SegInfo | None:
    try:
        return seg_info(package)
    except PackageError as exc:
        raise RepositoryError(f"cannot serve the seg model of {package.root}: {exc}") from exc


def monitoring_entry(package: ModelPackage) -> ProductCalibration:
    """The product's served threshold and calibration scores, for postprocess's drift metrics."""
    seg = package_seg(package)
    if seg is None:
        return served_calibration(package, None, package.threshold)
    return served_calibration(package, package.path(SEG_META), seg.threshold)
