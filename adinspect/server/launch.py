"""Start, watch and stop the `tritonserver` binary shipped in the PyPI wheel `nvidia-pytriton`.

`TritonServer` is a context manager: it prepares a private backend directory, starts the server
bound to one host (127.0.0.1 unless told otherwise) on free ports, tees its log to a file, waits
for `/v2/health/ready`, and always stops it (SIGTERM, then SIGKILL of its process group after a
grace period). A server that exits before it is ready raises `ServerStartError` carrying Triton's
own last log lines (port in use, a broken repository, ...).

Stopping drains first (`repository.drain`): new requests get UNAVAILABLE with a retry hint, the
batches already running finish (at most `stop_grace` seconds), then the process group is killed
and its shared memory removed. Triton's own SIGTERM would unload the models while its endpoints
still answer, so clients would get NOT_FOUND for seconds instead of UNAVAILABLE.

Python-backend models run inside Triton's `triton_python_backend_stub`, an embedded Python that
takes its packages from the first `python3` on PATH. The 2.51 stub was compiled against NumPy 1.x
and silently corrupts tensors under NumPy 2 (strides of 0, empty outputs, crashing on
TYPE_STRING), so the stub gets its own environment with NumPy < 2: see `find_backend_env` and
`.ci/install_triton.sh`. The stub's interpreter does not see the launcher's packages (nor
PYTHONPATH): each Python model imports the adinspect library copy that `repo build` put next to
its `model.py`, so the server runs from any folder and from an installed wheel.

A repository written by `repo build` is verified against its manifest before Triton starts
(`integrity.verify_repository`: every file, no unlisted model folder, no symlink), and Triton
loads exactly the models the manifest lists. The Python backend's shared-memory regions get a
per-launch prefix so that `stop()` removes what a crashed server left in /dev/shm.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from adinspect.repository.drain import busy_markers
from adinspect.repository.integrity import read_manifest, verify_repository
from adinspect.server.process import free_port, parent_death_signal
from adinspect.server.supervise import RestartPolicy, StopRequest, StopRequested, Supervisor, stop_on_signals
from adinspect.server.triton_install import (
    BACKEND_ENV_DIRNAME,
    BACKEND_ENV_VAR,
    TritonInstall,
    TritonNotFoundError,
    child_env,
    find_backend_env,
    find_tritonserver,
    prepare_backends,
)
from adinspect.server.triton_log import ServerStartError, pending_requests, triton_error_lines

__all__ = [
    "BACKEND_ENV_DIRNAME",
    "BACKEND_ENV_VAR",
    "ServerStartError",
    "TritonNotFoundError",
    "TritonServer",
    "find_backend_env",
    "find_tritonserver",
    "free_port",
    "running_server",
    "triton_error_lines",
]


class TritonServer:
    """Run tritonserver over one model repository for the lifetime of a `with` block.

    Example:
        with TritonServer("model_repository") as server:
            client = InspectionClient(server.grpc_url)

    Args:
        repository: the model repository directory.
        host: address every endpoint binds to; 127.0.0.1 keeps the server off the network.
        grpc_port, http_port, metrics_port: None picks a free port at start.
        log_file: where Triton's log is kept; None keeps it only while the server runs.
        echo: also copy each log line to this stream (e.g. sys.stdout).
        extra_args: appended to the tritonserver command line verbatim.
        startup_timeout: seconds to wait for `/v2/health/ready`.
        stop_grace: seconds between SIGTERM and SIGKILL when stopping.
        backend_env: Python environment for the Python backend, see `find_backend_env`.
        log_verbose: tritonserver's --log-verbose level.
        require_manifest: refuse a repository without the manifest `repo build` writes. A repository
            with one is always verified before start.
    """

    def __init__(
        self,
        repository: Path | str,
        *,
        host: str = "127.0.0.1",
        grpc_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        log_file: Path | str | None = None,
        echo: TextIO | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 120.0,
        stop_grace: float = 15.0,
        backend_env: Path | str | None = None,
        log_verbose: int = 0,
        require_manifest: bool = False,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.host = host
        self._requested_ports = (grpc_port, http_port, metrics_port)
        self.grpc_port = self.http_port = self.metrics_port = 0
        self._log_file_arg = Path(log_file) if log_file is not None else None
        self.log_file: Path | None = None
        self.echo = echo
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self._backend_env_arg = backend_env
        self.log_verbose = log_verbose
        self.require_manifest = require_manifest
        self.shm_prefix = ""  # set per launch: a restarted server's regions never mix with the dead one's
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._errors: collections.deque[str] = collections.deque(maxlen=20)
        self._tee: threading.Thread | None = None
        self._models: list[str] = []  # loaded at start: the manifest's (all folders without one)
        self.starts = 0  # how many times tritonserver was launched (restarts + 1)

    # -- addresses -------------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_tail(self) -> list[str]:
        """Triton's last log lines (at most 40), preceded by earlier error lines that scrolled out."""
        tail = list(self._tail)
        return [line for line in self._errors if line not in tail] + tail

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, should_stop: Callable[[], bool] | None = None) -> None:
        """Start tritonserver and block until it is ready (or `should_stop()` turns true).

        Raises:
            StopRequested: `should_stop()` turned true before it was ready (it is stopped again).
            FileNotFoundError: the repository does not exist.
            RepositoryIntegrityError: a file differs from the repository manifest (or it has none and
                `require_manifest` is set).
            TritonNotFoundError: the binary or backend environment is missing.
            ServerStartError: Triton exited early or was not ready in time (its log tail attached).
        """
        if self._proc is not None:
            raise RuntimeError(f"tritonserver already started (pid {self._proc.pid})")
        if not self.repository.is_dir():
            raise FileNotFoundError(
                f"model repository {self.repository} does not exist or is not a directory"
            )
        if self.require_manifest or read_manifest(self.repository) is not None:
            self._models = verify_repository(self.repository).models
        install = find_tritonserver()
        env_info = find_backend_env(self._backend_env_arg)
        self._workdir = Path(tempfile.mkdtemp(prefix="adinspect-triton-"))
        self.shm_prefix = f"adinspect_{uuid.uuid4().hex[:12]}_"
        try:
            backends = prepare_backends(install, env_info, self._workdir)
            self.grpc_port, self.http_port, self.metrics_port = (
                port or free_port(self.host) for port in self._requested_ports
            )
            self._requested_ports = (
                self.grpc_port,
                self.http_port,
                self.metrics_port,
            )  # a restart keeps them
            self.log_file = self._log_file_arg or self._workdir / "tritonserver.log"
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            env = child_env(install, env_info, drain_file=self._workdir / "draining")
            self._launch(self._command(install, backends), env)
            self._wait_ready(should_stop or (lambda: False))
        except BaseException:
            self.stop()
            raise

    def _command(self, install: TritonInstall, backends: Path) -> list[str]:
        return [
            str(install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--log-verbose={self.log_verbose}",
            f"--exit-timeout-secs={max(1, int(self.stop_grace) - 2)}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            # no pool of reused gRPC request objects: each kept its largest payload (8 x a 48 MB raw
            # tensor = +400 MB for good); allocating per request costs microseconds
            "--grpc-infer-allocation-pool-size=0",
            # explicit control: only the models the manifest lists load (an ensemble's steps with
            # it); `repo update` can then swap a product's versions through the repository API
            "--model-control-mode=explicit",
            *(f"--load-model={name}" for name in self._models or ["*"]),
            *self.extra_args,
        ]

    def _launch(self, command: list[str], env: dict[str, str]) -> None:
        assert self.log_file is not None
        self.starts += 1
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self._workdir,  # never the launcher's folder: what serves must not depend on where it starts
            start_new_session=True,  # its own process group: SIGKILL reaches the backend stubs too
            preexec_fn=parent_death_signal(),
        )
        self._tee = threading.Thread(target=self._tee_log, name="tritonserver-log", daemon=True)
        self._tee.start()

    def _tee_log(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None and self.log_file is not None
        with self.log_file.open("w" if self.starts <= 1 else "a", encoding="utf-8") as sink:
            for raw in iter(self._proc.stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                sink.write(line + "\n")
                sink.flush()
                if line.strip() and not line.startswith("+") and (line[0] != "|" or "UNAVAILABLE" in line):
                    self._tail.append(line)
                    if triton_error_lines([line]):
                        self._errors.append(line)
                if self.echo is not None:
                    with contextlib.suppress(ValueError, OSError):
                        print(line, file=self.echo, flush=True)

    def _wait_ready(self, should_stop: Callable[[], bool]) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if should_stop():
                raise StopRequested("stop requested while tritonserver was starting")
            code = self._proc.poll()
            if code is not None:
                self._join_tee()
                raise ServerStartError(
                    f"tritonserver exited with code {code} before becoming ready "
                    f"(repository {self.repository}, grpc {self.grpc_url}, http {self.http_url})",
                    self.log_tail(),
                    code,
                )
            if self.is_ready():
                return
            time.sleep(0.1)
        raise ServerStartError(
            f"tritonserver was not ready within {self.startup_timeout:.0f} s (repository {self.repository})",
            self.log_tail(),
        )

    def is_ready(self, timeout: float = 1.0) -> bool:
        """True when `/v2/health/ready` answers 200."""
        if not self.http_port:
            return False
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=timeout) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def poll(self) -> int | None:
        """None while tritonserver runs; its exit code once it exited (0 when stopped or not started)."""
        return self._proc.poll() if self._proc is not None else 0

    def stop(self) -> int | None:
        """Drain, then kill tritonserver's process group and remove its shared memory; idempotent.

        Draining (`repository.drain`): the drain file makes new requests UNAVAILABLE ("retry"); the
        batches already running finish, for at most `stop_grace` seconds. The process stays known
        until it is reaped, so a stop interrupted half-way (Ctrl-C in a script) resumes on the next call.

        Returns:
            tritonserver's exit code (-9 once killed), or None if it was never started.
        """
        proc = self._proc
        code = None
        if proc is not None:
            try:
                if proc.poll() is None:
                    self._drain(proc)
            finally:
                # Everything in its group goes: tritonserver and the stubs (a crashed server's too).
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = proc.returncode
                self._proc = None
                self._join_tee(proc)
                self.remove_shared_memory()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        """Create the drain file, then wait (at most `stop_grace`) until no batch is running and nothing
        is queued: the busy markers are gone and Triton reports no pending request, twice in a row."""
        if self._workdir is None:
            return
        drain_file = self._workdir / "draining"
        with contextlib.suppress(OSError):
            drain_file.touch()
        deadline, quiet = time.monotonic() + self.stop_grace, 0
        while time.monotonic() < deadline and proc.poll() is None and quiet < 2:
            busy = busy_markers(drain_file) or pending_requests(self.metrics_url) > 0
            quiet = 0 if busy else quiet + 1
            time.sleep(0.05 if busy else 0.1)

    def remove_shared_memory(self) -> list[Path]:
        """Delete this launch's Python-backend regions in /dev/shm (a killed server leaves them)."""
        removed: list[Path] = []
        if not self.shm_prefix:
            return removed
        for path in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        return removed

    def _join_tee(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        if self._tee is not None:
            self._tee.join(timeout=5)
        proc = proc or self._proc
        if proc is not None and proc.stdout is not None and (self._tee is None or not self._tee.is_alive()):
            proc.stdout.close()

    def serve_forever(
        self, restart: str = "no", max_restarts: int = 5, log: TextIO | None = None, **policy: float
    ) -> int:
        """Block until the server exits or this process gets SIGINT/SIGTERM (any number of them),
        then stop it; restart it on failure if asked (see `adinspect.server.supervise`).

        Returns:
            0 after a requested stop, else tritonserver's exit code.
        """
        if self._proc is None:
            raise RuntimeError("serve_forever() needs a started server (use it inside `with`)")
        rules = RestartPolicy(restart, max_restarts, **policy)  # type: ignore[arg-type]
        stop = StopRequest()
        with stop_on_signals(stop):
            try:
                return Supervisor(self, rules, stop, log or sys.stderr).run()
            finally:
                self.stop()

    def wait(self) -> int:
        """Block until tritonserver exits; its exit code."""
        if self._proc is None:
            raise RuntimeError("wait() needs a started server (use it inside `with`)")
        return self._proc.wait()


@contextlib.contextmanager
def running_server(repository: Path | str, **kwargs: object) -> Iterator[TritonServer]:
    """Functional spelling of `with TritonServer(repository, **kwargs) as server`."""
    server = TritonServer(repository, **kwargs)  # type: ignore[arg-type]
    with server:
        yield server
