"""Which fitted packages one repository can serve together: each loads and verifies, products are
unique, all share one backbone; and what each serves (its seg model, its monitoring calibration)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adinspect.errors import InputError
from adinspect.package import ModelPackage, PackageError
from adinspect.repository.monitoring import ProductCalibration, served_calibration
from adinspect.runtime.seg import SEG_META, SegInfo, seg_info


class RepositoryError(InputError):
    """The packages cannot be served together, or the output is not ours to replace."""


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
