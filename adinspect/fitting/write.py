"""Writing a fitted package's files into its staging folder: config, bank, calibration, manifest
(checksums of every file), and moving the complete package into place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from adinspect import __version__
from adinspect.config import PipelineConfig, save_config
from adinspect.features.backbones import WeightsInfo
from adinspect.fitting.calibration import Calibration
from adinspect.geometry import InputGeometry, PreprocessSpec
from adinspect.package import (
    FORMAT_VERSION,
    MANIFEST,
    BackboneRecord,
    Manifest,
    ThresholdEvidence,
    sha256_of,
    write_manifest,
)
from adinspect.residual.bank import save_bank
from adinspect.residual.budget import Shapes
from adinspect.residual.model import BankTensors


def backbone_record(name: str, weights: WeightsInfo, shapes: Shapes) -> BackboneRecord:
    return BackboneRecord(
        name=name,
        weights_source=weights.source,
        weights_sha256=weights.sha256,
        random_weights=weights.random,
        feature_dim=shapes.feature_dim,
        feature_shape=shapes.grid,
        global_channels=shapes.global_channels,
        global_shape=shapes.global_grid,
    )


def write_files(
    tmp: Path,
    config: PipelineConfig,
    bank: BankTensors,
    record: BackboneRecord,
    weights: WeightsInfo,
    calibration: Calibration,
) -> None:
    save_config(config, tmp / "config.json")
    save_bank(
        bank,
        tmp / "bank.safetensors",
        {"backbone": record.name, "weights_sha256": str(weights.sha256), "adinspect_version": __version__},
    )
    (tmp / "calibration.json").write_text(json.dumps(calibration.__dict__, indent=2) + "\n")


def write_package_manifest(
    tmp: Path,
    config: PipelineConfig,
    pre: PreprocessSpec,
    record: BackboneRecord,
    calibration: Calibration,
    n_refs: int,
    data_files: list[str],
    geometry: InputGeometry | None = None,
    choices: dict[str, str] | None = None,
) -> Manifest:
    files = [
        "config.json",
        "backbone.onnx",
        "residual.onnx",
        *data_files,
        "bank.safetensors",
        "calibration.json",
    ]
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        adinspect_version=__version__,
        product=config.product.name,
        preprocess=pre,
        backbone=record,
        threshold=calibration.threshold,
        threshold_rule=calibration.rule,
        threshold_evidence=ThresholdEvidence(**calibration.evidence()),
        n_references=n_refs,
        choices=choices,
        files={name: sha256_of(tmp / name) for name in files},
        geometry=geometry,
    )
    write_manifest(tmp, manifest)
    return manifest


def finalise_manifest(tmp: Path, *extra: str) -> None:
    manifest = Manifest.model_validate_json((tmp / MANIFEST).read_text())
    files = {**manifest.files, **{name: sha256_of(tmp / name) for name in extra}}
    write_manifest(tmp, manifest.model_copy(update={"files": files}))


def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the complete package into place; an existing one is removed only after the move works."""
    tmp.chmod(0o755)  # mkdtemp makes 0700; servers in containers run as other users
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)
