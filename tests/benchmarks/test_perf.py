"""perf_analyzer: CSV parsing, input files, and a real run against the trivial model."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from servers import needs_triton, running

from adinspect.benchmarks.perf import (
    parse_perf_csv,
    perf_analyzer_available,
    run_perf_analyzer,
    write_input_data,
)

CSV_2_51 = """\
Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,\
Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency
2,2167.51,3,321,181,20,143,245,1,756,970,1293,4857
1,1546,4,236,195,14,114,73,1,583,633,662,2628
"""


def test_parse_csv_in_milliseconds_sorted_by_concurrency(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    path.write_text(CSV_2_51)
    rows = parse_perf_csv(path)
    assert [row.concurrency for row in rows] == [1, 2]
    first = rows[0]
    assert first.throughput == 1546.0
    assert (first.p50_ms, first.p90_ms, first.p95_ms, first.p99_ms) == (0.583, 0.633, 0.662, 2.628)
    assert first.server_compute_ms == pytest.approx(0.201)
    assert first.avg_ms == pytest.approx((4 + 236 + 195 + 14 + 114 + 73 + 1) / 1000)


def test_input_data_file_holds_arrays_and_base64_bytes(tmp_path: Path) -> None:
    path = write_input_data(tmp_path / "in.json", {"image": b"\x89PNG..", "raw": np.zeros((2, 3), np.uint8)})
    entry = json.loads(path.read_text())["data"][0]
    assert base64.b64decode(entry["image"]["b64"]) == b"\x06\x00\x00\x00\x89PNG.."  # Triton BYTES
    assert entry["image"]["shape"] == [1]
    assert entry["raw"] == {"content": [0] * 6, "shape": [2, 3]}


_PERF_MISSING = perf_analyzer_available()


@pytest.mark.triton
@needs_triton
@pytest.mark.skipif(_PERF_MISSING is not None, reason=f"perf_analyzer cannot run here: {_PERF_MISSING}")
def test_perf_analyzer_runs_against_the_trivial_model(identity_repository: Path, tmp_path: Path) -> None:
    data = write_input_data(tmp_path / "in.json", {"INPUT0": np.arange(16, dtype=np.float32)})
    with running(identity_repository) as server:
        report = run_perf_analyzer(
            "identity",
            server.grpc_url,
            tmp_path / "perf",
            concurrency=(1, 2),
            input_data=data,
            measurement_interval_ms=500,
            stability_percentage=50.0,  # sub-millisecond latencies of a trivial model are noisy
        )
    assert report.csv_path.exists()
    assert [row.concurrency for row in report.rows] == [1, 2]
    for row in report.rows:
        assert row.throughput > 0
        assert 0 < row.p50_ms <= row.p90_ms <= row.p95_ms <= row.p99_ms
