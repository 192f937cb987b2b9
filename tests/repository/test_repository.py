"""Repository builder: layout, flavours, build-time errors (no server needed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from servers import clone_package, parse_config

from adinspect.package import Manifest, write_manifest
from adinspect.repository.bake import bake_threshold
from adinspect.repository.build import build_repository
from adinspect.repository.configs import ensemble_steps
from adinspect.repository.gpu import PlanRecord, write_record
from adinspect.repository.integrity import MARKER
from adinspect.repository.monitoring import product_id
from adinspect.repository.packages import RepositoryError

CPU_MODELS = ["inspect_gadget", "inspect_widget"]
GPU_MODELS = [
    "backbone",
    "inspect_gadget",
    "inspect_widget",
    "postprocess",
    "preprocess",
    "residual_gadget",
    "residual_widget",
]


def test_cpu_layout_and_configs_parse(cpu_repository: Path, gpu_repository: Path) -> None:
    """cpu: one Python model per product, with the ensemble's interface and everything it runs."""
    assert sorted(p.name for p in cpu_repository.iterdir() if p.is_dir()) == CPU_MODELS
    for model in CPU_MODELS:
        config = parse_config(cpu_repository / model / "config.pbtxt")
        assert config.name == model and config.backend == "python" and config.max_batch_size == 8
        assert config.HasField("dynamic_batching") and not config.model_warmup  # warms up in initialize
        assert config.parameters["warmup"].string_value == "true"
        assert config.dynamic_batching.default_queue_policy.max_queue_size == 32
        version = cpu_repository / model / "1"
        files = {"model.py", "adinspect", "backbone.onnx", "model.onnx", "monitoring.json"}
        assert {p.name for p in version.iterdir()} - {"__pycache__"} == files  # (the stub's, once served)
        assert json.loads((version / "monitoring.json").read_text())["products"][0]["product"] == model[8:]
        ensemble = parse_config(gpu_repository / model / "config.pbtxt")
        assert list(config.input) == list(ensemble.input) and list(config.output) == list(ensemble.output)
        for key, value in ensemble.parameters.items():  # what clients read: the same in both flavours
            assert config.parameters[key].string_value == value.string_value
    marker = json.loads((cpu_repository / MARKER).read_text())
    assert marker["flavor"] == "cpu" and marker["models"] == CPU_MODELS


def test_gpu_flavour_uses_onnxruntime_with_tensorrt(gpu_repository: Path) -> None:
    for model in ("backbone", "residual_widget"):
        config = parse_config(gpu_repository / model / "config.pbtxt")
        assert config.platform == "onnxruntime_onnx"
        assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
        # FP32 unless --precision asks otherwise (tests/repository/test_gpu.py)
        assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP32"
        assert not (gpu_repository / model / "1" / "model.py").exists()
    for model in ("preprocess", "postprocess"):
        assert parse_config(gpu_repository / model / "config.pbtxt").backend == "python"


def test_gpu_layout(gpu_repository: Path) -> None:
    assert sorted(p.name for p in gpu_repository.iterdir() if p.is_dir()) == GPU_MODELS
    for product in ("widget", "gadget"):
        config = parse_config(gpu_repository / f"inspect_{product}" / "config.pbtxt")
        assert config.platform == "ensemble" and config.max_batch_size == 1


def test_gpu_flavour_uses_engines_when_given(served_packages, tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    engines.mkdir()
    (engines / "backbone.plan").write_bytes(b"engine")
    onnx_sha256 = hashlib.sha256((served_packages[0] / "backbone.onnx").read_bytes()).hexdigest()
    record = dict(onnx_sha256=onnx_sha256, precision="fp32", min_batch=1, opt_batch=4, max_batch=8)
    write_record(engines / "backbone.plan", PlanRecord(**record, tensorrt_version="10.5.0"))
    out = tmp_path / "repo"
    build_repository(served_packages, "gpu", out, engines_dir=engines)
    assert parse_config(out / "backbone" / "config.pbtxt").platform == "tensorrt_plan"
    assert (out / "backbone" / "1" / "model.plan").read_bytes() == b"engine"
    assert parse_config(out / "residual_widget" / "config.pbtxt").platform == "onnxruntime_onnx"
    with pytest.raises(RepositoryError, match="only used by the gpu flavour"):
        build_repository(served_packages, "cpu", tmp_path / "repo2", engines_dir=engines)


def test_baked_threshold_is_a_model_output(served_packages: list[Path]) -> None:
    import onnxruntime as ort

    from adinspect.package import ModelPackage

    package = ModelPackage.load(served_packages[1])
    baked = bake_threshold(package.path("residual.onnx"), package.threshold, package.product)
    session = ort.InferenceSession(baked)
    bb = package.manifest.backbone
    feed = {
        "features": np.zeros((3, bb.feature_dim, *bb.feature_shape), np.float32),
        "global_map": np.zeros((3, bb.global_channels, *bb.global_shape), np.float32),
    }
    score, threshold, pid = session.run(["score", "threshold", "product_id"], feed)
    assert threshold.shape == score.shape == pid.shape == (3,)
    np.testing.assert_allclose(threshold, package.threshold, rtol=1e-6)
    assert pid.dtype == np.int32 and set(pid.tolist()) == {product_id(package.product)}


def test_segmentation_slots_in_between_residual_and_postprocess() -> None:
    from adinspect.repository.configs import seg_step

    seg = seg_step("widget")
    plain = [step.model for step in ensemble_steps("widget")]
    with_seg = ensemble_steps("widget", segmentation=seg)
    assert plain == ["preprocess", "backbone", "residual_widget", "postprocess"]
    assert [step.model for step in with_seg] == [
        "preprocess",
        "backbone",
        "residual_widget",
        "seg_widget",
        "postprocess",
    ]
    produced = {tensor for step in with_seg[:-1] for tensor in step.outputs.values()}
    assert set(with_seg[-1].inputs.values()) - {"map_format"} <= produced
    assert with_seg[-1].inputs["defect_type"] == "defect_name" and "threshold" in seg.outputs
    # map, score, threshold come from seg; the product id (for metrics) from the residual step
    assert with_seg[2].outputs == {"residual": "residual", "product_id": "product_id"}
    assert with_seg[0].inputs == ensemble_steps("widget")[0].inputs


def test_duplicate_products_refused(served_packages, tmp_path: Path) -> None:
    twin = clone_package(served_packages[0], tmp_path / "twin", "widget")
    with pytest.raises(RepositoryError, match="two packages for product 'widget'"):
        build_repository([served_packages[0], twin], "cpu", tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_differing_backbone_refused(served_packages, tmp_path: Path) -> None:
    other = clone_package(served_packages[0], tmp_path / "other", "other")
    manifest = json.loads((other / "package.json").read_text())
    manifest["preprocess"]["image_size"] = 320
    write_manifest(other, Manifest.model_validate(manifest))
    with pytest.raises(RepositoryError, match="cannot share one backbone .*image_size"):
        build_repository([served_packages[0], other], "cpu", tmp_path / "repo")


def test_incompatible_package_version_refused(served_packages, tmp_path: Path) -> None:
    old = clone_package(served_packages[0], tmp_path / "old", "old")
    manifest = json.loads((old / "package.json").read_text())
    manifest["format_version"] = 99
    write_manifest(old, Manifest.model_validate(manifest))
    with pytest.raises(RepositoryError, match="format version 99"):
        build_repository([old], "cpu", tmp_path / "repo")


def test_rebuild_replaces_own_models_keeps_other_files(served_packages, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    out.mkdir()
    (out / "README.md").write_text("kept")
    build_repository(served_packages, "cpu", out)
    build_repository(served_packages[:1], "cpu", out)
    assert (out / "README.md").read_text() == "kept"
    assert not (out / "inspect_gadget").exists() and (out / "inspect_widget").is_dir()
    (out / "someone_elses_model").mkdir()
    with pytest.raises(RepositoryError, match="someone_elses_model"):
        build_repository(served_packages, "cpu", out)


def test_unknown_flavour_and_no_packages(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="flavor must be one of"):
        build_repository([tmp_path], "tpu", tmp_path / "repo")  # type: ignore[arg-type]
    with pytest.raises(RepositoryError, match="no model packages"):
        build_repository([], "cpu", tmp_path / "repo")


# ------------------------------------------------------------------------------ with ADClick-Seg


@pytest.fixture(scope="module")
def seg_repositories(seg_package: Path, fitted_package: Path, tmp_path_factory) -> dict[str, Path]:
    """cpu and gpu repositories of `widget` with seg and a training-free `gadget`."""
    root = tmp_path_factory.mktemp("seg_repos")
    gadget = clone_package(fitted_package, root / "gadget", "gadget", threshold_scale=0.5)
    return {f: build_repository([seg_package, gadget], f, root / f).out_dir for f in ("cpu", "gpu")}


def test_seg_model_in_both_flavours(seg_repositories: dict[str, Path]) -> None:
    cpu, gpu = seg_repositories["cpu"], seg_repositories["gpu"]
    assert sorted(p.name for p in cpu.iterdir() if p.is_dir()) == CPU_MODELS
    assert (cpu / "inspect_widget" / "1" / "seg.onnx").is_file()
    assert not (cpu / "inspect_gadget" / "1" / "seg.onnx").exists()
    assert sorted(p.name for p in gpu.iterdir() if p.is_dir()) == sorted([*GPU_MODELS, "seg_widget"])
    config = parse_config(gpu / "seg_widget" / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx"
    assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt"
    assert {p.name for p in (gpu / "seg_widget" / "1").iterdir()} == {"model.onnx"}


def test_seg_ensemble_wiring_and_parameters(seg_repositories, seg_package: Path, cpu_repository) -> None:
    from adinspect.package import ModelPackage
    from adinspect.runtime.seg import seg_info

    info = seg_info(ModelPackage.load(seg_package))
    ensemble = parse_config(seg_repositories["gpu"] / "inspect_widget" / "config.pbtxt")
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == [
        "preprocess",
        "backbone",
        "residual_widget",
        "seg_widget",
        "postprocess",
    ]
    post = steps[-1].input_map
    assert (post["anomaly_map"], post["score"], post["threshold"]) == (
        "map",
        "raw_score",
        "product_threshold",
    )
    assert steps[3].output_map["threshold"] == "product_threshold" and post["defect_type"] == "defect_name"
    assert float(ensemble.parameters["threshold"].string_value) == info.threshold
    assert json.loads(ensemble.parameters["defect_types"].string_value) == list(info.defect_types)
    one_hop = parse_config(seg_repositories["cpu"] / "inspect_widget" / "config.pbtxt")
    assert json.loads(one_hop.parameters["defect_types"].string_value) == list(info.defect_types)
    # The training-free product's model is exactly what a build without seg writes.
    gadget = "inspect_gadget/config.pbtxt"
    assert (seg_repositories["cpu"] / gadget).read_text() == (cpu_repository / gadget).read_text()


def test_served_seg_onnx_bakes_threshold_and_type_names(seg_repositories, seg_package: Path) -> None:
    import onnxruntime as ort

    from adinspect.package import ModelPackage
    from adinspect.runtime.seg import seg_info

    info = seg_info(ModelPackage.load(seg_package))
    model = seg_repositories["gpu"] / "seg_widget"
    session = ort.InferenceSession(str(model / "1" / "model.onnx"))
    config = parse_config(model / "config.pbtxt")
    assert [o.name for o in session.get_outputs()] == [o.name for o in config.output]
    assert [i.name for i in session.get_inputs()] == [i.name for i in config.input] == ["residual"]
    residual = np.random.default_rng(0).normal(size=(3, *config.input[0].dims)).astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"residual": residual}), strict=True))
    np.testing.assert_allclose(out["threshold"], info.threshold, rtol=1e-6)
    assert list(out["defect_name"]) == [info.type_name(int(i)) or "" for i in out["defect_type"]]
    assert out["type_scores"].shape == (3, len(info.defect_types))
    reference = ort.InferenceSession(str(seg_package / "seg.onnx")).run(None, {"residual": residual})
    np.testing.assert_array_equal(out["seg_score"], reference[1])


def test_unknown_optional_model_refused(fitted_package: Path, tmp_path: Path) -> None:
    package = clone_package(fitted_package, tmp_path / "odd", "odd")
    manifest = json.loads((package / "package.json").read_text())
    manifest["optional_models"] = ["click"]
    write_manifest(package, Manifest.model_validate(manifest))
    with pytest.raises(RepositoryError, match="only 'seg'"):
        build_repository([package], "cpu", tmp_path / "repo")


def test_baked_type_names_are_empty_when_the_package_names_no_type(seg_package: Path) -> None:
    """A seg model that could not tell its types apart on its pseudo-labelled images serves ""
    (the client's None) as every result's defect type; one that could serves the names."""
    import dataclasses

    import onnx
    import onnxruntime as ort

    from adinspect.package import ModelPackage
    from adinspect.repository.bake import bake_seg
    from adinspect.runtime.seg import seg_info

    info = seg_info(ModelPackage.load(seg_package))
    assert info is not None
    dims = onnx.load(str(info.onnx)).graph.input[0].type.tensor_type.shape.dim
    residual = np.random.default_rng(0).normal(size=(2, *[d.dim_value for d in dims[1:]])).astype(np.float32)
    for names_types in (True, False):
        baked = bake_seg(dataclasses.replace(info, names_types=names_types))
        session = ort.InferenceSession(baked)
        names = [o.name for o in session.get_outputs()]
        out = dict(zip(names, session.run(None, {"residual": residual}), strict=True))
        expected = [info.defect_types[int(i)] if names_types else "" for i in out["defect_type"]]
        assert list(out["defect_name"]) == expected
