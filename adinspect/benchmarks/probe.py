"""`adinspect probe`: the reliability suite, against a deployment of your own or one it starts here.

Phases, in order (each one's figures in the JSON, a few lines each in the table):
1. bombs (`bombing`): decode bombs of every kind, N each: statuses, answer time, server memory;
2. malformed: the malformed-image corpus (`malformed`), each must be INVALID_ARGUMENT;
3. load: `--concurrency` closed-loop clients for `--soak` seconds: failures, latency, memory;
4. fault (`--fault`, needs the serve process): kill -9 of tritonserver under load, recovery;
5. drain (`--drain`, needs the serve process; stops it): SIGTERM to serve under raw-gRPC load.

Memory and faults need the `adinspect serve` process of the deployment (`--serve-pid`, on this
machine); with `--model` instead of `--url` the probe builds a cpu repository in a temporary folder,
starts `adinspect serve --restart on-failure` on free loopback ports and uses that.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from adinspect.benchmarks.bombing import bomb_rows, run_bombs
from adinspect.benchmarks.faults import reference_scores, run_drain, run_kill, triton_child
from adinspect.benchmarks.soak import run_bad_inputs, run_soak
from adinspect.errors import InputError


def run_probe(
    url: str,
    product: str,
    blobs: Sequence[bytes],
    *,
    serve_pid: int | None = None,
    bombs_per_kind: int = 20,
    soak_s: float = 60.0,
    concurrency: int = 16,
    fault: bool = False,
    drain: bool = False,
) -> dict[str, Any]:
    """Every phase against `url`; faults only with `serve_pid`. Returns the report."""
    if (fault or drain) and serve_pid is None:
        raise InputError(
            "probe: --fault and --drain need the deployment's `adinspect serve` pid (--serve-pid)"
        )
    report: dict[str, Any] = {
        "url": url,
        "product": product,
        "images": len(blobs),
        "cpu_count": os.cpu_count(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_start": os.getloadavg(),
    }
    refs = reference_scores(url, product, blobs)  # waits until the product is ready
    pgid = None if serve_pid is None else triton_child(serve_pid)  # tritonserver's process group
    if bombs_per_kind:
        report["bombs"] = run_bombs(url, product, blobs[0], bombs_per_kind, pgid)
    report["malformed"] = run_bad_inputs(url, product, blobs[0], pgid)
    if soak_s:
        report["load"] = run_soak(url, product, blobs, soak_s, concurrency, pgid)
    if fault and serve_pid is not None:
        report["fault"] = run_kill(url, product, blobs, refs, serve_pid, concurrency)
    if drain and serve_pid is not None:
        report["drain"] = run_drain(url, product, blobs[0], serve_pid, concurrency)
    report["load_average_end"] = os.getloadavg()
    return report


@contextlib.contextmanager
def serving_here(model_dir: Path, log: Path) -> Iterator[tuple[str, int]]:
    """`adinspect serve --restart on-failure` over a cpu repository of `model_dir`, built in a
    temporary folder, on free loopback ports: yields (gRPC url, serve pid); stopped on the way out."""
    from adinspect.repository.build import build_repository
    from adinspect.server.launch import free_port

    with tempfile.TemporaryDirectory(prefix="adinspect-probe-") as tmp:
        repo = build_repository([model_dir], "cpu", Path(tmp) / "model_repository").out_dir
        ports = [free_port() for _ in range(3)]
        command = [sys.executable, "-m", "adinspect.cli", "serve", "--repo", str(repo), "--quiet"]
        command += ["--restart", "on-failure", "--log-file", str(log)]
        for flag, port in zip(("--grpc-port", "--http-port", "--metrics-port"), ports, strict=True):
            command += [flag, str(port)]
        with open(log.with_suffix(".serve.log"), "w") as sink:
            process = subprocess.Popen(command, cwd=tmp, stdout=sink, stderr=subprocess.STDOUT)
        try:
            yield f"127.0.0.1:{ports[0]}", process.pid
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def write_report(report: dict[str, Any], out_json: Path) -> str:
    """Write the JSON and return the table."""
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2, default=float) + "\n")
    return format_probe_table(report)


def format_probe_table(report: dict[str, Any]) -> str:
    """The report as readable lines, one block per phase."""
    loads = [f"{report[k][0]:.1f}" for k in ("load_average_start", "load_average_end") if k in report]
    rows = [
        f"probe of {report['product']} at {report['url']} ({report['images']} images), {report['started']}, "
        f"load average {' -> '.join(loads)}"
    ]
    if "bombs" in report:
        rows += bomb_rows(report["bombs"])
    bad = report["malformed"]
    rows.append(
        f"malformed: {bad['invalid_argument']} of {bad['tried']} INVALID_ARGUMENT"
        + (f"; others {bad['not_invalid_argument']}" if bad["not_invalid_argument"] else "")
        + f"; server live after: {bad['server_live_after']}"
    )
    if "load" in report:
        load = report["load"]
        rows.append(
            f"load: concurrency {load['concurrency']} for {load['seconds']:.0f} s: "
            f"{load['requests']} requests, {load['failures']} failures {load['errors_by_status'] or ''}; "
            f"p50 {load['p50_ms']:.0f} ms, p99 {load['p99_ms']:.0f} ms, {load['throughput']:.1f}/s; RSS "
            f"{_mib(load['memory_before'])} -> {_mib(load['memory_after'])}"
        )
    if "fault" in report:
        f = report["fault"]
        rows.append(
            f"kill -9 under load: ready again {_s(f['ready_again_s'])}, first good answer "
            f"{_s(f['first_good_answer_s'])}, wrong results {f['wrong_results']} of {f['requests']}; "
            f"errors before {f['errors_before_kill']}, after {f['errors_after_kill']}"
        )
    if "drain" in report:
        d = report["drain"]
        rows.append(
            f"SIGTERM under load: {d['failures_before_sigterm']} failures while ready; after it "
            f"{d['answers_after_sigterm']} (NOT_FOUND {d['not_found_after_sigterm']}, all failures "
            f"UNAVAILABLE: {d['every_failure_after_sigterm_unavailable']}); serve exited "
            f"{_s(d['serve_exited_s'])} after"
        )
    return "\n".join(rows)


def _mib(record: dict[str, Any]) -> str:
    return f"{record['rss_mib']:.0f} MiB" if "rss_mib" in record else "not measured"


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
