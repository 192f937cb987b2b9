"""The peer benchmark: its writer and missing-extra error always; the run itself where anomalib is."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from adinspect.benchmarks.patchcore import PeerError, require_anomalib
from adinspect.benchmarks.peer_cli import add_commands
from adinspect.benchmarks.peer_report import peer_table, write_peer
from adinspect.errors import InputError

HAS_ANOMALIB = importlib.util.find_spec("anomalib") is not None
METRICS = ("image_auroc", "pixel_auroc", "pixel_ap", "aupro")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="adinspect")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _method(values: tuple[float, ...], fit: float, runtimes: dict[str, float]) -> dict:
    stats = {name: {"n": 2, "p50_ms": p50, "p95_ms": p50 + 1} for name, p50 in runtimes.items()}
    return {"metrics": dict(zip(METRICS, values, strict=True)), "fit_seconds": fit, "latency_ms": stats}


def _results() -> dict:
    settings = {"size": 256, "coreset": 0.01, "layers": ["blocks.2", "blocks.4"], "threads": 1}
    methods = {
        "adinspect": _method((0.9, 0.95, 0.5, 0.8), 12.34, {"onnxruntime": 40.0, "torch_eager": 90.0}),
        "patchcore": _method((0.8, 0.97, 0.6, 0.75), 56.78, {"torch_eager": 120.5}),
    }
    return {"settings": settings, "products": [{"name": "widget", "methods": methods}]}


def test_writer_json_and_markdown_table(tmp_path: Path) -> None:
    json_path, md_path = write_peer(_results(), tmp_path / "out")
    assert json.loads(json_path.read_text()) == _results()
    table = md_path.read_text()
    assert table == peer_table(_results()) + "\n"
    rows = [line for line in table.splitlines() if line.startswith("| widget")]
    assert rows == [
        "| widget | adinspect (training-free) | 0.900 | 0.950 | 0.500 | 0.800 | 12.3 | 90.0 | 40.0 |",
        "| widget | anomalib PatchCore | 0.800 | 0.970 | 0.600 | 0.750 | 56.8 | 120.5 | - |",
    ]
    said = "Input short side 256 (the package's input geometry); backbone efficientnet_lite0 for both;"
    assert said + " PatchCore layers blocks.2 + blocks.4, coreset 1.00%" in table


def test_writer_refuses_a_nan_metric(tmp_path: Path) -> None:
    results = _results()
    results["products"][0]["methods"]["patchcore"]["metrics"]["aupro"] = float("nan")
    with pytest.raises(ValueError):
        write_peer(results, tmp_path)


def test_missing_anomalib_names_the_peer_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anomalib", None)  # importlib.util.find_spec then reports it absent
    with pytest.raises(PeerError, match=r"`peer` extra \(pip install 'adinspect\[peer\]'"):
        require_anomalib()
    args = _parse(["bench-peer", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    with pytest.raises(InputError, match="anomalib, which is not installed"):  # the CLI's `error:` line
        args.func(args)
    assert not (tmp_path / "out").exists()


def test_bad_settings_name_the_field(tmp_path: Path) -> None:
    bad = (("--coreset", "1.5", "coreset"), ("--size", "250", "size"), ("--backbone", "resnet18", "backbone"))
    for flag, value, field in bad:
        args = _parse(["bench-peer", "--data", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
        with pytest.raises(PeerError, match=field):
            args.func(args)
    args = _parse(
        ["bench-peer", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--layers", "blocks.3"]
    )
    with pytest.raises(PeerError, match=r"layers: expected names out of \['blocks.0'"):
        args.func(args)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ANOMALIB, reason="anomalib not installed: it comes with the `peer` extra")
def test_peer_run_on_a_generated_product(tmp_path: Path) -> None:
    from adinspect.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "widget", n_train=10, n_test_good=4, n_test_defect=4, seed=1)
    out = tmp_path / "peer"
    args = _parse(
        ["bench-peer", "--data", str(data), "--out", str(out), "--coreset", "0.02", "--threads", "1"]
        + ["--latency-images", "2", "--square", "--backbone", "efficientnet_lite1", "--quiet"]
    )
    assert args.func(args) == 0
    results = json.loads((out / "peer.json").read_text())
    (product,) = results["products"]
    assert (product["n_train"], product["n_test"], product["n_defective"]) == (10, 8, 4)
    for method in ("adinspect", "patchcore"):
        found = product["methods"][method]
        assert set(found["metrics"]) == set(METRICS)
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in found["metrics"].values()), found
        assert found["fit_seconds"] > 0 and found["latency_ms"]["torch_eager"]["n"] == 2
    patchcore = product["methods"]["patchcore"]["details"]
    assert patchcore["bank_size"] == int(10 * 32 * 32 * 0.02)  # stride-8 grid of a 256² input
    # the same Lite1 file behind both methods
    assert patchcore["weights_sha256"] == product["methods"]["adinspect"]["details"]["weights_sha256"]
    assert product["methods"]["adinspect"]["metrics"]["image_auroc"] > 0.8
    # adinspect as the default fit makes it (its choice), on PatchCore's backbone only
    choice = product["methods"]["adinspect"]["details"]["choice"]
    assert choice["backbone"] == "efficientnet_lite1" and choice["matching"] in ("local", "global")
    assert "tf_efficientnet_lite1" in patchcore["backbone"]
    assert "256 x 256 whatever the images' aspect" in results["protocol"]["inputs"]
    assert (out / "peer.md").read_text().count("| widget |") == 2
