"""`inspect_<product>` with `seg_<product>` on a real tritonserver against the in-process inspector.

One extra server (cpu flavour, 127.0.0.1, free ports, stopped by its context manager) over a
repository of `widget` with ADClick-Seg, `widget_named` (the same model, claiming it can tell
its defect types apart, so results name one) and the training-free `gadget`.

Tolerance: seg scores and maps from Triton must equal the in-process inspector's within 1e-5
absolute (they are probabilities in [0, 1]; same ONNX files and ONNX Runtime version, so they
agree up to the batch composition of the dynamic batcher).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from servers import claiming_types, clone_package, served

from adinspect.client import InspectionClient
from adinspect.imageio import read_image
from adinspect.runtime.inspector import Inspector

pytestmark = [pytest.mark.triton, pytest.mark.slow]

ATOL = 1e-5


@pytest.fixture(scope="module")
def seg_server(seg_package: Path, fitted_package: Path, tmp_path_factory: pytest.TempPathFactory):
    from adinspect.repository.settings import RepositorySettings

    root = tmp_path_factory.mktemp("seg_served")
    gadget = clone_package(fitted_package, root / "gadget", "gadget")
    named = claiming_types(seg_package, root / "widget_named", "widget_named")
    settings = RepositorySettings(python_instances=1, intra_op_threads=1)
    with served([seg_package, named, gadget], root, settings, log="tritonserver.log") as server:
        yield server


@pytest.fixture(scope="module")
def seg_client(seg_server) -> InspectionClient:
    with InspectionClient(seg_server.grpc_url, deadline_s=60) as client:
        yield client


def test_seg_ensemble_equals_in_process_inspector(
    seg_client, seg_package: Path, synthetic_root: Path
) -> None:
    inspector = Inspector(seg_package, threads=1)
    assert inspector.seg_info is not None
    info = seg_client.product_info("widget")
    assert info.threshold == pytest.approx(inspector.threshold, rel=1e-6)
    assert info.defect_types == inspector.seg_info.defect_types
    paths = sorted((synthetic_root / "test").rglob("*.png"))
    picked = [p for p in paths if p.parent.name == "good"][:1] + [
        p for p in paths if p.parent.name != "good"
    ][:2]
    for path in picked:
        image = read_image(path)
        expected = inspector.inspect(image, name=str(path))
        result, heat = seg_client.inspect_with_map(path, "widget", map_format="array")
        np.testing.assert_allclose(heat, expected.anomaly_map, atol=ATOL, rtol=0)
        assert result.score == pytest.approx(expected.result.score, abs=ATOL)
        assert result.threshold == pytest.approx(inspector.threshold, rel=1e-6)
        assert result.defect_type == expected.result.defect_type
        named = info.defect_types if inspector.seg_info.names_types else (None,)
        assert result.defect_type in named
        assert result.verdict == expected.result.verdict
        assert [r.area for r in result.regions] == [r.area for r in expected.result.regions]


def test_training_free_product_beside_it_has_no_defect_type(
    seg_client, fitted_package, synthetic_root
) -> None:
    image = sorted((synthetic_root / "test").rglob("*.png"))[0]
    expected = Inspector(fitted_package, threads=1).inspect_file(image).result
    result = seg_client.inspect(image, "gadget")
    assert result.defect_type is None and seg_client.product_info("gadget").defect_types == ()
    assert result.score == pytest.approx(expected.score, abs=1e-4)
    assert result.threshold == pytest.approx(expected.threshold, rel=1e-6)


def test_a_model_that_claims_its_types_names_them_as_in_process(
    seg_client, seg_server, synthetic_root: Path
) -> None:
    named = seg_server.repository.parent / "widget_named"  # beside the repository (fixture)
    inspector = Inspector(named, threads=1)
    assert inspector.seg_info is not None and inspector.seg_info.names_types
    info = seg_client.product_info("widget_named")
    defective = sorted(p for p in (synthetic_root / "test").rglob("*.png") if p.parent.name != "good")[:3]
    for path in defective:
        expected = inspector.inspect(read_image(path), name=str(path))
        result = seg_client.inspect(path, "widget_named")
        assert expected.result.defect_type in info.defect_types  # a name, not None
        assert result.defect_type == expected.result.defect_type
        assert result.score == pytest.approx(expected.result.score, abs=ATOL)
