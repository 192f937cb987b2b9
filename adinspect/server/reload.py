"""`adinspect repo update`: put a refitted package live on a running server, without a restart.

The server runs with explicit model control (`adinspect serve` starts it so). For one product,
the versioned models are `inspect_<p>` itself (cpu flavour) or `residual_<p>` and `seg_<p>` (gpu):

1. write the new package's versioned models as version N+1 beside version N and load them with
   both versions allowed: the old version keeps serving; a cpu-flavour `inspect_<p>` answers
   unversioned requests with N+1 from the moment it is ready;
2. gpu: reload the ensemble `inspect_<p>` pinned to N+1: Triton swaps it once the new one is ready,
   so every request runs either all-old or all-new steps (threshold, bank and seg model agree);
3. allow only N+1 and load again: version N unloads after its in-flight requests, then its files
   are removed and the repository manifest is rewritten.

Shared models (gpu: preprocess, backbone, postprocess, one set per input shape) are not touched, so
the new package must use the backbone (same ONNX file) and input spec its product is served with;
anything else needs `repo build` and a restart.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adinspect.contracts import POSTPROCESS_MODEL, ensemble_model, shared_model
from adinspect.geometry import PreprocessSpec
from adinspect.package import ModelPackage
from adinspect.repository.integrity import (
    MARKER,
    RepositoryManifest,
    SharedModels,
    hash_models,
    shared_of,
    verify_repository,
)
from adinspect.repository.monitoring import MONITORING_FILE, MonitoringTable
from adinspect.repository.packages import RepositoryError, load_packages, monitoring_entry
from adinspect.repository.pbtxt import to_pbtxt
from adinspect.repository.settings import Flavor, RepositorySettings
from adinspect.repository.tensors import Shapes
from adinspect.repository.write import pinned, write_product


@dataclass(frozen=True)
class UpdateReport:
    product: str
    old_version: int
    new_version: int
    models: list[str]


def _versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _check_compatible(shared: SharedModels, package: ModelPackage) -> None:
    """The new package must fit the shared models its product is served with (backbone file and
    input spec, the input shape included)."""
    if package.is_unified:
        raise RepositoryError(
            f"{package.root} is a unified package: its one model serves all its products, so it goes live "
            "with `adinspect repo build` and a restart, not product by product"
        )
    if package.manifest.files.get("backbone.onnx") != shared.backbone_sha256:
        raise RepositoryError(
            f"{package.root}: its backbone.onnx differs from the served backbone; a new backbone (or input "
            "shape) needs `adinspect repo build` and a restart"
        )
    served = PreprocessSpec.model_validate(shared.preprocess)  # square when recorded before input shapes
    if package.preprocess != served:
        raise RepositoryError(
            f"{package.root}: its input spec differs from the served one ({served.model_dump(mode='json')}); "
            "rebuild the repository with `adinspect repo build` and restart"
        )


def _update_monitoring(repo: Path, package: ModelPackage, suffix: str) -> None:
    """gpu: the drift monitor's entry for the product, its new threshold and calibration scores (the
    postprocess model re-reads the file within seconds); a cpu `inspect_<p>` version has its own."""
    path = repo / shared_model(POSTPROCESS_MODEL, suffix) / "1" / MONITORING_FILE
    if not path.is_file():
        return
    table = MonitoringTable.model_validate_json(path.read_text())
    entry = monitoring_entry(package)
    products = [p for p in table.products if p.product != package.product] + [entry]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(table.model_copy(update={"products": products}).model_dump_json(indent=2) + "\n")
    tmp.replace(path)


def update_product(repo: Path, client: Any, model_dir: Path) -> UpdateReport:
    """Swap one product's models to the package at `model_dir` on the server behind `client`.

    Args:
        repo: the repository the server was started on (written by `repo build`).
        client: a `tritonclient.grpc.InferenceServerClient` of that server.
        model_dir: the refitted package (same product name as a served one).

    Raises:
        RepositoryError: the repository is not intact, the product is not served, or the package does
            not fit the shared models.
    """
    repo = Path(repo)
    manifest = verify_repository(repo)
    (package,) = load_packages([Path(model_dir)])
    product = package.product
    if product not in manifest.products:
        raise RepositoryError(
            f"product {product!r} is not served from {repo} (it serves {sorted(manifest.products)}); "
            "add a product with `adinspect repo build` and a restart"
        )
    shared = shared_of(manifest, product)
    _check_compatible(shared, package)
    settings = RepositorySettings(**manifest.settings)
    flavor: Flavor = "gpu" if manifest.flavor == "gpu" else "cpu"
    ensemble = ensemble_model(product)
    anchor = ensemble if flavor == "cpu" else f"residual_{product}"  # always versioned
    old = max(_versions(repo / anchor))
    new = old + 1
    tmp = Path(tempfile.mkdtemp(prefix=".update.", dir=repo.parent))
    try:
        written = write_product(tmp, package, flavor, settings, Shapes.of(package), None, new, shared.suffix)
        steps = list(written) if flavor == "cpu" else [name for name in written if name != ensemble]
        own = (ensemble,) if flavor == "cpu" else (f"residual_{product}", f"seg_{product}")
        old_steps = [p.name for p in repo.iterdir() if p.is_dir() and p.name in own]
        for name in steps:  # 1. new versions beside the old ones
            target = repo / name
            target.mkdir(exist_ok=True)
            shutil.move(str(tmp / name / str(new)), str(target / str(new)))
            both = [v for v in (old, new) if (target / str(v)).is_dir()]
            (target / "config.pbtxt").write_text(to_pbtxt(pinned(written[name], both)))
            client.load_model(name)
        if flavor == "gpu":  # 2. the switch
            shutil.copyfile(tmp / ensemble / "config.pbtxt", repo / ensemble / "config.pbtxt")
            client.load_model(ensemble)
        for name in steps:  # 3. retire the old versions
            (repo / name / "config.pbtxt").write_text(to_pbtxt(written[name]))
            client.load_model(name)
            shutil.rmtree(repo / name / str(old), ignore_errors=True)
        for name in set(old_steps) - set(steps):  # a seg model the new package no longer has
            client.unload_model(name)
            shutil.rmtree(repo / name, ignore_errors=True)
        _update_monitoring(repo, package, shared.suffix)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _rewrite_marker(repo, manifest, package)
    return UpdateReport(product, old, new, sorted({*steps, ensemble}))


def _rewrite_marker(repo: Path, manifest: RepositoryManifest, package: ModelPackage) -> None:
    """The repository manifest after an update: its models, the product's package, every file's hash."""
    models = sorted(p.name for p in repo.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file())
    updated = manifest.model_copy(
        update={
            "models": models,
            "products": {**manifest.products, package.product: str(package.root.resolve())},
            "files": hash_models(repo, models),
        }
    )
    marker_tmp = repo / f".{MARKER}.tmp"
    marker_tmp.write_text(updated.model_dump_json(indent=2) + "\n")
    marker_tmp.replace(repo / MARKER)
