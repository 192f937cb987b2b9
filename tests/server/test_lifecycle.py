"""A served line's life: broken numbers fail closed, overload fails fast, a refit goes live without
a failed request, SIGTERM drains, and a killed server is restarted with its shared memory cleaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from servers import clone_package, needs_triton, poison_served, running, serve_process

from adinspect.client import InspectionClient
from adinspect.imageio import decode_image, read_image_header
from adinspect.repository.build import build_repository
from adinspect.repository.integrity import verify_repository
from adinspect.repository.settings import RepositorySettings
from adinspect.server.launch import TritonServer, free_port

pytestmark = [pytest.mark.triton, pytest.mark.slow, needs_triton]


@pytest.fixture(scope="module")
def images(synthetic_root: Path) -> list[bytes]:
    return [
        p.read_bytes()
        for p in sorted((synthetic_root / "test").rglob("*.png"))
        if "ground_truth" not in str(p)
    ][:6]


@pytest.fixture(scope="module")
def live(fitted_package: Path, images, tmp_path_factory: pytest.TempPathFactory):
    """A server over widget + poisoned (its served bank made NaN after the build, which would have
    refused it), with a small queue (max 2 per step) to show overload, taking raw pixels at the
    test images' size."""
    from adinspect.repository.build import build_repository

    root = tmp_path_factory.mktemp("live")
    poisoned = clone_package(fitted_package, root / "poisoned", "poisoned")
    size = read_image_header(images[0]).shape[:2]
    settings = RepositorySettings(max_queue_size=2, max_batch_size=2, python_instances=1, raw_size=size)
    repo = build_repository([fitted_package, poisoned], "cpu", root / "repo", settings).out_dir
    poison_served(repo, "poisoned")
    with running(repo, root / "triton.log", startup_timeout=180, log_verbose=1) as server:
        yield server, server.repository


def test_a_nan_model_fails_the_part_with_a_reason(live, images) -> None:
    server, _ = live
    with InspectionClient(server.grpc_url, deadline_s=60) as client:
        result = client.inspect(images[0], "poisoned")
        good = client.inspect(images[0], "widget")
    assert result.verdict == "fail" and "not finite" in result.reason, result
    assert np.isfinite(good.score)


def _shm_bytes(prefix: str) -> int:
    return sum(p.stat().st_size for p in Path("/dev/shm").glob(f"{prefix}*"))


def test_raw_pixels_only_at_the_built_size_and_never_grow_shared_memory(live, images) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server, _ = live
    pixels = decode_image(images[0])
    with InspectionClient(server.grpc_url, deadline_s=60) as client:
        assert client.product_info("widget").raw_size == pixels.shape[:2]
        raw, encoded = client.inspect(pixels, "widget"), client.inspect(images[0], "widget")
        assert raw.score == pytest.approx(encoded.score, abs=1e-5)
    before = _shm_bytes(server.shm_prefix)
    big = grpcclient.InferInput("image_raw", [1, 4000, 4000, 3], "UINT8")
    big.set_data_from_numpy(np.zeros((1, 4000, 4000, 3), np.uint8))  # 48 MB of the wrong shape
    admin = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as info:
        admin.infer("inspect_widget", [big], client_timeout=60)
    admin.close()
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and "shape" in info.value.message()
    assert _shm_bytes(server.shm_prefix) == before, "refused before it reached shared memory"


def test_only_the_listed_models_are_loaded(live) -> None:
    server, _ = live
    args = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode().split("\0")
    loads = sorted(a for a in args if a.startswith("--load-model="))
    assert loads == ["--load-model=inspect_poisoned", "--load-model=inspect_widget"]


def test_overload_is_refused_at_once_and_the_server_goes_on(live, images) -> None:
    import tritonclient.grpc as grpcclient

    server, _ = live
    raw = grpcclient.InferenceServerClient(server.grpc_url)
    outcomes: list[str] = []
    done = threading.Semaphore(0)

    def callback(result, error) -> None:
        outcomes.append("ok" if error is None else f"{error.status()} {error.message()}")
        done.release()

    tensor = grpcclient.InferInput("image_bytes", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[images[0]]], dtype=object))
    for _ in range(24):
        raw.async_infer("inspect_widget", [tensor], callback=callback, client_timeout=120)
    for _ in range(24):
        assert done.acquire(timeout=180)
    refused = [o for o in outcomes if o != "ok"]
    assert refused, "24 concurrent requests against queues of 2 should refuse some"
    assert all("UNAVAILABLE" in o and "queue" in o.lower() for o in refused), refused
    assert outcomes.count("ok") >= 2
    with InspectionClient(server.grpc_url, deadline_s=60) as client:
        assert client.inspect(images[0], "widget").verdict in ("pass", "fail")
    raw.close()


def test_a_refit_goes_live_without_a_failed_request(
    live, images, fitted_package: Path, tmp_path: Path
) -> None:
    import tritonclient.grpc as grpcclient

    from adinspect.server.reload import update_product

    server, repo = live
    refit = clone_package(fitted_package, tmp_path / "widget_v2", "widget", threshold_scale=3.0)
    thresholds: list[float] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def traffic() -> None:
        with InspectionClient(server.grpc_url, deadline_s=60) as client:
            i = 0
            while not stop.is_set():
                try:
                    thresholds.append(client.inspect(images[i % len(images)], "widget").threshold)
                except Exception as exc:  # noqa: BLE001 - every failure is what the test counts
                    errors.append(exc)
                i += 1

    workers = [threading.Thread(target=traffic) for _ in range(2)]
    for worker in workers:
        worker.start()
    time.sleep(2.0)
    before = len(thresholds)
    admin = grpcclient.InferenceServerClient(server.grpc_url)
    report = update_product(repo, admin, refit)
    time.sleep(2.0)
    stop.set()
    for worker in workers:
        worker.join(timeout=120)
    admin.close()
    assert not errors, errors[:3]
    old, new = thresholds[0], thresholds[-1]
    assert before > 0 and new == pytest.approx(3.0 * old, rel=1e-5)
    assert set(np.round(thresholds, 6)) == {round(old, 6), round(new, 6)}  # all-old or all-new, never mixed
    assert (report.old_version, report.new_version) == (1, 2)
    assert not (repo / "inspect_widget" / "1").exists() and (repo / "inspect_widget" / "2").is_dir()
    verify_repository(repo)  # the manifest follows the swap


def _raw_traffic(url: str, image: bytes, stop: threading.Event, outcomes: list[tuple[float, str]]) -> None:
    """A raw gRPC client, as a camera's own code would be: every request once, no retry."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput("image_bytes", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[image]], dtype=object))
    while not stop.is_set():
        try:
            client.infer("inspect_widget", [tensor], client_timeout=10)
            outcomes.append((time.monotonic(), "OK"))
        except grpcclient.InferenceServerException as exc:
            outcomes.append((time.monotonic(), f"{exc.status()} {exc.message()}"))
            time.sleep(0.01)


def test_sigterm_drains_new_requests_get_unavailable_never_not_found(
    fitted_package: Path, images, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    build_repository([fitted_package], "cpu", repo)
    server = TritonServer(repo, log_file=tmp_path / "triton.log", startup_timeout=180)
    server.start()
    outcomes: list[tuple[float, str]] = []
    stop = threading.Event()
    workers = [
        threading.Thread(target=_raw_traffic, args=(server.grpc_url, images[0], stop, outcomes))
        for _ in range(3)
    ]
    try:
        for worker in workers:
            worker.start()
        time.sleep(3.0)
        stopping = time.monotonic()
        server.stop()  # drain (UNAVAILABLE, in-flight batches finish), then kill: no unload window
        stopped = time.monotonic()
        time.sleep(2.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        server.stop()
    before = [status for end, status in outcomes if end < stopping]
    after = [status for end, status in outcomes if end >= stopping]
    assert before and set(before) == {"OK"}, "no failure while it was ready"
    errors = [status for status in after if status != "OK"]
    assert errors and all(e.startswith("StatusCode.UNAVAILABLE") for e in errors), sorted(set(errors))[:5]
    assert any("draining" in e and "retry in 1 s" in e for e in errors), sorted(set(errors))[:5]
    assert stopped - stopping < server.stop_grace


def _shm_prefix(triton_pid: int | None) -> str:
    """The shared-memory prefix this launch gave tritonserver (from its command line)."""
    assert triton_pid is not None
    args = Path(f"/proc/{triton_pid}/cmdline").read_bytes().decode().split("\0")
    (flag,) = [a for a in args if "shm-region-prefix-name=" in a]
    return flag.split("shm-region-prefix-name=")[1]


def _regions(prefix: str) -> list[Path]:
    return list(Path("/dev/shm").glob(f"{prefix}*"))


def _pid_of_child(parent: int, name: str) -> int | None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text.split("(", 1)[1].split(")")[0]
        ppid = int(text.split(")")[-1].split()[1])
        if ppid == parent and comm == name:
            return int(stat.parent.name)
    return None


def test_serve_restarts_a_killed_server_and_cleans_its_shared_memory(
    fitted_package: Path, images, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    build_repository([fitted_package], "cpu", repo)
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "adinspect.cli", "serve", "--repo", str(repo), "--quiet"]
    command += [
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
        "--metrics-port",
        str(metrics_port),
    ]
    command += ["--restart", "on-failure"]
    url = f"127.0.0.1:{grpc_port}"
    with (
        open(log, "w") as sink,
        serve_process(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT) as serve,
    ):
        with InspectionClient(url, deadline_s=30) as client:
            client.wait_until_ready("widget", timeout_s=240)
            assert client.inspect(images[0], "widget").verdict in ("pass", "fail")
        triton = _pid_of_child(serve.pid, "tritonserver")
        assert triton is not None
        first = _shm_prefix(triton)
        assert _regions(first), "the Python backend's regions carry the launch's prefix"
        os.kill(triton, signal.SIGKILL)
        with InspectionClient(url, deadline_s=30) as client:
            client.wait_until_ready("widget", timeout_s=240)
            assert client.inspect(images[0], "widget").verdict in ("pass", "fail")
        second = _shm_prefix(_pid_of_child(serve.pid, "tritonserver"))
        assert second != first and not _regions(first), "the killed server's regions were removed"
        assert "restart 1/5" in log.read_text()
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=90) == 0
    assert not _regions(second), "a stopped server leaves none"
    assert _pid_of_child(serve.pid, "tritonserver") is None
