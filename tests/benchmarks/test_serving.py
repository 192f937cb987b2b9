"""The serving benchmark on the session server: JSON keys, table, plot (no timing asserted)."""

from __future__ import annotations

import json

import pytest

from adinspect.benchmarks.serving import format_table, run_serving_bench

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def test_serving_bench_writes_json_table_and_plot(
    triton_server, fitted_package, synthetic_root, tmp_path
) -> None:
    images = sorted((synthetic_root / "test").rglob("*.png"))[:3]
    out = tmp_path / "bench.json"
    results = run_serving_bench(
        fitted_package,
        images,
        triton_server.grpc_url,
        out,
        concurrency=(1, 2),
        requests_per_level=4,
        warmup=1,
        threads=1,
        perf_analyzer=False,
    )
    saved = json.loads(out.read_text())
    assert set(saved["triton"]) == {"1", "2"}
    for level in saved["triton"].values():
        assert {"p50_ms", "p90_ms", "p95_ms", "p99_ms", "throughput"} <= set(level)
        assert level["n"] == 4 and "latencies_ms" not in level
        stages = level["stages"]
        # cpu flavour: one model, one stage (Triton may count the last request after answering it)
        assert set(stages) == {"inspect_widget"} and stages["inspect_widget"]["requests"] >= 3
    # in-process alternates with the concurrency-1 requests: as many of them
    assert saved["in_process"]["n"] == 4 and saved["serving_overhead_p50"] > 0
    assert out.with_suffix(".png").stat().st_size > 1000
    table = format_table(results)
    assert "triton c=2" in table and "per-stage" in table
