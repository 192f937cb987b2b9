"""Fixtures for the serving tests: Triton availability and a trivial Python-backend repository."""

from __future__ import annotations

import contextlib
import subprocess
import textwrap
from collections.abc import Iterator
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


@contextlib.contextmanager
def serve_process(command: list[str], **popen: object) -> Iterator[subprocess.Popen]:
    """`adinspect serve` (or any server command) as a child process that is killed on the way out
    if the test did not stop it itself, so a failing assertion never leaves a Triton running."""
    serve = subprocess.Popen(command, **popen)  # type: ignore[call-overload]
    try:
        yield serve
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


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


# ----------------------------------------------------------------------------- served packages


def clone_package(source: Path, target: Path, product: str, threshold_scale: float = 1.0) -> Path:
    """A second product sharing the source's backbone: same files, new name (and threshold).

    Rewrites package.json/config.json consistently (checksums included) instead of fitting again,
    which would cost the test suite half a minute for nothing the serving path can tell apart.
    """
    import hashlib
    import json
    import shutil

    from adinspect.package import Manifest, write_manifest

    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config["product"]["name"] = product
    (target / "config.json").write_text(json.dumps(config, indent=2))
    manifest = json.loads((target / "package.json").read_text())
    manifest["product"] = product
    manifest["threshold"] = manifest["threshold"] * threshold_scale
    manifest["files"]["config.json"] = hashlib.sha256((target / "config.json").read_bytes()).hexdigest()
    write_manifest(target, Manifest.model_validate(manifest))
    return target


def claiming_types(source: Path, target: Path, product: str) -> Path:
    """A clone of a package with ADClick-Seg whose seg_model.json says the model can tell its
    defect types apart, resealed: the served seg graph then carries the type names (the tiny
    test seg models never earn the claim by training)."""
    import json

    from adinspect.train.common import register_files

    clone_package(source, target, product)
    meta = json.loads((target / "seg_model.json").read_text())
    meta["defect_type_claim"] = {"claimed": True, "rule": "set by the test", "n": 0}
    (target / "seg_model.json").write_text(json.dumps(meta, indent=2))
    register_files(target, ["seg_model.json"])  # reseal: the manifest holds every file's SHA-256
    return target


@pytest.fixture(scope="session")
def served_packages(fitted_package: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two products on one backbone: the fitted `widget` and `gadget` (half its threshold)."""
    root = tmp_path_factory.mktemp("served_packages")
    return [fitted_package, clone_package(fitted_package, root / "gadget", "gadget", threshold_scale=0.5)]


@pytest.fixture(scope="session")
def cpu_repository(served_packages: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adinspect.serving.repository import build_repository

    out = tmp_path_factory.mktemp("repo") / "model_repository"
    build_repository(served_packages, "cpu", out)
    return out


@pytest.fixture(scope="session")
def gpu_repository(served_packages: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gpu flavour's ensembles (built and checked here; served only where a GPU is)."""
    from adinspect.serving.repository import build_repository

    out = tmp_path_factory.mktemp("gpu") / "repo"
    build_repository(served_packages, "gpu", out)
    return out


@pytest.fixture(scope="session")
def triton_server(cpu_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """tritonserver on free 127.0.0.1 ports over the cpu repository, for the whole session."""
    if TRITON_MISSING is not None:
        pytest.skip(f"tritonserver cannot run here: {TRITON_MISSING}")
    from adinspect.serving.server import TritonServer

    log = tmp_path_factory.mktemp("triton_log") / "tritonserver.log"
    with TritonServer(cpu_repository, log_file=log, startup_timeout=180) as server:
        yield server
