"""Locate the pieces of Triton this package runs: the `nvidia-pytriton` wheel's tritonserver,
its libraries and Python backend, and the Python environment the backend stub embeds.

The 2.51 stub was compiled against NumPy 1.x and silently corrupts tensors under NumPy 2
(strides of 0, empty outputs, crashes on TYPE_STRING), so the stub gets its own environment with
NumPy < 2, created by `.ci/install_triton.sh`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from adinspect.repository.drain import DRAIN_FILE_ENV

BACKEND_ENV_VAR = "ADINSPECT_TRITON_BACKEND_ENV"
"""Environment variable naming the Python environment for Triton's Python backend."""

BACKEND_ENV_DIRNAME = "triton-backend-env"
"""Default location of that environment: `<sys.prefix>/triton-backend-env`."""

STUB_NAME = "triton_python_backend_stub"


class TritonNotFoundError(RuntimeError):
    """The tritonserver binary, its libraries or the Python-backend environment are missing."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the pieces of the wheel's Triton live."""

    binary: Path
    lib_dir: Path
    python_backend_dir: Path
    stubs_dir: Path
    version: str


def find_tritonserver() -> TritonInstall:
    """Locate tritonserver, its shared libraries and the Python backend in `nvidia-pytriton`.

    Raises:
        TritonNotFoundError: the wheel is not installed or is missing a piece.
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise TritonNotFoundError(
            "tritonserver not found: the PyPI wheel nvidia-pytriton is not installed in "
            f"{sys.prefix}; run `.ci/install_triton.sh {sys.prefix}`"
        )
    package_dir = Path(spec.origin).parent
    root = package_dir / "tritonserver"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        lib_dir=package_dir.parent / "nvidia_pytriton.libs",
        python_backend_dir=root / "backends" / "python",
        stubs_dir=root / "python_backend_stubs",
        version=importlib.metadata.version("nvidia-pytriton"),
    )
    for path in (install.binary, install.lib_dir, install.python_backend_dir / "libtriton_python.so"):
        if not path.exists():
            raise TritonNotFoundError(
                f"nvidia-pytriton {install.version} in {package_dir} has no {path.name} (expected {path}); "
                "reinstall it with `.ci/install_triton.sh`"
            )
    return install


@dataclass(frozen=True)
class BackendEnv:
    """The Python environment whose `bin/python3` the Python-backend stub embeds."""

    prefix: Path
    python_version: str  # "3.11"
    numpy_version: str


def find_backend_env(prefix: Path | str | None = None) -> BackendEnv:
    """Find and check the Python environment for Triton's Python backend.

    Order: the argument, then `$ADINSPECT_TRITON_BACKEND_ENV`, then `<sys.prefix>/triton-backend-env`.

    Raises:
        TritonNotFoundError: no such environment, or its NumPy is 2.x (the 2.51 stub corrupts tensors).
    """
    chosen = prefix or os.environ.get(BACKEND_ENV_VAR) or Path(sys.prefix) / BACKEND_ENV_DIRNAME
    env_dir = Path(chosen).resolve()
    python = env_dir / "bin" / "python3"
    if not python.exists():
        raise TritonNotFoundError(
            f"no Python environment for Triton's Python backend at {env_dir} (expected {python}); "
            f"create it with `.ci/install_triton.sh {sys.prefix}` or set {BACKEND_ENV_VAR}"
        )
    probe = "import sys, numpy; print(f'{sys.version_info[0]}.{sys.version_info[1]}', numpy.__version__)"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise TritonNotFoundError(
            f"the Triton backend environment {env_dir} cannot import numpy: {done.stderr.strip()[-500:]}"
        )
    python_version, numpy_version = done.stdout.split()
    if int(numpy_version.split(".")[0]) >= 2:
        raise TritonNotFoundError(
            f"the Triton backend environment {env_dir} has numpy {numpy_version}, expected numpy<2: "
            "the Python-backend stub of Triton 2.51 was built against NumPy 1.x and corrupts tensors "
            "under NumPy 2; rerun `.ci/install_triton.sh`"
        )
    return BackendEnv(prefix=env_dir, python_version=python_version, numpy_version=numpy_version)


def prepare_backends(install: TritonInstall, env_info: BackendEnv, workdir: Path) -> Path:
    """A private backend dir under `workdir`: the wheel's Python backend plus the stub matching the
    env's Python (links to the wheel's files)."""
    stub = install.stubs_dir / env_info.python_version / STUB_NAME
    if not stub.exists():
        known = sorted(p.name for p in install.stubs_dir.iterdir() if p.is_dir() and p.name[0].isdigit())
        raise TritonNotFoundError(
            f"nvidia-pytriton {install.version} has no Python-backend stub for Python "
            f"{env_info.python_version} of {env_info.prefix}; it has {known}"
        )
    python_dir = workdir / "backends" / "python"
    python_dir.mkdir(parents=True)
    for source in (*install.python_backend_dir.iterdir(), stub):
        if source.is_file():
            (python_dir / source.name).symlink_to(source)
    return python_dir.parent


def child_env(install: TritonInstall, env_info: BackendEnv, drain_file: Path) -> dict[str, str]:
    """tritonserver's environment; only the child's changes, this process's stays as it was."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(env_info.prefix / "bin"), env.get("PATH", "")])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(install.lib_dir), env.get("LD_LIBRARY_PATH")]))
    env[DRAIN_FILE_ENV] = str(drain_file)
    env.pop("PYTHONPATH", None)  # the stub would not honour it; models import their repository's copy
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep the verified repository free of __pycache__
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONHOME", None)
    return env
