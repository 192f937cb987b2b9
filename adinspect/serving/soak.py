"""`adinspect bench --serving --soak SECONDS`: reliability figures of a served product.

Three runs, each writing what the client saw (never a retry hiding an error: every request is
sent once, `retries=0`):
- soak: `concurrency` closed-loop workers for `seconds`; requests, failures by gRPC status,
  p50/p99, throughput, and the server's memory (RSS of tritonserver and its Python-backend stub
  processes, i.e. its process group) before and after;
- bad inputs: every image of `malformed.malformed_corpus()` once; each must come back
  INVALID_ARGUMENT while the server stays live and keeps giving a good image the same score;
- fault (`adinspect.serving.fault`): a server of our own killed mid-load and restarted.
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
from adinspect.serving.malformed import malformed_corpus, valid_variants

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


def _send(client: InspectionClient, product: str, blob: bytes | np.ndarray) -> tuple[str, str]:
    """(gRPC status name, error text) of one request."""
    try:
        client.inspect(blob, product)
    except InspectionError as exc:
        return exc.code or "CLIENT_ERROR", str(exc)
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
            status, message = _send(client, product, blobs[index % len(blobs)])
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


def run_soak(
    url: str, product: str, blobs: Sequence[bytes], seconds: float, concurrency: int, pgid: int | None
) -> dict[str, Any]:
    """Hold `concurrency` closed-loop workers on the server for `seconds`; the server's memory
    before, every tenth of the run (the first sample is after warm-up: ONNX Runtime's arenas
    grow with the first batches, so growth after it is what would point to a leak) and after."""
    memory_before = group_memory(pgid)
    samples: list[dict[str, Any]] = []
    with InspectionClient(url, deadline_s=60, retry=False) as client:
        client.wait_until_ready(product)
        start = time.monotonic()
        deadline = start + seconds
        done = threading.Event()
        sampler = threading.Thread(target=_sample_memory, args=(pgid, start, seconds / 10, done, samples))
        sampler.start()
        outcomes = run_load(client, product, blobs, concurrency, lambda: time.monotonic() < deadline)
        elapsed = time.monotonic() - start
        done.set()
        sampler.join()
    return {
        **load_summary(outcomes, elapsed),
        "concurrency": concurrency,
        "memory_before": memory_before,
        "memory_during": samples,
        "memory_after": group_memory(pgid),
    }


def _sample_memory(
    pgid: int | None, start: float, every_s: float, done: threading.Event, samples: list[dict[str, Any]]
) -> None:
    while not done.wait(every_s):
        samples.append({"t_s": round(time.monotonic() - start, 1), **group_memory(pgid)})


# ------------------------------------------------------------------------------------ bad inputs


def run_bad_inputs(url: str, product: str, good: bytes, pgid: int | None) -> dict[str, Any]:
    """Send every malformed image once; record each status, then check the server still serves."""
    memory_before = group_memory(pgid)
    with InspectionClient(url, deadline_s=60, retry=False) as client:
        reference = client.inspect(good, product).score
        refused: dict[str, str] = {}
        for item in malformed_corpus():
            refused[item.name] = _send(client, product, item.data)[0]
        controls = {item.name: _send(client, product, item.data)[0] for item in valid_variants()}
        live = client.is_live() and client.is_ready()
        after = client.inspect(good, product).score
    wrong = {name: status for name, status in refused.items() if status != "INVALID_ARGUMENT"}
    return {
        "tried": len(refused),
        "invalid_argument": len(refused) - len(wrong),
        "not_invalid_argument": wrong,
        "statuses": refused,
        "valid_controls": controls,
        "server_live_after": bool(live),
        "good_score_before": reference,
        "good_score_after": after,
        "memory_before": memory_before,
        "memory_after": group_memory(pgid),
    }


# ------------------------------------------------------------------------------------ the bench


def run_reliability_bench(
    model_dir: Path,
    images: Sequence[Path],
    out_json: Path,
    *,
    seconds: float,
    concurrency: int,
    url: str | None = None,
    fault: bool = False,
    kill_after_s: float = 10.0,
) -> dict[str, Any]:
    """Soak and bad inputs on `url` (or on a server started here), then the fault run if asked;
    writes `out_json` and returns the results."""
    import json
    import tempfile

    from adinspect.package import ModelPackage
    from adinspect.serving.repository import build_repository
    from adinspect.serving.server import TritonServer

    product = ModelPackage.load(model_dir, verify=False).product
    blobs = [Path(p).read_bytes() for p in images]
    if not blobs:
        raise ValueError("the soak needs at least one image, got none")
    results: dict[str, Any] = {"product": product, "images": len(blobs), "cpu_count": os.cpu_count()}
    log_dir = Path(out_json).parent
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="adinspect-soak-") as tmp:
        repository = Path(tmp) / "model_repository"
        if url is None or fault:
            build_repository([model_dir], "cpu", repository)
        if url is None:
            with TritonServer(
                repository, log_file=log_dir / "soak.triton.log", startup_timeout=300
            ) as server:
                results["soak"] = run_soak(server.grpc_url, product, blobs, seconds, concurrency, server.pid)
                results["bad_inputs"] = run_bad_inputs(server.grpc_url, product, blobs[0], server.pid)
        else:
            results["soak"] = run_soak(url, product, blobs, seconds, concurrency, None)
            results["bad_inputs"] = run_bad_inputs(url, product, blobs[0], None)
        if fault:
            from adinspect.serving.fault import run_fault

            results["fault"] = run_fault(
                repository, product, blobs, concurrency, log_dir, kill_after_s=kill_after_s
            )
    Path(out_json).write_text(json.dumps(results, indent=2, default=float) + "\n")
    return results


def _memory(record: dict[str, Any]) -> str:
    if "rss_mib" not in record:
        return "not measured"
    return f"{record['rss_mib']:.0f} MiB in {record['processes']} processes"


def format_reliability_table(results: dict[str, Any]) -> str:
    """The results as a few readable lines."""
    soak, bad = results["soak"], results["bad_inputs"]
    rows = [
        f"soak, {results['product']}, concurrency {soak['concurrency']}, {soak['seconds']:.0f} s:",
        f"  requests {soak['requests']}, failures {soak['failures']} {soak['errors_by_status'] or ''}",
        f"  p50 {soak['p50_ms']:.1f} ms, p90 {soak['p90_ms']:.1f} ms, p99 {soak['p99_ms']:.1f} ms, "
        f"{soak['throughput']:.1f} images/s",
        f"  server memory before {_memory(soak['memory_before'])}, after {_memory(soak['memory_after'])}",
        "  during (s: MiB): "
        + ", ".join(
            f"{m['t_s']:.0f}: {m['rss_mib']:.0f}" for m in soak.get("memory_during", []) if "rss_mib" in m
        ),
        f"bad inputs: {bad['invalid_argument']} of {bad['tried']} malformed images got INVALID_ARGUMENT"
        + (f"; others: {bad['not_invalid_argument']}" if bad["not_invalid_argument"] else ""),
        f"  valid controls: {bad['valid_controls']}",
        f"  server live afterwards: {bad['server_live_after']}, good image score "
        f"{bad['good_score_before']:.4f} before, {bad['good_score_after']:.4f} after",
    ]
    fault = results.get("fault")
    if fault:
        recovery = fault["recovery_s"]
        rows += [
            "fault (SIGKILL of tritonserver and its stubs mid-load, restarted on the same ports):",
            f"  requests {fault['requests']}, errors {fault['errors_by_status']}",
        ]
        for phase, p in fault["phases"].items():
            rows.append(f"  {phase:<14} requests {p['requests']:>6}, errors {p['errors_by_status']}")
            rows += [f"    {code}: {text[:140]}" for code, text in p.get("first_error", {}).items()]
        rows += [
            f"  restart until ready {fault['restart_to_ready_s']:.1f} s; first good answer "
            + (f"{recovery:.1f} s after the kill" if recovery is not None else "never"),
            f"  /dev/shm segments left by the kill: {fault['shm_segments_left_by_kill']} of "
            f"{fault['shm_segments_mapped']} mapped (removed by the bench)",
        ]
    return "\n".join(rows)
