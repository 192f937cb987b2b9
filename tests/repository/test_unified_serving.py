"""A unified package served: one model for both products, each product's ensemble with its own
threshold, equal to the in-process inspector (cpu flavour on a real tritonserver), `repo verify`,
and the gpu flavour's configs checked against Triton's schema and invad.onnx without a GPU.

Tolerance: served scores and maps must equal the in-process ones within 1e-4 absolute (the same
invad.onnx, ONNX Runtime and preprocessing code run on both sides)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from servers import parse_config, served

from adinspect.client import InspectionClient, InspectionError
from adinspect.contracts import INSPECT_OUT, UNIFIED, product_postprocess_model, unified_model
from adinspect.imageio import read_image
from adinspect.package import ModelPackage
from adinspect.repository.build import build_repository
from adinspect.repository.packages import RepositoryError
from adinspect.repository.unified import unified_steps
from adinspect.runtime.inspector import Inspector

ATOL = 1e-4
PRODUCTS = ("widget", "cloth")


def _io(config) -> tuple[list[str], list[str]]:
    return [t.name for t in config.input], [t.name for t in config.output]


def _images(*roots: Path) -> list[Path]:
    """Two good and two defective test images of each root."""
    out = []
    for root in roots:
        paths = sorted((root / "test").rglob("*.png"))
        out += [p for p in paths if p.parent.name == "good"][:2] + [
            p for p in paths if p.parent.name != "good"
        ][:2]
    return out


@pytest.fixture(scope="module")
def server(unified_package: Path, tmp_path_factory: pytest.TempPathFactory):
    with served([unified_package], tmp_path_factory.mktemp("unified_served")) as running:
        yield running


@pytest.mark.triton
@pytest.mark.slow
def test_one_served_model_answers_every_product_as_in_process(
    server, unified_package: Path, synthetic_root: Path, cloth_root: Path
) -> None:
    import tritonclient.grpc as grpcclient

    raw = grpcclient.InferenceServerClient(server.grpc_url)
    index = {m["name"]: m["state"] for m in raw.get_model_repository_index(as_json=True)["models"]}
    model = unified_model(ModelPackage.load(unified_package).product)
    expected = [
        model,
        *(f(p) for p in PRODUCTS for f in (product_postprocess_model, lambda q: f"inspect_{q}")),
    ]
    assert index == dict.fromkeys(expected, "READY")
    images = _images(synthetic_root, cloth_root)  # each product's images, and the other product's
    with InspectionClient(server.grpc_url, deadline_s=60) as client:
        assert client.products() == sorted(PRODUCTS)
        scores = {}
        for product in PRODUCTS:
            inspector = Inspector(unified_package, threads=1, product=product)
            assert client.product_info(product).threshold == pytest.approx(inspector.threshold, rel=1e-6)
            for path in images:
                result, amap = client.inspect_with_map(path.read_bytes(), product, map_format="array")
                local = inspector.inspect(read_image(path), name=str(path))
                assert result.product == product and result.verdict == local.result.verdict
                assert abs(result.score - local.result.score) <= ATOL
                assert result.threshold == pytest.approx(local.result.threshold, rel=1e-6)
                assert isinstance(amap, np.ndarray) and amap.shape == local.anomaly_map.shape
                np.testing.assert_allclose(amap, local.anomaly_map, atol=ATOL)
                scores.setdefault(path, []).append(result.score)
        # the model does not know the product: one image, one score, whichever ensemble is called
        assert all(abs(a - b) <= ATOL for a, b in scores.values())


@pytest.mark.triton
@pytest.mark.slow
def test_bad_requests_and_unserved_products_are_refused(server) -> None:
    with InspectionClient(server.grpc_url, deadline_s=30, retry=False) as client:
        with pytest.raises(InspectionError, match="truncated") as bad:
            client.inspect(b"\x89PNG\r\n\x1a\n broken", "widget")
        assert bad.value.code == "INVALID_ARGUMENT"
        with pytest.raises(InspectionError) as unknown:
            client.inspect(np.zeros((64, 64, 3), np.uint8), "bottle")  # no threshold, no ensemble
        assert unknown.value.code == "NOT_FOUND"


@pytest.mark.triton
@pytest.mark.slow
def test_repo_verify_passes_for_every_product(server, unified_package: Path) -> None:
    from adinspect.repository.verify import verify

    report = verify(server.grpc_url, [unified_package])  # held-out files found where it was trained
    assert report.passed, [r.problem for r in report.rows if r.problem]
    assert sorted({r.product for r in report.rows}) == sorted(PRODUCTS) and len(report.rows) == 8


def test_gpu_flavour_wires_one_model_for_every_product(unified_package: Path, tmp_path: Path) -> None:
    repo = build_repository([unified_package], "gpu", tmp_path / "gpu").out_dir
    model = unified_model(ModelPackage.load(unified_package).product)
    session = ort.InferenceSession(str(repo / model / "1" / "model.onnx"))
    inputs, outputs = _io(parse_config(repo / model / "config.pbtxt"))
    assert inputs == [i.name for i in session.get_inputs()] == [UNIFIED.image]
    assert outputs == [o.name for o in session.get_outputs()] == [UNIFIED.anomaly_map, UNIFIED.score]
    for product in PRODUCTS:
        ensemble = parse_config(repo / f"inspect_{product}" / "config.pbtxt")
        available = {t.name for t in ensemble.input}
        steps = ensemble.ensemble_scheduling.step
        assert [s.model_name for s in steps] == [s.model for s in unified_steps(model[6:], product, "gpu")]
        for step in steps:
            step_in, step_out = _io(parse_config(repo / step.model_name / "config.pbtxt"))
            assert set(step.input_map) <= set(step_in) and set(step.output_map) <= set(step_out)
            assert set(step.input_map.values()) <= available, step.model_name
            available |= set(step.output_map.values())
        assert {t.name for t in ensemble.output} <= available and set(INSPECT_OUT) <= available
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted(
        ["preprocess", model, *(f"{f}_{p}" for p in PRODUCTS for f in ("postprocess", "inspect"))]
    )


def test_unified_and_bank_packages_are_built_apart(
    unified_package: Path, served_packages: list[Path], tmp_path: Path
) -> None:
    gadget = served_packages[1]  # a product the unified package does not have
    with pytest.raises(RepositoryError, match="unified package and .* is not.* separate repositories"):
        build_repository([unified_package, gadget], "cpu", tmp_path / "repo")
    with pytest.raises(RepositoryError, match="two packages for product 'widget'"):
        build_repository([unified_package, served_packages[0]], "cpu", tmp_path / "repo")
