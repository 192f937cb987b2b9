"""The fault run of `adinspect bench --serving --soak ... --fault`: a crash under load, seen from the client.

A server of our own is loaded, SIGKILLed as a whole process group (tritonserver and its
Python-backend stubs, as a crash or the OOM killer would) and restarted on the same ports while
the load goes on. Reported: errors by gRPC status in each phase (before the kill, until the new
server is ready, after), seconds from the kill to ready and to the first good answer, and the
/dev/shm segments the killed server left behind (removed afterwards: only those it had mapped).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adinspect.benchmarks.load import Outcome, group_memory, process_group_pids, run_load
from adinspect.client import InspectionClient

if TYPE_CHECKING:
    from adinspect.server.launch import TritonServer


def mapped_shm(pgid: int) -> set[str]:
    """/dev/shm files mapped by a process group (the segments a crash of it could leave behind)."""
    names: set[str] = set()
    for pid in process_group_pids(pgid):
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        names.update(
            line.split(None, 5)[5].split(" (deleted)")[0] for line in maps.splitlines() if "/dev/shm/" in line
        )
    return names


def _remove_leftovers(owned: set[str]) -> list[str]:
    """The killed server's /dev/shm segments still present; removed (nobody else maps them)."""
    left = sorted(name for name in owned if Path(name).exists())
    for name in left:
        with contextlib.suppress(OSError):
            Path(name).unlink()
    return left


def run_fault(
    repository: Path,
    product: str,
    blobs: Sequence[bytes],
    concurrency: int,
    log_dir: Path,
    *,
    kill_after_s: float = 10.0,
    after_recovery_s: float = 10.0,
    recovery_timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Load a server of our own, SIGKILL its process group after `kill_after_s`, restart it on the
    same ports, keep the load on until the client gets a good answer again (at most
    `recovery_timeout_s`) and `after_recovery_s` more; what the client saw, phase by phase."""
    from adinspect.server.launch import TritonServer

    first = TritonServer(repository, log_file=log_dir / "fault_before.triton.log", startup_timeout=300)
    second = None
    first.start()
    stop = threading.Event()
    outcomes: list[Outcome] = []
    client = InspectionClient(first.grpc_url, deadline_s=60, retry=False)
    load = threading.Thread(
        target=run_load, args=(client, product, blobs, concurrency, lambda: not stop.is_set(), outcomes)
    )
    try:
        client.wait_until_ready(product)
        load.start()
        time.sleep(kill_after_s)
        killed = _kill(first)
        second = TritonServer(
            repository,
            grpc_port=first.grpc_port,
            http_port=first.http_port,
            metrics_port=first.metrics_port,
            log_file=log_dir / "fault_after.triton.log",
            startup_timeout=300,
        )
        second.start()
        ready_at = time.monotonic()
        _wait_for_success(outcomes, ready_at, recovery_timeout_s)
        time.sleep(after_recovery_s)
        stop.set()
        load.join()
        killed["memory_after_restart"] = group_memory(second.pid)
    finally:
        stop.set()
        if load.is_alive():
            load.join()
        client.close()
        for server in (first, second):
            if server is not None:
                server.stop()
    return _fault_report(outcomes, ready_at, **killed)


def _wait_for_success(outcomes: list[Outcome], since: float, timeout_s: float) -> None:
    """Until a request that ended after `since` succeeded, or `timeout_s` passed."""
    deadline, checked = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        end = len(outcomes)
        if any(o.status == "OK" and o.end > since for o in outcomes[checked:end]):
            return
        checked = end
        time.sleep(0.2)


def _kill(server: TritonServer) -> dict[str, Any]:
    """SIGKILL to the server's whole process group (tritonserver and its stubs), as a crash or the
    OOM killer would; returns when it happened, its memory just before, and the shm it left."""
    pgid = server.pid
    if pgid is None:
        raise RuntimeError("the server to kill is not running")
    owned, memory = mapped_shm(pgid), group_memory(pgid)
    killed_at = time.monotonic()
    os.killpg(pgid, signal.SIGKILL)
    server.stop()  # reaps it; a killed server's segments stay behind
    return {
        "killed_at": killed_at,
        "memory_before_kill": memory,
        "leftovers": _remove_leftovers(owned),
        "mapped": len(owned),
    }


def _fault_report(
    outcomes: Sequence[Outcome],
    ready_at: float,
    *,
    killed_at: float,
    memory_before_kill: dict[str, Any],
    memory_after_restart: dict[str, Any],
    leftovers: Sequence[str],
    mapped: int,
) -> dict[str, Any]:
    """Errors by phase (before the kill, until ready again, after) and the recovery times."""
    recovered = [o.end for o in outcomes if o.status == "OK" and o.end > killed_at]
    phases = {
        "before_kill": [o for o in outcomes if o.end <= killed_at],
        "down": [o for o in outcomes if killed_at < o.end <= ready_at],
        "after_restart": [o for o in outcomes if o.end > ready_at],
    }
    return {
        "requests": len(outcomes),
        "errors_by_status": dict(sorted(Counter(o.status for o in outcomes if o.status != "OK").items())),
        "phases": {
            name: {
                "requests": len(items),
                "errors_by_status": dict(Counter(o.status for o in items if o.status != "OK")),
                "first_error": {o.status: o.message[:300] for o in reversed(items) if o.status != "OK"},
            }
            for name, items in phases.items()
        },
        "restart_to_ready_s": ready_at - killed_at,
        "recovery_s": (min(recovered) - killed_at) if recovered else None,
        "shm_segments_mapped": mapped,
        "shm_segments_left_by_kill": len(leftovers),
        "memory_before_kill": memory_before_kill,
        "memory_after_restart": memory_after_restart,
    }
