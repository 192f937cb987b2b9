"""The served ensembles against the in-process inspector, bad requests, and the gRPC client.

Tolerance: scores and maps from Triton must equal the in-process inspector's within 1e-4
absolute (scores are O(10); in practice they agree exactly: same ONNX files, same ONNX Runtime
version, same preprocessing code; the only allowed differences are the ONNX Runtime batch
composition and OpenCV's version in the backend environment).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from adinspect.benchmarks.bombs import tiff_bomb
from adinspect.client import InspectionClient, InspectionError
from adinspect.contracts import INSPECT_IN, ensemble_model
from adinspect.imageio import read_image
from adinspect.runtime.inspector import Inspector

pytestmark = [pytest.mark.triton, pytest.mark.slow]

ATOL = 1e-4


@pytest.fixture(scope="module")
def client(triton_server) -> InspectionClient:
    with InspectionClient(triton_server.grpc_url, deadline_s=60) as c:
        yield c


@pytest.fixture(scope="module")
def test_images(synthetic_root: Path) -> list[Path]:
    paths = sorted((synthetic_root / "test").rglob("*.png"))
    good = [p for p in paths if p.parent.name == "good"][:2]
    bad = [p for p in paths if p.parent.name != "good"][:3]
    return good + bad


@pytest.fixture(scope="module")
def inspectors(served_packages: list[Path]) -> dict[str, Inspector]:
    return {pkg.name: Inspector(pkg, threads=1) for pkg in served_packages}


def test_every_served_model_answers(client: InspectionClient, triton_server, served_packages) -> None:
    """One end-to-end gRPC check per served model (STYLE §15): cpu flavour, one model per product."""
    import tritonclient.grpc as grpcclient

    assert client.is_live() and client.is_ready()
    assert client.products() == ["gadget", "widget"]
    raw = grpcclient.InferenceServerClient(triton_server.grpc_url)
    index = {m["name"]: m["state"] for m in raw.get_model_repository_index(as_json=True)["models"]}
    assert index == dict.fromkeys(["inspect_gadget", "inspect_widget"], "READY")
    image = np.full((64, 80, 3), 127, np.uint8)
    for product in ("widget", "gadget"):
        assert client.is_product_ready(product)
        result = client.inspect(image, product)
        assert result.product == product and np.isfinite(result.score)
    # Every served model ran at least once.
    stats = raw.get_inference_statistics(as_json=True)["model_stats"]
    counts = {m["name"]: int(m["inference_stats"]["success"].get("count", 0)) for m in stats}
    assert all(count > 0 for count in counts.values()), counts


@pytest.mark.parametrize("as_bytes", [True, False], ids=["image_bytes", "array_sent_as_png"])
def test_scores_and_maps_equal_in_process(client, inspectors, test_images, as_bytes: bool) -> None:
    for product, inspector in inspectors.items():
        for path in test_images:
            image = read_image(path)
            expected = inspector.inspect(image, name=str(path))
            sent = path.read_bytes() if as_bytes else image
            result, heat = client.inspect_with_map(sent, product, name=str(path), map_format="array")
            assert heat.shape == image.shape[:2]
            np.testing.assert_allclose(heat, expected.anomaly_map, atol=ATOL, rtol=0)
            assert result.score == pytest.approx(expected.result.score, abs=ATOL)
            assert result.threshold == pytest.approx(inspector.threshold, rel=1e-6)
            assert result.verdict == expected.result.verdict
            assert [r.area for r in result.regions] == [r.area for r in expected.result.regions]


def test_products_keep_their_own_threshold(client, test_images) -> None:
    widget = client.inspect(test_images[0], "widget")
    gadget = client.inspect(test_images[0], "gadget")
    assert widget.score == pytest.approx(gadget.score, abs=ATOL)  # same bank
    assert gadget.threshold == pytest.approx(widget.threshold * 0.5, rel=1e-6)
    assert client.product_info("gadget").threshold == pytest.approx(gadget.threshold, rel=1e-6)


def test_map_as_png(client, test_images) -> None:
    result, png = client.inspect_with_map(test_images[-1], "widget", map_format="png")
    gray = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert gray.dtype == np.uint8 and gray.shape == read_image(test_images[-1]).shape[:2]
    # 128 marks the threshold: a failing image has pixels above it, a passing one none.
    assert (gray.max() > 128) == (result.verdict == "fail")


def test_batch_and_async_match_single_calls(client, test_images) -> None:
    singles = [client.inspect(p, "widget") for p in test_images]
    batch = client.inspect_batch(test_images, "widget")
    assert [r.score for r in batch] == pytest.approx([r.score for r in singles], abs=ATOL)
    assert [r.image for r in batch] == [str(p) for p in test_images]
    future = client.inspect_async(test_images[0], "widget")
    result, heat = future.result(timeout=60)
    assert heat is None and result.score == pytest.approx(singles[0].score, abs=ATOL)


def _raw_infer(triton_server, model: str, inputs: list):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    return client.infer(model, inputs, client_timeout=60)


def _bytes_input(values: np.ndarray, name: str = INSPECT_IN.image_bytes):
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput(name, list(values.shape), "BYTES")
    tensor.set_data_from_numpy(values)
    return tensor


def _array_input(array: np.ndarray, name: str, dtype: str):
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput(name, list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return tensor


def _enormous_png() -> bytes:
    ok, buffer = cv2.imencode(".png", np.zeros((9000, 9000), np.uint8))
    assert ok
    return buffer.tobytes()


def _png(array: np.ndarray) -> np.ndarray:
    ok, buffer = cv2.imencode(".png", array)
    assert ok
    return np.array([[buffer.tobytes()]], dtype=object)


BAD_REQUESTS = {
    "corrupt_bytes": (
        lambda: [_bytes_input(np.array([[b"\x89PNG\r\n\x1a\nnot really"]], dtype=object))],
        "PNG",
    ),
    "not_an_image": (
        lambda: [_bytes_input(np.array([[b"hello"]], dtype=object))],
        "not an accepted image format",
    ),
    # raw pixels only where `repo build --raw-size` asked for them: refused before the copy
    "raw_pixels": (
        lambda: [_array_input(np.zeros((1, 32, 32, 3), np.uint8), INSPECT_IN.image_raw, "UINT8")],
        "unexpected inference input 'image_raw'",
    ),
    "wrong_dtype": (
        lambda: [_array_input(np.zeros((1, 1), np.float32), INSPECT_IN.image_bytes, "FP32")],
        "data-type",
    ),
    "tiny_image": (lambda: [_bytes_input(_png(np.zeros((4, 4, 3), np.uint8)))], ">= 8"),
    "empty_batch": (lambda: [_bytes_input(np.zeros((0, 1), dtype=object))], "got 0"),
    "two_images": (
        lambda: [_bytes_input(np.array([[b"a"], [b"b"]], dtype=object))],
        "got batch 2",  # the gpu ensemble's max_batch_size 1 says "batch-size must be <= 1"
    ),
    "enormous_image": (lambda: [_bytes_input(np.array([[_enormous_png()]], dtype=object))], "larger than"),
    "decode_bomb": (
        lambda: [_bytes_input(np.array([[tiff_bomb(big=True)]], dtype=object))],
        "20000x20000 = 400000000 pixels is larger than",
    ),
    "bad_map_format": (
        lambda: [
            _bytes_input(_png(np.zeros((32, 32, 3), np.uint8))),
            _bytes_input(np.array([[b"jpeg"]], dtype=object), INSPECT_IN.map_format),
        ],
        "map_format",
    ),
    "map_format_of_100_kb": (  # echoed whole it would not fit gRPC's trailers (RESOURCE_EXHAUSTED)
        lambda: [
            _bytes_input(_png(np.zeros((32, 32, 3), np.uint8))),
            _bytes_input(np.array([[b"x" * 100_000]], dtype=object), INSPECT_IN.map_format),
        ],
        "(100000 bytes)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_are_invalid_argument_and_server_goes_on(
    triton_server, client, test_images, case
) -> None:
    from tritonclient.utils import InferenceServerException

    make_inputs, expected = BAD_REQUESTS[case]
    with pytest.raises(InferenceServerException) as info:
        _raw_infer(triton_server, ensemble_model("widget"), make_inputs())
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT", info.value
    assert expected in info.value.message(), info.value.message()
    assert client.inspect(test_images[0], "widget").score > 0  # still answering


def test_unknown_product_is_not_found(triton_server, client, test_images) -> None:
    with pytest.raises(InspectionError) as info:
        client.inspect(test_images[0], "no_such_product")
    assert info.value.code == "NOT_FOUND", info.value
    assert "inspect_no_such_product" in str(info.value)
    assert client.inspect(test_images[0], "widget").score > 0


def test_client_rejects_bad_arguments_before_sending(client) -> None:
    with pytest.raises(ValueError, match="uint8"):
        client.inspect(np.zeros((8, 8, 3), np.float32), "widget")
    with pytest.raises(FileNotFoundError):
        client.inspect(Path("/nonexistent/part.png"), "widget")
    with pytest.raises(ValueError, match="map_format"):
        client.inspect_with_map(np.zeros((8, 8, 3), np.uint8), "widget", map_format="tiff")


def test_client_retries_unavailable_then_reports_it() -> None:
    from adinspect.server.launch import free_port

    client = InspectionClient(f"127.0.0.1:{free_port()}", deadline_s=1.0, backoff_s=0.01)
    with pytest.raises(InspectionError) as info:
        client.is_ready()
    assert info.value.code == "UNAVAILABLE"
    attempts = int(str(info.value).split("still failing after ")[1].split()[0])
    assert attempts > 1, str(info.value)  # retried within the one deadline, then reported
    with pytest.raises(TimeoutError):
        client.wait_until_ready(timeout_s=0.5)


def test_regions_json_is_the_results_schema(triton_server, test_images) -> None:
    response = _raw_infer(
        triton_server,
        ensemble_model("widget"),
        [_bytes_input(np.array([[test_images[-1].read_bytes()]], dtype=object))],
    )
    regions = json.loads(response.as_numpy("regions")[0][0])
    from adinspect.results import Region

    assert [Region.model_validate(r) for r in regions]
