"""The fault phases of `adinspect probe`, against a running `adinspect serve` (its pid known): kill -9
of its tritonserver under load (the supervisor restarts it), and SIGTERM to `serve` under load.

What the client sees is recorded per request: when it ended, its gRPC status, which image it sent
and the score it got. A wrong result is a successful answer whose score differs from the one the
same server gave that image before the fault. Clients send each request once (no retry), so every
error is counted as it happened.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adinspect.client import InspectionClient, InspectionError
from adinspect.contracts import INSPECT_IN, ensemble_model


@dataclass(frozen=True)
class Answer:
    end: float  # monotonic seconds
    status: str  # "OK" or a gRPC status name
    image: int
    score: float = float("nan")
    message: str = ""


def triton_child(serve_pid: int) -> int | None:
    """The tritonserver process `adinspect serve` runs (its process group leader), if any."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(tritonserver)" in text and text.split(")")[-1].split()[1] == str(serve_pid):
            return int(stat.parent.name)
    return None


def reference_scores(url: str, product: str, blobs: Sequence[bytes]) -> list[float]:
    """The score the server gives each image now (what later answers must equal)."""
    with InspectionClient(url, deadline_s=120) as client:
        client.wait_until_ready(product, timeout_s=300)
        return [client.inspect(blob, product).score for blob in blobs]


def _client_load(
    url: str, product: str, blobs: Sequence[bytes], keep_going: Callable[[], bool], out: list
) -> None:
    """One closed-loop camera: each image once, no retry (InspectionClient with retry=False)."""
    with InspectionClient(url, deadline_s=10, retry=False) as client:
        index = 0
        while keep_going():
            image = index % len(blobs)
            try:
                score = client.inspect(blobs[image], product).score
                out.append(Answer(time.monotonic(), "OK", image, score))
            except InspectionError as exc:
                out.append(
                    Answer(time.monotonic(), exc.code or "CLIENT_ERROR", image, message=str(exc)[:300])
                )
                time.sleep(0.05)
            index += 1


def _load(url: str, product: str, blobs: Sequence[bytes], concurrency: int, stop: threading.Event, out: list):
    workers = [
        threading.Thread(target=_client_load, args=(url, product, blobs, lambda: not stop.is_set(), out))
        for _ in range(concurrency)
    ]
    for worker in workers:
        worker.start()
    return workers


def _wrong(answers: Sequence[Answer], refs: Sequence[float]) -> int:
    return sum(
        1
        for a in answers
        if a.status == "OK" and not abs(a.score - refs[a.image]) <= 1e-4 * max(1.0, abs(refs[a.image]))
    )


def _errors(answers: Sequence[Answer]) -> dict[str, int]:
    return dict(sorted(Counter(a.status for a in answers if a.status != "OK").items()))


def run_kill(
    url: str,
    product: str,
    blobs: Sequence[bytes],
    refs: Sequence[float],
    serve_pid: int,
    concurrency: int,
    before_s: float = 5.0,
    after_s: float = 10.0,
    timeout_s: float = 180.0,
) -> dict[str, Any]:
    """SIGKILL tritonserver and its stubs (its process group) under load; serve must restart it."""
    triton = triton_child(serve_pid)
    if triton is None:
        raise RuntimeError(f"no tritonserver runs under serve (pid {serve_pid})")
    answers: list[Answer] = []
    stop = threading.Event()
    workers = _load(url, product, blobs, concurrency, stop, answers)
    try:
        time.sleep(before_s)
        killed = time.monotonic()
        os.killpg(triton, signal.SIGKILL)
        ready = _wait_ready(url, product, killed + timeout_s)
        time.sleep(after_s)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    recovered = [a.end for a in answers if a.status == "OK" and a.end > killed]
    return {
        "requests": len(answers),
        "errors_before_kill": _errors([a for a in answers if a.end <= killed]),
        "errors_after_kill": _errors([a for a in answers if a.end > killed]),
        "wrong_results": _wrong(answers, refs),
        "ready_again_s": None if ready is None else ready - killed,
        "first_good_answer_s": min(recovered) - killed if recovered else None,
        "new_tritonserver": triton_child(serve_pid) not in (None, triton),
    }


def _wait_ready(url: str, product: str, deadline: float) -> float | None:
    """When the product was ready again (polled every 0.1 s), None if not before `deadline`."""
    with InspectionClient(url, deadline_s=1.0, retry=False) as client:
        while time.monotonic() < deadline:
            try:
                if client.is_ready() and client.is_product_ready(product):
                    return time.monotonic()
            except InspectionError:
                pass
            time.sleep(0.1)
    return None


def _raw_load(url: str, product: str, blob: bytes, stop: threading.Event, out: list) -> None:
    """A camera's own gRPC code: each request once, no retry policy at all."""
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)
    tensor = grpc.InferInput(INSPECT_IN.image_bytes, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[blob]], dtype=object))
    while not stop.is_set():
        try:
            client.infer(ensemble_model(product), [tensor], client_timeout=10)
            out.append(Answer(time.monotonic(), "OK", 0))
        except grpc.InferenceServerException as exc:
            status = str(exc.status()).removeprefix("StatusCode.")
            out.append(Answer(time.monotonic(), status, 0, message=str(exc.message())[:300]))
            time.sleep(0.02)
    client.close()


def run_drain(
    url: str,
    product: str,
    blob: bytes,
    serve_pid: int,
    concurrency: int,
    before_s: float = 3.0,
    after_s: float = 3.0,
) -> dict[str, Any]:
    """SIGTERM to `serve` under load from raw gRPC clients: failures while ready, what came after."""
    answers: list[Answer] = []
    stop = threading.Event()
    workers = [
        threading.Thread(target=_raw_load, args=(url, product, blob, stop, answers))
        for _ in range(concurrency)
    ]
    for worker in workers:
        worker.start()
    try:
        time.sleep(before_s)
        signalled = time.monotonic()
        os.kill(serve_pid, signal.SIGTERM)
        gone = _wait_gone(serve_pid, signalled + 120)
        time.sleep(after_s)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    after = [a for a in answers if a.end > signalled]
    statuses = Counter(a.status for a in after)
    return {
        "requests": len(answers),
        "failures_before_sigterm": sum(1 for a in answers if a.end <= signalled and a.status != "OK"),
        "answers_after_sigterm": dict(sorted(statuses.items())),
        "not_found_after_sigterm": statuses.get("NOT_FOUND", 0),
        "every_failure_after_sigterm_unavailable": all(a.status in ("OK", "UNAVAILABLE") for a in after),
        "draining_answers": sum(1 for a in after if "draining" in a.message),
        "serve_exited_s": None if gone is None else gone - signalled,
    }


def _wait_gone(pid: int, deadline: float) -> float | None:
    """When process `pid` exited (gone, or a zombie its parent has not reaped yet)."""
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
        except (OSError, IndexError):
            return time.monotonic()
        if state == "Z":
            return time.monotonic()
        time.sleep(0.05)
    return None
