"""`adinspect probe`: the bombs leave a running server where it started (memory, shared memory,
scores), and the whole suite against a `serve` it starts itself, faults included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adinspect.benchmarks.bombs import BOMB_KINDS

pytestmark = [pytest.mark.triton, pytest.mark.slow]


@pytest.fixture(scope="module")
def good(synthetic_root: Path) -> list[Path]:
    return sorted((synthetic_root / "test" / "good").glob("*.png"))[:3]


def test_twenty_bombs_of_each_kind_leave_the_server_where_it_started(triton_server, good) -> None:
    """Against the shared server (built in a temporary folder, served from its own): RSS of its
    process group within 300 MB of where it started, shared memory grown only to fit the largest
    encoded bomb (1.2 MB), not by the 48 MB raw tensors, same scores."""
    from adinspect.benchmarks.bombing import bomb_rows, run_bombs

    report = run_bombs(triton_server.grpc_url, "widget", good[0].read_bytes(), 20, triton_server.pid)
    assert report["sent"] == 20 * len(BOMB_KINDS) == report["invalid_argument"]
    for name, kind in report["kinds"].items():
        assert kind["statuses"] == {"INVALID_ARGUMENT": 20}, (name, kind)
    assert report["memory_before"]["processes"] >= 2
    assert report["rss_growth_mib"] <= 300, report["kinds"]
    kinds = list(report["kinds"].values())
    assert (
        list(report["kinds"])[-1] == "raw_4000"
        and kinds[-1]["shm_bytes_after"] == kinds[-2]["shm_bytes_after"]
    )
    regions = report["shm_bytes_before"] // 2**20  # 1 MiB each at start
    assert (
        report["shm_bytes_before"] < report["shm_bytes_after"] <= report["shm_bytes_before"] + regions * 2**21
    )
    assert report["good_score_after"] == report["good_score_before"]
    assert "100 of 100 refused INVALID_ARGUMENT" in "\n".join(bomb_rows(report))


def test_probe_starts_serve_and_survives_its_own_faults(
    fitted_package: Path, good, tmp_path: Path, capsys
) -> None:
    from adinspect.cli import main

    out = tmp_path / "probe.json"
    command = ["probe", "--model", str(fitted_package), "--images", *map(str, good), "--json", str(out)]
    assert main([*command, "--bombs", "2", "--soak", "3", "--concurrency", "2", "--fault", "--drain"]) == 0
    report = json.loads(out.read_text())
    assert report["bombs"]["invalid_argument"] == report["bombs"]["sent"] == 2 * len(BOMB_KINDS)
    assert report["bombs"]["rss_growth_mib"] is not None  # the serve it started is measured
    assert report["malformed"]["invalid_argument"] == report["malformed"]["tried"]
    assert report["load"]["requests"] > 0 and report["load"]["failures"] == 0
    fault = report["fault"]
    assert fault["new_tritonserver"] and fault["ready_again_s"] is not None and fault["wrong_results"] == 0
    drain = report["drain"]
    assert drain["failures_before_sigterm"] == 0 and drain["not_found_after_sigterm"] == 0
    assert drain["every_failure_after_sigterm_unavailable"] and drain["serve_exited_s"] is not None
    table = capsys.readouterr().out
    assert (
        "kill -9 under load: ready again" in table and "SIGTERM under load: 0 failures while ready" in table
    )
