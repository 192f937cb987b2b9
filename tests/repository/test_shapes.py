"""Products of different input shapes in one repository: each shape gets its own preprocess,
backbone and postprocess in the gpu flavour (named <model>_<H>x<W>), with the dims of its shape;
one shape keeps the plain names; two backbones of one shape are still refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from servers import clone_package, parse_config

from adinspect.repository.build import build_repository
from adinspect.repository.integrity import read_manifest, shared_of
from adinspect.repository.monitoring import MONITORING_FILE
from adinspect.repository.packages import RepositoryError


@pytest.fixture(scope="module")
def mixed_gpu(fitted_package: Path, tall_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mixed_gpu") / "repo"
    build_repository([fitted_package, tall_package], "gpu", out)
    return out


def _dims(repo: Path, model: str, side: str = "both") -> dict[str, list[int]]:
    config = parse_config(repo / model / "config.pbtxt")
    tensors = {"input": [*config.input], "output": [*config.output]}.get(
        side, [*config.input, *config.output]
    )
    return {t.name: list(t.dims) for t in tensors}


def test_each_input_shape_has_its_own_shared_models(mixed_gpu: Path) -> None:
    models = sorted(p.name for p in mixed_gpu.iterdir() if p.is_dir())
    assert models == sorted(
        [f"{m}_{s}" for m in ("preprocess", "backbone", "postprocess") for s in ("256x256", "320x128")]
        + ["residual_widget", "inspect_widget", "residual_strip", "inspect_strip"]
    )
    tall = _dims(mixed_gpu, "backbone_320x128")
    assert tall == {"image": [3, 320, 128], "features": [176, 40, 16], "global_map": [24, 20, 8]}
    assert _dims(mixed_gpu, "backbone_256x256")["image"] == [3, 256, 256]
    assert _dims(mixed_gpu, "preprocess_320x128")["image"] == [3, 320, 128]
    assert _dims(mixed_gpu, "postprocess_320x128", "input")["anomaly_map"] == [1, 320, 128]
    residual = _dims(mixed_gpu, "residual_strip")
    assert residual["features"] == [176, 40, 16] and residual["anomaly_map"] == [1, 320, 128]
    steps = parse_config(mixed_gpu / "inspect_strip" / "config.pbtxt").ensemble_scheduling.step
    assert [s.model_name for s in steps] == [
        "preprocess_320x128", "backbone_320x128", "residual_strip", "postprocess_320x128"
    ]  # fmt: skip
    spec = parse_config(mixed_gpu / "preprocess_320x128" / "config.pbtxt").parameters["preprocess_spec"]
    assert (json.loads(spec.string_value)["height"], json.loads(spec.string_value)["width"]) == (320, 128)
    table = json.loads((mixed_gpu / "postprocess_320x128" / "1" / MONITORING_FILE).read_text())
    assert [p["product"] for p in table["products"]] == ["strip"]


def test_the_manifest_says_which_products_run_on_which_models(mixed_gpu: Path) -> None:
    manifest = read_manifest(mixed_gpu)
    assert manifest is not None
    assert {g.suffix: g.products for g in manifest.shared} == {"256x256": ["widget"], "320x128": ["strip"]}
    assert shared_of(manifest, "strip").preprocess["height"] == 320


def test_one_shape_keeps_the_plain_names_and_cpu_dims_follow_the_package(
    tall_package: Path, tmp_path: Path
) -> None:
    twin = clone_package(tall_package, tmp_path / "twin", "twin")
    build_repository([tall_package, twin], "gpu", tmp_path / "gpu")
    assert _dims(tmp_path / "gpu", "backbone")["image"] == [3, 320, 128]
    assert _dims(tmp_path / "gpu", "postprocess", "input")["anomaly_map"] == [1, 320, 128]
    build_repository([tall_package], "cpu", tmp_path / "cpu")
    spec = parse_config(tmp_path / "cpu" / "inspect_strip" / "config.pbtxt").parameters["preprocess_spec"]
    assert json.loads(spec.string_value)["height"] == 320


def test_two_backbones_of_one_shape_are_refused(fitted_package: Path, tmp_path: Path) -> None:
    from adinspect.package import Manifest, write_manifest

    other = clone_package(fitted_package, tmp_path / "other", "other")
    manifest = Manifest.model_validate_json((other / "package.json").read_text())
    backbone = manifest.backbone.model_copy(update={"weights_sha256": "0" * 64})
    write_manifest(other, manifest.model_copy(update={"backbone": backbone}))
    with pytest.raises(
        RepositoryError, match="same input shape but cannot share one backbone.*weights_sha256"
    ):
        build_repository([fitted_package, other], "gpu", tmp_path / "repo")
