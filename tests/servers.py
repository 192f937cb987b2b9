"""Helpers for the tests that build Triton repositories and start servers (repository, server,
client, benchmarks): Triton's availability, a trivial Python-backend repository, cloned packages,
and the one way a test starts a tritonserver (`running`, `served`). The session fixtures built on
them (served_packages, cpu_repository, triton_server, ...) are in tests/conftest.py."""

from __future__ import annotations

import contextlib
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adinspect.repository.settings import RepositorySettings
from adinspect.server.launch import TritonNotFoundError, TritonServer, find_backend_env, find_tritonserver


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


def skip_without_triton() -> None:
    """Skip the calling test or fixture where tritonserver cannot run."""
    if TRITON_MISSING is not None:
        pytest.skip(f"tritonserver cannot run here: {TRITON_MISSING}")


@contextlib.contextmanager
def running(repository: Path, log_file: Path | None = None, **options: Any) -> Iterator[TritonServer]:
    """tritonserver on free 127.0.0.1 ports over `repository` (skips where Triton cannot run);
    stopped on the way out, whatever the test did."""
    skip_without_triton()
    with TritonServer(repository, log_file=log_file, **options) as server:
        yield server


@contextlib.contextmanager
def served(
    packages: list[Path],
    root: Path,
    settings: RepositorySettings | None = None,
    repo: str = "repo",
    log: str = "triton.log",
    startup_timeout: float = 180,
    **options: Any,
) -> Iterator[TritonServer]:
    """`repo build` (cpu flavour) of `packages` into `root/<repo>`, served by `running` with its log
    in `root/<log>`; `server.repository` is the repository."""
    from adinspect.repository.build import build_repository

    skip_without_triton()
    repository = build_repository(packages, "cpu", root / repo, settings).out_dir
    with running(repository, root / log, startup_timeout=startup_timeout, **options) as server:
        yield server


def parse_config(path: Path):
    """Parse config.pbtxt with Triton's own ModelConfig schema (fails on any unknown field)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


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


def poison_served(repo: Path, product: str) -> None:
    """Make a built cpu repository serve a NaN bank for `product` and reseal its manifest: a hand edit
    that `repo build` would have refused, so that only the fail-closed verdict stands in its way."""
    import json

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from adinspect.repository.integrity import MARKER, hash_models

    path = repo / f"inspect_{product}" / "1" / "model.onnx"
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if tensor.name == "bank_features":
            values = numpy_helper.to_array(tensor)
            tensor.CopyFrom(numpy_helper.from_array(np.full(values.shape, np.nan, values.dtype), tensor.name))
    onnx.save(model, str(path))
    manifest = json.loads((repo / MARKER).read_text())
    manifest["files"] = hash_models(repo, manifest["models"])
    (repo / MARKER).write_text(json.dumps(manifest, indent=2))


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
