"""A square and a tall product served together (cpu flavour, one tritonserver): each answers as the
in-process inspector does, maps at the sent image's size (tolerance as in test_ensemble.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from servers import served

from adinspect.client import InspectionClient
from adinspect.imageio import read_image
from adinspect.runtime.inspector import Inspector

pytestmark = [pytest.mark.triton, pytest.mark.slow]

ATOL = 1e-4


@pytest.fixture(scope="module")
def client(fitted_package: Path, tall_package: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("shapes_served")
    with served([fitted_package, tall_package], root) as server:
        with InspectionClient(server.grpc_url, deadline_s=60) as c:
            yield c


def _images(root: Path) -> list[Path]:
    paths = sorted((root / "test").rglob("*.png"))
    return [p for p in paths if p.parent.name == "good"][:1] + [p for p in paths if p.parent.name != "good"][
        :2
    ]


def test_square_and_tall_products_served_together_equal_in_process(
    client: InspectionClient, fitted_package: Path, tall_package: Path, synthetic_root: Path, tall_root: Path
) -> None:
    assert client.products() == ["strip", "widget"]
    for package, root in ((tall_package, tall_root), (fitted_package, synthetic_root)):
        inspector = Inspector(package, threads=1)
        for path in _images(root):
            image = read_image(path)
            expected = inspector.inspect(image, name=str(path))
            result, heat = client.inspect_with_map(path.read_bytes(), inspector.product, map_format="array")
            assert heat.shape == image.shape[:2]
            np.testing.assert_allclose(heat, expected.anomaly_map, atol=ATOL, rtol=0)
            assert result.score == pytest.approx(expected.result.score, abs=ATOL)
            assert result.verdict == expected.result.verdict
    wide = np.zeros((100, 300, 3), np.uint8)  # any image size is resized to the product's input
    assert client.inspect_with_map(wide, "strip", map_format="array")[1].shape == (100, 300)
