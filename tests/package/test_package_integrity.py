"""The manifest's own fields are covered by a checksum; names that become paths are validated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from adinspect.package import Manifest, ModelPackage, PackageError, write_manifest


def test_editing_the_threshold_in_package_json_is_refused(fitted_package: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pkg"
    shutil.copytree(fitted_package, copy)
    raw = json.loads((copy / "package.json").read_text())
    raw["threshold"] = 1e9
    (copy / "package.json").write_text(json.dumps(raw, indent=2))
    with pytest.raises(PackageError, match="package.json was changed after it was written"):
        ModelPackage.load(copy)
    (copy / "package.sha256").unlink()
    with pytest.raises(PackageError, match="no package.sha256"):
        ModelPackage.load(copy)


@pytest.mark.parametrize("product", ["../../evil", "Bottle", "a/b", ""])
def test_product_names_that_are_not_identifiers_are_refused(
    fitted_package: Path, tmp_path: Path, product: str
) -> None:
    copy = tmp_path / "pkg"
    shutil.copytree(fitted_package, copy)
    raw = json.loads((copy / "package.json").read_text())
    raw["product"] = product
    text = json.dumps(raw)
    (copy / "package.json").write_text(text)
    import hashlib

    (copy / "package.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "  package.json\n")
    with pytest.raises(PackageError, match="product name"):
        ModelPackage.load(copy)


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "a/../../b"])
def test_manifest_file_names_stay_inside_the_package(fitted_package: Path, name: str) -> None:
    raw = json.loads((fitted_package / "package.json").read_text())
    raw["files"][name] = "0" * 64
    with pytest.raises(ValueError, match="relative path inside the package"):
        Manifest.model_validate(raw)


def test_write_manifest_round_trips(fitted_package: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pkg"
    shutil.copytree(fitted_package, copy)
    manifest = ModelPackage.load(copy).manifest
    write_manifest(copy, manifest.model_copy(update={"threshold": manifest.threshold * 2}))
    assert ModelPackage.load(copy).threshold == pytest.approx(manifest.threshold * 2)
