"""`adinspect bench --serving --soak SECONDS`: reliability figures of a served product.

Three runs, each writing what the client saw (never a retry hiding an error: every request is
sent once, `retries=0`):
- soak: `concurrency` closed-loop workers for `seconds`; requests, failures by gRPC status,
  p50/p99, throughput, and the server's memory (RSS of tritonserver and its Python-backend stub
  processes, i.e. its process group) before and after;
- bad inputs: every image of `malformed.malformed_corpus()` once; each must come back
  INVALID_ARGUMENT while the server stays live and keeps giving a good image the same score;
- fault (`adinspect.benchmarks.fault`): a server of our own killed mid-load and restarted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adinspect.benchmarks.load import group_memory, load_summary, run_load, send
from adinspect.benchmarks.malformed import malformed_corpus, valid_variants
from adinspect.client import InspectionClient


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
            refused[item.name] = send(client, product, item.data)[0]
        controls = {item.name: send(client, product, item.data)[0] for item in valid_variants()}
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
    product: str | None = None,
) -> dict[str, Any]:
    """Soak and bad inputs on `url` (or on a server started here), then the fault run if asked;
    writes `out_json` and returns the results."""
    import json
    import tempfile

    from adinspect.package import ModelPackage
    from adinspect.repository.build import build_repository
    from adinspect.server.launch import TritonServer

    product = ModelPackage.load(model_dir, verify=False).resolve_product(product)
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
            from adinspect.benchmarks.fault import run_fault

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
