"""`adinspect serve` against a real tritonserver that is killed: during start-up (a crash loop), after
a healthy run (the restart budget refills), and signalled again and again while it drains.

The model kills its own tritonserver from `initialize` as long as a counter file says so, and holds
the drain protocol's busy marker while it works (as adinspect's models do), so a stop has in-flight
work to wait for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from servers import needs_triton, serve_process

from adinspect.server.launch import free_port

pytestmark = [pytest.mark.triton, pytest.mark.slow, needs_triton]

MODEL = """
import json, os, signal, time
from pathlib import Path
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        counter = Path(params["crash_file"])
        crashes = int(counter.read_text()) if counter.exists() else 0
        if crashes < int(params["crashes"]):
            counter.write_text(str(crashes + 1))
            os.kill(os.getppid(), signal.SIGKILL)  # tritonserver dies before it is ready
        self.seconds = float(params["seconds"])
        drain = os.environ.get("ADINSPECT_DRAIN_FILE", "")
        self.marker = f"{drain}.busy.{os.getpid()}" if drain else ""

    def execute(self, requests):
        Path(self.marker).touch()
        time.sleep(self.seconds)
        one = [pb_utils.Tensor("OUTPUT0", np.ones(1, np.float32))]
        out = [pb_utils.InferenceResponse(one) for _ in requests]
        os.unlink(self.marker)
        return out
"""


def _repository(root: Path, crashes: int, seconds: float = 0.0) -> Path:
    version = root / "flaky" / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(textwrap.dedent(MODEL))
    params = {"crash_file": str(root / "crashes"), "crashes": str(crashes), "seconds": str(seconds)}
    parameters = "\n".join(
        f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in params.items()
    )
    (root / "flaky" / "config.pbtxt").write_text(
        'name: "flaky"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }]\n'
        'output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }]\n'
        f"instance_group [{{ kind: KIND_CPU count: 1 }}]\n{parameters}\n"
    )
    return root


class Serve:
    """`adinspect serve --unverified --restart on-failure ...` as a child, its stderr collected."""

    process: subprocess.Popen | None = None

    def __init__(self, repo: Path, *options: str) -> None:
        self.ports = [free_port() for _ in range(3)]
        names = ("--grpc-port", "--http-port", "--metrics-port")
        self.command = [sys.executable, "-m", "adinspect.cli", "serve", "--repo", str(repo), "--unverified"]
        self.command += ["--quiet", "--restart", "on-failure", "--restart-backoff", "0.2", *options]
        self.command += [x for name, port in zip(names, self.ports, strict=True) for x in (name, str(port))]
        self.lines: list[str] = []

    def read(self, process: subprocess.Popen) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, what: str, count: int = 1, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while self.text().count(what) < count:
            running = self.process is not None and self.process.poll() is None
            assert running and time.monotonic() < deadline, f"never saw {what!r} x{count}:\n{self.text()}"
            time.sleep(0.1)


def _triton_pid(serve_pid: int) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text.split(")")[-1].split()[1] == str(serve_pid) and "(tritonserver)" in text:
            return int(stat.parent.name)
    raise AssertionError("no tritonserver under serve")


def _infer(port: int, timeout: float = 60) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    tensor = grpcclient.InferInput("INPUT0", [1], "FP32")
    tensor.set_data_from_numpy(np.zeros(1, np.float32))
    try:
        return client.infer("flaky", [tensor], client_timeout=timeout).as_numpy("OUTPUT0")
    finally:
        client.close()


def _run(serve: Serve, scenario) -> tuple[int, Path]:
    with serve_process(serve.command, stderr=subprocess.PIPE, text=True) as process:
        serve.process = process
        reader = threading.Thread(target=serve.read, args=(process,), daemon=True)
        reader.start()
        scenario(process)
        code = process.wait(timeout=120)
        reader.join(timeout=10)
    return code, Path("/dev/shm")


def test_a_crash_loop_of_five_start_up_crashes_then_it_serves(tmp_path: Path) -> None:
    serve = Serve(_repository(tmp_path / "repo", crashes=5))

    def scenario(process: subprocess.Popen) -> None:
        serve.wait_for("Triton ready")
        assert _infer(serve.ports[0]).tolist() == [1.0]
        process.send_signal(signal.SIGTERM)

    code, _ = _run(serve, scenario)
    text = serve.text()
    assert code == 0, text
    assert text.count("did not start") == 5 and "restart 5/5" in text and "giving up" not in text
    assert (tmp_path / "repo" / "crashes").read_text() == "5"


def test_after_a_healthy_run_the_restart_budget_is_full_again(tmp_path: Path) -> None:
    serve = Serve(_repository(tmp_path / "repo", crashes=0), "--max-restarts", "1", "--healthy-reset", "3")

    def scenario(process: subprocess.Popen) -> None:
        serve.wait_for("Triton ready")
        for kill in (1, 2):  # each after more than 3 s ready: without the refill the second would end it
            time.sleep(4.0)
            os.kill(_triton_pid(process.pid), signal.SIGKILL)
            serve.wait_for("ready again", count=kill)
            assert _infer(serve.ports[0]).tolist() == [1.0]
        process.send_signal(signal.SIGTERM)

    code, _ = _run(serve, scenario)
    text = serve.text()
    assert code == 0, text
    assert text.count("restart 1/1") == 2 and "giving up" not in text


def test_signals_during_the_drain_give_one_clean_stop(tmp_path: Path) -> None:
    serve = Serve(_repository(tmp_path / "repo", crashes=0, seconds=3.0))
    answered: list[object] = []

    def scenario(process: subprocess.Popen) -> None:
        serve.wait_for("Triton ready")
        triton = _triton_pid(process.pid)
        prefix = next(a for a in Path(f"/proc/{triton}/cmdline").read_text().split("\0") if "shm-region" in a)
        serve.prefix = prefix.split("=")[-1]  # type: ignore[attr-defined]
        worker = threading.Thread(target=lambda: answered.append(_infer(serve.ports[0]).tolist()))
        worker.start()
        time.sleep(1.0)  # the request is being computed (3 s)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGINT):
            process.send_signal(sig)
            time.sleep(0.2)
        worker.join(timeout=60)
        serve.triton = triton  # type: ignore[attr-defined]

    code, shm = _run(serve, scenario)
    text = serve.text()
    assert code == 0 and "Traceback" not in text, text
    assert answered == [[1.0]], "the in-flight request was answered before the stop"
    assert (
        text.count("stopping: draining") == 1 and "Triton stopped (SIGTERM, SIGINT, SIGTERM, SIGINT)" in text
    )
    assert not Path(f"/proc/{serve.triton}").exists()  # type: ignore[attr-defined]
    assert not list(shm.glob(f"{serve.prefix}*"))  # type: ignore[attr-defined]


def test_the_config_parameters_are_what_the_model_reads(tmp_path: Path) -> None:
    """Guards the test model itself: its config parses with Triton's own schema."""
    from servers import parse_config

    config = parse_config(_repository(tmp_path, crashes=2) / "flaky" / "config.pbtxt")
    assert json.loads(json.dumps({k: v.string_value for k, v in config.parameters.items()}))["crashes"] == "2"
