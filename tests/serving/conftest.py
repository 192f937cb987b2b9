"""Fixtures for the serving tests: Triton availability and a trivial Python-backend repository."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from adinspect.serving.server import TritonNotFoundError, find_backend_env, find_tritonserver


def _triton_missing() -> str | None:
    try:
        find_tritonserver()
        find_backend_env()
    except TritonNotFoundError as exc:
        return str(exc)
    return None


TRITON_MISSING = _triton_missing()
needs_triton = pytest.mark.skipif(
    TRITON_MISSING is not None, reason=f"tritonserver cannot run here: {TRITON_MISSING}"
)

IDENTITY_CONFIG = """\
name: "identity"
backend: "python"
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }]
instance_group [{ kind: KIND_CPU count: 1 }]
dynamic_batching { max_queue_delay_microseconds: 100 }
"""

IDENTITY_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", np.ascontiguousarray(x, dtype=np.float32))
            responses.append(pb_utils.InferenceResponse([out]))
        return responses
"""


def write_identity_repository(root: Path) -> Path:
    """A repository with one Python-backend model `identity` (FP32 [-1] in, same out)."""
    version = root / "identity" / "1"
    version.mkdir(parents=True)
    (root / "identity" / "config.pbtxt").write_text(IDENTITY_CONFIG)
    (version / "model.py").write_text(textwrap.dedent(IDENTITY_MODEL))
    return root


@pytest.fixture(scope="module")
def identity_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_identity_repository(tmp_path_factory.mktemp("identity_repo"))
