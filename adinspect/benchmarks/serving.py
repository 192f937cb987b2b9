"""`adinspect bench --serving`: in-process inspector vs the Triton ensemble, on the same images.

One run measures, for one product:
- the in-process inspector (file bytes → InspectionResult; decode included, as on the server),
  alternating request by request with the ensemble at concurrency 1 so both see the same host;
- the `inspect_<product>` ensemble over gRPC at each concurrency (default 1, 2, 4, 8; 1 always):
  p50/p90/p95/p99 latency per request and throughput, sending the encoded files as a camera PC would;
- per-stage server times (queue + compute per model) from Triton's statistics API;
- NVIDIA perf_analyzer against the ensemble (its CSV kept), when it can run here.
It writes JSON, returns a readable table and draws a latency plot (PNG beside the JSON).
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adinspect.benchmarks.inprocess import time_calls
from adinspect.client import InspectionClient
from adinspect.contracts import INSPECT_IN, ensemble_model

if TYPE_CHECKING:
    from adinspect.runtime.inspector import Inspector


def latency_summary(ms: Sequence[float], seconds: float | None = None) -> dict[str, float]:
    """p50/p90/p95/p99/mean of per-request latencies (ms) and throughput (requests/s)."""
    a = np.asarray(ms, np.float64)
    out = {f"p{q}_ms": float(np.percentile(a, q)) for q in (50, 90, 95, 99)}
    out["mean_ms"] = float(a.mean())
    out["n"] = int(a.size)
    out["throughput"] = float(a.size / seconds) if seconds else float(1000.0 / a.mean())
    return out


def bench_in_process_and_triton(
    inspector: Inspector, client: InspectionClient, product: str, blobs: Sequence[bytes], requests: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """In-process inspections and Triton requests at concurrency 1, alternately, `requests` each.

    Alternating makes both runners see the same host: on a shared 2-core VM, separate runs a
    minute apart differed by 25 % in p50, enough to swing the overhead ratio either way.
    The in-process inspector is timed from encoded bytes (decode included, as on the server).
    """
    from adinspect.imageio import decode_image

    def inspect_bytes(blob: bytes) -> object:
        return inspector.inspect(decode_image(blob))

    local: list[float] = []
    served: list[float] = []
    for index in range(requests):
        blob = blobs[index % len(blobs)]
        local += time_calls(partial(inspect_bytes, blob), 0, 1)
        served += time_calls(partial(client.inspect, blob, product), 0, 1)
    # one request at a time: throughput is 1 / mean latency for both
    return (
        {**latency_summary(local), "latencies_ms": local},
        {**latency_summary(served), "concurrency": 1, "latencies_ms": served},
    )


def bench_triton(
    client: InspectionClient, product: str, blobs: Sequence[bytes], concurrency: int, requests: int
) -> dict[str, Any]:
    """`requests` calls from `concurrency` closed-loop workers, each cycling through the images."""
    ms: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            t = time.perf_counter()
            client.inspect(blobs[index % len(blobs)], product)
            elapsed = (time.perf_counter() - t) * 1000.0
            with lock:
                ms.append(elapsed)

    workers = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {
        **latency_summary(ms, time.perf_counter() - start),
        "concurrency": concurrency,
        "latencies_ms": ms,
    }


def stage_times(url: str) -> dict[str, dict[str, float]]:
    """Mean queue and compute time per request for every model, from Triton's statistics (ms)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    stages = {}
    for model in client.get_inference_statistics(as_json=True)["model_stats"]:
        stats = model["inference_stats"]
        count = int(stats["success"].get("count", 0))
        if not count:
            continue
        mean = {
            k: int(stats[k].get("ns", 0)) / count / 1e6
            for k in ("queue", "compute_input", "compute_infer", "compute_output")
        }
        executions = int(model.get("execution_count", 0)) or count
        stages[model["name"]] = {
            "requests": count,
            "executions": executions,
            "mean_batch": count / executions,
            "queue_ms": mean["queue"],
            "compute_ms": mean["compute_input"] + mean["compute_infer"] + mean["compute_output"],
        }
    client.close()
    return stages


def _stats_delta(after: dict, before: dict) -> dict:
    """Per-model stats of the measured window only (warm-up and earlier runs subtracted)."""
    out = {}
    for name, a in after.items():
        b = before.get(name, {"requests": 0, "executions": 0, "queue_ms": 0.0, "compute_ms": 0.0})
        n = a["requests"] - b["requests"]
        if n <= 0:
            continue
        e = max(1, a["executions"] - b["executions"])
        out[name] = {
            "requests": n,
            "mean_batch": n / e,
            "queue_ms": (a["queue_ms"] * a["requests"] - b["queue_ms"] * b["requests"]) / n,
            "compute_ms": (a["compute_ms"] * a["requests"] - b["compute_ms"] * b["requests"]) / n,
        }
    return out


def run_serving_bench(
    model_dir: Path,
    images: Sequence[Path],
    url: str,
    out_json: Path,
    *,
    concurrency: Sequence[int] = (1, 2, 4, 8),
    requests_per_level: int = 64,
    warmup: int = 5,
    threads: int | None = None,
    perf_analyzer: bool = True,
    product: str | None = None,
) -> dict[str, Any]:
    """Measure everything on one running server and write `out_json` (+ .png plot, + perf CSV).

    `product`: which of a unified package's products to call (None: a one-product package's own)."""
    from adinspect.imageio import decode_image
    from adinspect.package import ModelPackage
    from adinspect.runtime.inspector import Inspector

    product = ModelPackage.load(model_dir, verify=False).resolve_product(product)
    blobs = [Path(p).read_bytes() for p in images]
    if not blobs:
        raise ValueError("bench needs at least one image, got none")
    results: dict[str, Any] = {
        "product": product,
        "images": len(blobs),
        "url": url,
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "triton": {},
    }
    inspector = Inspector(model_dir, threads=threads, product=product)
    with InspectionClient(url, deadline_s=120) as client:
        client.wait_until_ready(product)
        for blob in blobs[:warmup]:
            client.inspect(blob, product)
            inspector.inspect(decode_image(blob))
        for level in sorted(set(concurrency) | {1}):
            before = stage_times(url)
            if level == 1:
                results["in_process"], level_result = bench_in_process_and_triton(
                    inspector, client, product, blobs, requests_per_level
                )
            else:
                level_result = bench_triton(client, product, blobs, level, requests_per_level)
            level_result["stages"] = _stats_delta(stage_times(url), before)
            results["triton"][str(level)] = level_result
    if perf_analyzer:
        results["perf_analyzer"] = _perf(product, url, blobs[0], out_json.parent, concurrency)
    p50 = {k: v["p50_ms"] for k, v in results["triton"].items()}
    tput = {k: v["throughput"] for k, v in results["triton"].items()}
    results["serving_overhead_p50"] = p50.get("1", np.nan) / results["in_process"]["p50_ms"]
    if "1" in tput and "4" in tput:
        results["throughput_c4_over_c1"] = tput["4"] / tput["1"]
    write_outputs(results, out_json)
    return results


def _perf(product: str, url: str, blob: bytes, out_dir: Path, concurrency: Sequence[int]) -> dict[str, Any]:
    from adinspect.benchmarks.perf import (
        PerfAnalyzerError,
        perf_analyzer_available,
        run_perf_analyzer,
        write_input_data,
    )

    missing = perf_analyzer_available()
    if missing is not None:
        return {"skipped": missing}
    data = write_input_data(out_dir / f"perf_input_{product}.json", {INSPECT_IN.image_bytes: blob})
    try:
        report = run_perf_analyzer(
            ensemble_model(product), url, out_dir, concurrency=concurrency, input_data=data
        )
    except PerfAnalyzerError as exc:
        return {"error": str(exc)}
    return report.to_dict()


def write_outputs(results: dict[str, Any], out_json: Path) -> None:
    out_json.parent.mkdir(parents=True, exist_ok=True)
    compact = json.loads(json.dumps(results, default=float))
    compact["in_process"].pop("latencies_ms", None)
    for level in compact["triton"].values():
        level.pop("latencies_ms", None)
    out_json.write_text(json.dumps(compact, indent=2) + "\n")
    plot_latencies(results, out_json.with_suffix(".png"))


def plot_latencies(results: dict[str, Any], path: Path) -> Path:
    """Per-request latency distributions (box plot) and throughput per concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["in-process"] + [f"triton c={k}" for k in results["triton"]]
    data = [results["in_process"]["latencies_ms"]] + [v["latencies_ms"] for v in results["triton"].values()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.boxplot(data, tick_labels=labels, whis=(1, 99), showfliers=False)
    left.set_ylabel("latency per image (ms)")
    left.set_title(f"{results['product']}: per-request latency (whiskers p1–p99)")
    left.tick_params(axis="x", rotation=30)
    levels = [int(k) for k in results["triton"]]
    right.plot(levels, [v["throughput"] for v in results["triton"].values()], "o-", label="Triton gRPC")
    right.axhline(results["in_process"]["throughput"], color="gray", ls="--", label="in-process")
    right.set_xlabel("concurrent requests")
    right.set_ylabel("images / s")
    right.set_xticks(levels)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(results: dict[str, Any]) -> str:
    rows = [f"{'runner':<18}{'p50 ms':>9}{'p90 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'img/s':>9}"]

    def row(name: str, s: dict) -> str:
        cells = "".join(f"{s[k]:>9.1f}" for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "throughput"))
        return f"{name:<18}{cells}"

    rows.append(row("in-process", results["in_process"]))
    for level, s in results["triton"].items():
        rows.append(row(f"triton c={level}", s))
    rows.append(f"serving overhead (Triton p50 @1 / in-process p50): {results['serving_overhead_p50']:.2f}")
    if "throughput_c4_over_c1" in results:
        rows.append(f"throughput @4 / @1: {results['throughput_c4_over_c1']:.2f}")
    first = next(iter(results["triton"].values()))
    rows.append(
        "per-stage server time at concurrency " + str(first["concurrency"]) + " (queue + compute, ms):"
    )
    for name, s in first["stages"].items():
        rows.append(
            f"  {name:<22} {s['queue_ms']:7.2f} + {s['compute_ms']:7.2f}   batch {s['mean_batch']:.2f}"
        )
    perf = results.get("perf_analyzer", {})
    for r in perf.get("rows", []):
        rows.append(
            f"perf_analyzer c={r['concurrency']}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
            f"{r['throughput']:.1f} infer/s"
        )
    for level, reason in perf.get("failures", {}).items():
        rows.append(f"perf_analyzer c={level}: failed ({reason.splitlines()[-1]})")
    if "skipped" in perf or "error" in perf:
        rows.append(f"perf_analyzer: {perf.get('skipped') or perf.get('error')}")
    return "\n".join(rows)
