"""Closed-loop load on a served product, and the server's processes and memory, as the client sees them.

Shared by the soak (`adinspect.benchmarks.soak`) and the fault run (`adinspect.benchmarks.fault`):
every request is sent once and its outcome (end time, latency, gRPC status) recorded.
"""

from __future__ import annotations

import os
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

ERROR_PAUSE_S = 0.05
"""A worker's pause after a failed request, as a camera PC's loop would (no busy spin on a dead port)."""


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it: when it ended (monotonic s), latency, gRPC status."""

    end: float
    ms: float
    status: str  # "OK" or the gRPC status name (UNAVAILABLE, INVALID_ARGUMENT, ...)
    message: str = ""  # the error's text


# ------------------------------------------------------------------------------------ processes


def process_group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (tritonserver runs in its own: it and its stubs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def group_memory(pgid: int | None) -> dict[str, Any]:
    """RSS (MiB) summed over a process group, and how many processes it has."""
    if pgid is None:
        return {"skipped": "server not started by this run (pass no --url to measure its memory)"}
    page = os.sysconf("SC_PAGE_SIZE")
    total, count = 0, 0
    for pid in process_group_pids(pgid):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            count += 1
        except (OSError, IndexError, ValueError):
            continue
    return {"rss_mib": total / 2**20, "processes": count}


# ------------------------------------------------------------------------------------ load


def send(client: InspectionClient, product: str, blob: bytes | np.ndarray) -> tuple[str, str]:
    """(gRPC status name, error text) of one request; an array goes as image_raw, whatever its shape
    (the InspectionClient would encode one the server takes no raw input for)."""
    if isinstance(blob, np.ndarray):
        return send_raw(client.url, product, blob)
    try:
        client.inspect(blob, product)
    except InspectionError as exc:
        return exc.code or "CLIENT_ERROR", str(exc)
    return "OK", ""


def send_raw(url: str, product: str, array: np.ndarray) -> tuple[str, str]:
    """One raw uint8 tensor as `image_raw`, through a plain tritonclient (a hostile client's view)."""
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)
    tensor = grpc.InferInput(INSPECT_IN.image_raw, [1, *array.shape], "UINT8")
    tensor.set_data_from_numpy(np.ascontiguousarray(array, np.uint8)[None])
    try:
        client.infer(ensemble_model(product), [tensor], client_timeout=60)
    except grpc.InferenceServerException as exc:
        return str(exc.status()).removeprefix("StatusCode."), str(exc.message())
    finally:
        client.close()
    return "OK", ""


def run_load(
    client: InspectionClient,
    product: str,
    blobs: Sequence[bytes],
    concurrency: int,
    keep_going: Callable[[], bool],
    outcomes: list[Outcome] | None = None,
) -> list[Outcome]:
    """Closed-loop workers cycling through `blobs` while `keep_going()`; every request's outcome,
    appended as it ends to `outcomes` (so another thread can watch) and returned."""
    outcomes = [] if outcomes is None else outcomes
    lock = threading.Lock()
    counter = iter(range(1 << 62))

    def worker() -> None:
        while keep_going():
            with lock:
                index = next(counter)
            start = time.monotonic()
            status, message = send(client, product, blobs[index % len(blobs)])
            end = time.monotonic()
            with lock:
                outcomes.append(Outcome(end, (end - start) * 1000.0, status, message))
            if status != "OK":
                time.sleep(ERROR_PAUSE_S)

    workers = [threading.Thread(target=worker, name=f"soak-{i}") for i in range(concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return outcomes


def load_summary(outcomes: Sequence[Outcome], seconds: float) -> dict[str, Any]:
    """Requests, failures by status, p50/p90/p99 of the successful ones, throughput."""
    ok = np.array([o.ms for o in outcomes if o.status == "OK"], np.float64)
    errors = Counter(o.status for o in outcomes if o.status != "OK")
    summary: dict[str, Any] = {
        "requests": len(outcomes),
        "failures": int(sum(errors.values())),
        "errors_by_status": dict(sorted(errors.items())),
        "seconds": seconds,
        "throughput": len(ok) / seconds if seconds > 0 else float("nan"),
    }
    for q in (50, 90, 99):
        summary[f"p{q}_ms"] = float(np.percentile(ok, q)) if ok.size else float("nan")
    return summary
