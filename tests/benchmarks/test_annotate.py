"""bench-annotate: the scripted annotator over HTTP reproduces evaluate-clicks for the same model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the annotate extra (starlette, uvicorn) is not installed")

pytestmark = pytest.mark.slow


def test_scripted_annotator_equals_evaluate_clicks(
    click_package: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    from adinspect.benchmarks.annotate import bench_annotate, format_table
    from adinspect.train.interactive import evaluate_clicks

    reference = evaluate_clicks(click_package, synthetic_root, "eval", 0, max_clicks=3, progress=False)
    ref_file = tmp_path / "clicks.json"
    ref_file.write_text(json.dumps(reference))
    out = bench_annotate(click_package, synthetic_root, "eval", 0, 3, compare=ref_file, progress=False)

    assert out["n_images"] == reference["n_images"] > 0
    assert out["noc85"] == reference["noc85"]
    assert out["iou_at_k"] == pytest.approx(reference["iou_at_k"], abs=1e-3)
    versus = out["vs_evaluate_clicks"]
    assert versus["images_compared"] == out["n_images"] and versus["max_abs_iou_diff"] <= 1e-3
    lat = out["click_latency_ms"]
    assert lat["n"] == sum(len(p["ious"]) for p in out["images"]) and 0 < lat["p50_ms"] <= lat["p95_ms"]
    assert out["wait_s_per_image"]["3_clicks"] > 0
    table = format_table(out)
    assert "NoC@80 / @85 / @90" in table and "per-click latency" in table
