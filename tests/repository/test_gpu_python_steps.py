"""The gpu flavour's Python-backend steps (`preprocess`, `postprocess`) on a real tritonserver.

The gpu ensemble cannot be served here (no GPU, and the wheel's tritonserver has no ONNX Runtime
backend), but its two Python models can: they are copied out of a gpu repository as built, served
alone, and called directly with what the ensemble would pass them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from servers import needs_triton, running

from adinspect.contracts import INSPECT_IN, INSPECT_OUT, POSTPROCESS_IN, PREPROCESS_OUT
from adinspect.geometry import preprocess
from adinspect.imageio import read_image
from adinspect.runtime.inspector import Inspector

pytestmark = [pytest.mark.triton, pytest.mark.slow, needs_triton]


@pytest.fixture(scope="module")
def python_steps(gpu_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("gpu_python_steps") / "repo"
    for model in ("preprocess", "postprocess"):
        shutil.copytree(gpu_repository / model, repo / model)
    with running(repo, repo.parent / "tritonserver.log", startup_timeout=300) as server:
        yield server


def _infer(server, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    client = grpcclient.InferenceServerClient(server.grpc_url)
    sent = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        sent.append(tensor)
    wanted = [grpcclient.InferRequestedOutput(name) for name in outputs]
    result = client.infer(model, sent, outputs=wanted, client_timeout=60)
    client.close()
    return {name: result.as_numpy(name) for name in outputs}


def test_preprocess_serves_what_the_in_process_preprocess_computes(
    python_steps, served_packages: list[Path], synthetic_root: Path
) -> None:
    path = sorted((synthetic_root / "test").rglob("*.png"))[0]
    spec = Inspector(served_packages[0], threads=1).package.preprocess
    out = _infer(
        python_steps,
        "preprocess",
        {INSPECT_IN.image_bytes: np.array([[path.read_bytes()]], dtype=object)},
        list(PREPROCESS_OUT),
    )
    image = read_image(path)
    np.testing.assert_allclose(out[PREPROCESS_OUT.image][0], preprocess(image, spec), atol=1e-6)
    assert out[PREPROCESS_OUT.original_size].tolist() == [list(image.shape[:2])]


def test_postprocess_fails_closed_and_finds_regions(python_steps) -> None:
    size = np.array([[40, 60]], np.int32)
    hot = np.zeros((1, 1, 256, 256), np.float32)  # the synthetic package's 256² input
    hot[0, 0, 64:128, 64:128] = 5.0
    cases = {
        "defect": (hot, 5.0, b"fail", b"above threshold"),
        "good": (np.zeros_like(hot), 0.5, b"pass", None),
        "nan score": (np.zeros_like(hot), float("nan"), b"fail", b"not finite"),
    }
    for case, (amap, score, verdict, reason) in cases.items():
        out = _infer(
            python_steps,
            "postprocess",
            {
                POSTPROCESS_IN.anomaly_map: amap,
                POSTPROCESS_IN.score: np.array([[score]], np.float32),
                POSTPROCESS_IN.threshold: np.array([[1.0]], np.float32),
                POSTPROCESS_IN.original_size: size,
                POSTPROCESS_IN.map_format: np.array([[b"array"]], dtype=object),
            },
            [INSPECT_OUT.verdict, INSPECT_OUT.reason, INSPECT_OUT.regions, INSPECT_OUT.anomaly_map],
        )
        assert out[INSPECT_OUT.verdict][0, 0] == verdict, case
        said = out[INSPECT_OUT.reason][0, 0]
        assert said == b"" if reason is None else reason in said, case
        assert out[INSPECT_OUT.anomaly_map].shape == (1, 40, 60), case
        assert (out[INSPECT_OUT.regions][0, 0] != b"[]") == (case == "defect"), case
