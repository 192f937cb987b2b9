"""The gpu flavour's TensorRT parts, checked without a GPU: precision per model (residual always
FP32), ORT-TensorRT profiles and engine cache, plans tied to the SHA-256 of their ONNX, and
export/build_trt.py's refusals (which run before TensorRT is imported)."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from servers import parse_config

from adinspect.cli import main
from adinspect.repository.build import build_repository
from adinspect.repository.gpu import EngineError, PlanRecord, select_plan, write_record
from adinspect.repository.packages import RepositoryError
from adinspect.repository.settings import RepositorySettings

REPO = Path(__file__).resolve().parents[2]
BUILD_TRT = REPO / "export" / "build_trt.py"


def _accelerator(repo: Path, model: str) -> dict[str, str]:
    config = parse_config(repo / model / "config.pbtxt")
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    return dict(accelerator.parameters)


@pytest.fixture(scope="module")
def fp16_repository(served_packages: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu_fp16") / "repo"
    settings = RepositorySettings(precision="fp16", max_batch_size=4, trt_opt_batch=2)
    build_repository(served_packages, "gpu", out, settings=settings)
    return out


def test_residual_stays_fp32_when_fp16_is_asked(fp16_repository: Path) -> None:
    assert _accelerator(fp16_repository, "backbone")["precision_mode"] == "FP16"
    for product in ("widget", "gadget"):
        assert _accelerator(fp16_repository, f"residual_{product}")["precision_mode"] == "FP32"


def test_profiles_cover_the_batch_range_with_the_served_shapes(fp16_repository: Path) -> None:
    for model in ("backbone", "residual_widget"):
        params = _accelerator(fp16_repository, model)
        config = parse_config(fp16_repository / model / "config.pbtxt")
        for key, batch in (("min", 1), ("opt", 2), ("max", 4)):
            expected = ",".join(
                f"{t.name}:" + "x".join(str(d) for d in [batch, *t.dims]) for t in config.input
            )
            assert params[f"trt_profile_{key}_shapes"] == expected


def test_engine_cache_is_persistent_and_keyed_by_the_served_onnx(fp16_repository: Path) -> None:
    for model in ("backbone", "residual_widget", "residual_gadget"):
        params = _accelerator(fp16_repository, model)
        digest = hashlib.sha256((fp16_repository / model / "1" / "model.onnx").read_bytes()).hexdigest()
        assert params["trt_engine_cache_enable"] == "1"
        assert (
            params["trt_engine_cache_path"] == f"{RepositorySettings().trt_cache_dir}/{model}/{digest[:16]}"
        )
    # two products with the same bank but different thresholds get different caches
    widget = _accelerator(fp16_repository, "residual_widget")["trt_engine_cache_path"]
    assert widget != _accelerator(fp16_repository, "residual_gadget")["trt_engine_cache_path"]


def test_precision_flag_per_model_and_residual_fp16_refused(served_packages, tmp_path: Path, capsys) -> None:
    base = ["repo", "build", "--models", str(served_packages[0]), "--flavor", "gpu"]
    out = tmp_path / "repo"
    assert main([*base, "--out", str(out), "--precision", "backbone=fp16"]) == 0
    assert _accelerator(out, "backbone")["precision_mode"] == "FP16"
    assert _accelerator(out, "residual_widget")["precision_mode"] == "FP32"
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "r2"), "--precision", "residual_widget=fp16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: repo build: --precision") and "residual models stay fp32" in err
    assert main([*base, "--out", str(tmp_path / "r3"), "--precision", "backbone=int8"]) == 2
    with pytest.raises(RepositoryError, match="lacks"):
        build_repository(
            served_packages,
            "gpu",
            tmp_path / "r4",
            settings=RepositorySettings(model_precision={"bakbone": "fp16"}),
        )


def _record(onnx: bytes, precision: str = "fp16", max_batch: int = 8) -> PlanRecord:
    return PlanRecord.model_validate(
        dict(
            onnx_sha256=hashlib.sha256(onnx).hexdigest(),
            precision=precision,
            min_batch=1,
            opt_batch=4,
            max_batch=max_batch,
            tensorrt_version="10.5.0",
        )
    )


def test_plans_are_served_only_for_the_onnx_they_were_built_from(served_packages, tmp_path: Path) -> None:
    """The plan bytes are a stand-in (no TensorRT here): what is tested is which file gets served."""
    onnx_repo = build_repository(served_packages, "gpu", tmp_path / "onnx").out_dir
    backbone = (onnx_repo / "backbone" / "1" / "model.onnx").read_bytes()
    residual = (onnx_repo / "residual_widget" / "1" / "model.onnx").read_bytes()
    engines = tmp_path / "engines"
    engines.mkdir()
    for name, onnx, precision in (("backbone", backbone, "fp16"), ("residual_widget", residual, "fp32")):
        (engines / f"{name}.plan").write_bytes(b"plan of " + name.encode())
        write_record(engines / f"{name}.plan", _record(onnx, precision))
    settings = RepositorySettings(precision="fp16")
    out = build_repository(served_packages, "gpu", tmp_path / "plans", settings, engines).out_dir
    for name in ("backbone", "residual_widget"):
        assert parse_config(out / name / "config.pbtxt").platform == "tensorrt_plan"
        assert (out / name / "1" / "model.plan").read_bytes() == b"plan of " + name.encode()
    assert parse_config(out / "residual_gadget" / "config.pbtxt").platform == "onnxruntime_onnx"

    # a refit changes the residual model's bytes: the old plan is stale
    write_record(engines / "residual_widget.plan", _record(residual + b"refit", "fp32"))
    with pytest.raises(EngineError, match="residual_widget.plan is stale"):
        build_repository(served_packages, "gpu", tmp_path / "stale", settings, engines)
    write_record(engines / "residual_widget.plan", _record(residual, "fp32", max_batch=4))
    with pytest.raises(EngineError, match="covers batches 1..4"):
        build_repository(served_packages, "gpu", tmp_path / "small", settings, engines)
    (engines / "residual_widget.plan.json").unlink()
    with pytest.raises(EngineError, match="no residual_widget.plan.json"):
        build_repository(served_packages, "gpu", tmp_path / "norecord", settings, engines)
    with pytest.raises(EngineError, match="was built fp16"):  # backbone plan vs default fp32
        build_repository(served_packages[:1], "gpu", tmp_path / "fp32", engines_dir=engines)


def test_no_plan_for_seg_and_no_fp16_plan_for_residual(tmp_path: Path) -> None:
    (tmp_path / "seg_widget.plan").write_bytes(b"plan")
    with pytest.raises(EngineError, match="string"):
        select_plan(tmp_path, "seg_widget", b"onnx", "fp16", 8)
    (tmp_path / "residual_widget.plan").write_bytes(b"plan")
    write_record(tmp_path / "residual_widget.plan", _record(b"onnx", "fp16"))
    with pytest.raises(EngineError, match="residual models stay fp32"):
        select_plan(tmp_path, "residual_widget", b"onnx", "fp16", 8)


def _build_trt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILD_TRT), *args], capture_output=True, text=True, cwd=REPO)


def _string_output_model(path: Path) -> Path:
    """A seg-like graph: defect-type index → its name, a string output (as repo build bakes it)."""
    import onnx
    from onnx import helper, numpy_helper

    names = numpy_helper.from_array(np.array([b"crack", b"scratch"], dtype=object), "names")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["names", "defect_type"], ["defect_name"], axis=0)],
        "seg_like",
        [helper.make_tensor_value_info("defect_type", onnx.TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("defect_name", onnx.TensorProto.STRING, ["batch"])],
        initializer=[names],
    )
    onnx.save(helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_build_trt_refuses_seg_and_fp16_residual_before_tensorrt(served_packages, tmp_path: Path) -> None:
    repo = build_repository(served_packages[:1], "gpu", tmp_path / "repo").out_dir
    residual = repo / "residual_widget" / "1" / "model.onnx"
    done = _build_trt(str(residual), "--out", str(tmp_path / "r.plan"), "--precision", "fp16")
    assert done.returncode == 2 and "residual model" in done.stderr and "fp32" in done.stderr
    seg = _string_output_model(tmp_path / "seg.onnx")
    done = _build_trt(str(seg), "--out", str(tmp_path / "s.plan"))
    assert done.returncode == 2 and "strings" in done.stderr and "defect_name" in done.stderr
    assert "Traceback" not in done.stderr and not list(tmp_path.glob("*.plan*"))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_trt_passes_its_checks_for_the_backbone_then_needs_tensorrt(
    served_packages, tmp_path: Path
) -> None:
    repo = build_repository(served_packages[:1], "gpu", tmp_path / "repo").out_dir
    done = _build_trt(
        str(repo / "backbone" / "1" / "model.onnx"), "--out", str(tmp_path / "b.plan"), "--precision", "fp16"
    )
    assert done.returncode == 2 and "TensorRT's Python API is not installed" in done.stderr
