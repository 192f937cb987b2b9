"""TritonServer against the real tritonserver binary with a trivial Python-backend model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from servers import needs_triton, write_identity_repository

from adinspect.server.launch import ServerStartError, TritonServer, find_backend_env, find_tritonserver

pytestmark = [pytest.mark.triton, needs_triton]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(")")[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_locates_binary_libs_and_backend_env() -> None:
    install = find_tritonserver()
    env = find_backend_env()
    assert install.binary.name == "tritonserver" and os.access(install.binary, os.X_OK)
    assert any(install.lib_dir.glob("libtritonserver*.so"))
    assert (install.stubs_dir / env.python_version / "triton_python_backend_stub").exists()
    assert int(env.numpy_version.split(".")[0]) < 2


def test_ready_infer_and_stopped(identity_repository: Path, tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    log = tmp_path / "triton.log"
    with TritonServer(identity_repository, log_file=log) as server:
        pid = server.pid
        assert pid is not None and server.is_ready()
        assert server.grpc_url.startswith("127.0.0.1:")
        client = grpcclient.InferenceServerClient(server.grpc_url)
        assert client.is_model_ready("identity")
        x = np.arange(6, dtype=np.float32).reshape(1, 6)
        inp = grpcclient.InferInput("INPUT0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = client.infer("identity", [inp]).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(out, x)
        client.close()
    assert not _alive(pid)
    assert _group_members(pid) == []  # the Python-backend stubs are gone too
    text = log.read_text()
    assert "successfully loaded 'identity'" in text
    assert f"Started GRPCInferenceService at 127.0.0.1:{server.grpc_port}" in text


def test_port_in_use_reports_tritons_reason(identity_repository: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = TritonServer(identity_repository, grpc_port=port, startup_timeout=60)
        started = time.monotonic()
        with pytest.raises(ServerStartError) as info:
            server.start()
    assert time.monotonic() - started < 60, "a port clash must be reported, not waited out"
    assert f"127.0.0.1:{port}" in info.value.reason and "already in use" in info.value.reason
    assert info.value.returncode not in (None, 0)
    assert not server.running()


def _break_config(repo: Path) -> None:
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text(
        'name: "broken"\nbackend: "python"\nmax_batch_size: [oops\n'
    )


def _break_model_code(repo: Path) -> None:
    (repo / "identity" / "1" / "model.py").write_text("import no_such_module_anywhere\n")


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_break_config, "Expected integer"),
        (_break_model_code, "No module named 'no_such_module_anywhere'"),
    ],
)
def test_broken_repository_reports_tritons_reason(tmp_path: Path, breakage, expected: str) -> None:
    repo = write_identity_repository(tmp_path / "repo")
    breakage(repo)
    server = TritonServer(repo, startup_timeout=60)
    with pytest.raises(ServerStartError) as info:
        server.start()
    assert expected in info.value.reason
    assert "failed to load all models" in str(info.value)
    assert not server.running()


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TritonServer(tmp_path / "nowhere").start()


def test_stopped_when_the_block_raises(identity_repository: Path) -> None:
    server = TritonServer(identity_repository)
    with pytest.raises(RuntimeError, match="boom"), server:
        pid = server.pid
        raise RuntimeError("boom")
    assert pid is not None and not _alive(pid)


def test_sigterm_to_the_launcher_stops_the_server(identity_repository: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from adinspect.server.launch import TritonServer
        with TritonServer({str(identity_repository)!r}) as server:
            Path({str(pid_file)!r}).write_text(str(server.pid))
            raise SystemExit(server.serve_forever())
        """
    )
    launcher = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 90
        while not pid_file.exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid_file.exists(), "launcher never reported a ready server"
        triton_pid = int(pid_file.read_text())
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0
        assert not _alive(triton_pid)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
