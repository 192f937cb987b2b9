"""`adinspect repo build`: fitted model packages → a Triton model repository (DESIGN.md §6).

Checks before writing anything: every package loads (format version, checksums), product names
are unique, and the products of one input shape share one backbone (name, weights, input spec,
feature shapes); products of several input shapes get one set of shared models per shape (gpu).
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

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adinspect import __version__
from adinspect.errors import InputError
from adinspect.repository.integrity import (
    MARKER,
    RepositoryManifest,
    SharedModels,
    hash_models,
    read_manifest,
)
from adinspect.repository.packages import BackboneGroup, RepositoryError, backbone_groups, load_packages
from adinspect.repository.settings import Flavor, RepositorySettings
from adinspect.repository.tensors import Shapes
from adinspect.repository.unified import check_unified, write_unified
from adinspect.repository.write import write_product, write_shared_models

FLAVORS = ("cpu", "gpu")


@dataclass(frozen=True)
class BuildReport:
    out_dir: Path
    flavor: str
    products: list[str]
    models: list[str]


# long: checks, then one try block owns the staging folder until it replaces the old repository
def build_repository(
    model_dirs: Sequence[Path],
    flavor: Flavor,
    out_dir: Path,
    settings: RepositorySettings | None = None,
    engines_dir: Path | None = None,
) -> BuildReport:
    """Write the Triton repository serving `inspect_<product>` for every package.

    Args:
        model_dirs: packages written by `adinspect fit`, one per product (those of one input shape
            share one backbone); or unified packages (`adinspect train-unified`), each served as one
            model for its products.
        flavor: "cpu" (Python backend + ONNX Runtime) or "gpu" (ORT+TensorRT or TensorRT plans).
        out_dir: the repository; models from an earlier build there are replaced, other files kept.
        settings: batching, instances and limits.
        engines_dir: gpu only: `<model>.plan` files from export/build_trt.py, used where present.

    Raises:
        RepositoryError: unknown flavour, bad or duplicate packages, differing backbones of one input
            shape, foreign models in out_dir.
    """
    if flavor not in FLAVORS:
        raise RepositoryError(f"flavor must be one of {list(FLAVORS)}, got {flavor!r}")
    if engines_dir is not None and flavor != "gpu":
        raise RepositoryError(
            f"TensorRT engines ({engines_dir}) are only used by the gpu flavour, got {flavor!r}"
        )
    settings = settings or RepositorySettings()
    packages = load_packages(model_dirs)
    unified = check_unified(packages)
    groups = [] if unified else backbone_groups(packages)
    out_dir = Path(out_dir)
    previous = _previous_models(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        if unified:
            write_unified(tmp, packages, flavor, settings, engines_dir)
        for group in groups:
            shapes = Shapes.of(group.packages[0])
            if flavor == "cpu":
                for package in group.packages:
                    write_product(tmp, package, flavor, settings, shapes)
            else:
                write_shared_models(tmp, group.packages, settings, shapes, engines_dir, group.suffix)
        models = sorted(p.name for p in tmp.iterdir() if p.is_dir())
        _check_precision_names(settings, models)
        marker = RepositoryManifest(
            adinspect_version=__version__,
            flavor=flavor,
            models=models,
            products={product: str(p.root.resolve()) for p in packages for product in p.products},
            settings=settings.model_dump(),
            backbone_sha256=packages[0].manifest.files.get("backbone.onnx", ""),
            preprocess=packages[0].preprocess.model_dump(mode="json"),
            shared=[_shared(g) for g in groups],
            files=hash_models(tmp, models),
        )
        _move_into_place(tmp, out_dir, previous, models, marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BuildReport(out_dir, flavor, [product for p in packages for product in p.products], models)


def _shared(group: BackboneGroup) -> SharedModels:
    first = group.packages[0]
    return SharedModels(
        suffix=group.suffix,
        backbone_sha256=first.manifest.files["backbone.onnx"],
        preprocess=first.preprocess.model_dump(mode="json"),
        products=[p.product for p in group.packages],
    )


def _check_precision_names(settings: RepositorySettings, models: list[str]) -> None:
    unknown = sorted(set(settings.model_precision) - set(models))
    if unknown:
        raise RepositoryError(
            f"--precision names models {unknown} this repository lacks; its models: {models}"
        )


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
