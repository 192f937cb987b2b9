"""fit → model package → in-process inspector → predict/evaluate, on the synthetic product."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from adinspect.data.datasets import open_dataset
from adinspect.imageio import read_image
from adinspect.package import ModelPackage, PackageError


def test_package_holds_what_design_lists(fitted_package):
    names = {p.name for p in fitted_package.iterdir()}
    assert {
        "package.json",
        "config.json",
        "backbone.onnx",
        "residual.onnx",
        "bank.safetensors",
        "calibration.json",
        "model_card.md",
    } <= names
    package = ModelPackage.load(fitted_package)
    assert package.product == "widget"
    assert package.manifest.backbone.weights_sha256 is not None
    card = (fitted_package / "model_card.md").read_text()
    assert package.manifest.backbone.weights_sha256 in card and "out-of-fold" in card
    cal = json.loads((fitted_package / "calibration.json").read_text())
    assert package.threshold == max(cal["holdout_scores"])  # 1 % of 40 good images: none rejected
    assert package.manifest.threshold_evidence.statement in card


def test_inspector_separates_good_from_defective(fitted_package, synthetic_root):
    from adinspect.runtime.inspector import Inspector

    inspector = Inspector(fitted_package)
    test = open_dataset(synthetic_root).test
    scores = {s.path: inspector.inspect_file(s.path).result.score for s in test}
    good = [scores[s.path] for s in test if s.label == 0]
    bad = [scores[s.path] for s in test if s.label == 1]
    assert np.mean(bad) > np.max(good) * 0.9  # synthetic defects are clearly visible
    auroc = np.mean([b > g for b in bad for g in good])
    assert auroc > 0.9


def test_failing_image_has_regions_near_its_defect(fitted_package, synthetic_root):
    from adinspect.imageio import read_mask
    from adinspect.runtime.inspector import Inspector

    inspector = Inspector(fitted_package)
    sample = max(
        (s for s in open_dataset(synthetic_root).test if s.label == 1),
        key=lambda s: inspector.inspect_file(s.path).result.score,
    )
    inspection = inspector.inspect_file(sample.path)
    assert inspection.result.verdict == "fail" and inspection.result.regions
    mask = read_mask(sample.mask_path)
    assert inspection.anomaly_map.shape == mask.shape
    top = inspection.result.regions[0]
    box = np.zeros_like(mask)
    box[top.y : top.y + top.height, top.x : top.x + top.width] = True
    assert (box & mask).any(), "the strongest region must overlap the true defect"


def test_inspector_does_not_import_torch(fitted_package, synthetic_root):
    code = (
        "import sys; from adinspect.runtime.inspector import Inspector; "
        f"i = Inspector({str(fitted_package)!r}); "
        f"import glob; p = sorted(glob.glob({str(synthetic_root / 'test' / 'good' / '*.png')!r}))[0]; "
        "i.inspect_file(p); assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_eager_reference_equals_onnx_end_to_end(fitted_package, synthetic_root):
    """Backbone + residual: torch eager vs ONNX Runtime on the same preprocessed images."""
    pytest.importorskip("torch")
    from adinspect.fitting.pipeline import TorchPipeline
    from adinspect.geometry import preprocess_batch
    from adinspect.runtime.inspector import Inspector

    inspector = Inspector(fitted_package)
    eager = TorchPipeline.from_package(fitted_package)
    test = open_dataset(synthetic_root).test[:6]
    batch = preprocess_batch([read_image(s.path) for s in test], inspector.package.preprocess)
    ort_maps, ort_scores = inspector.run(batch)
    maps, scores = eager.run(batch)
    assert np.abs(ort_maps - maps).max() < 1e-3 * max(1.0, float(maps.max()))
    assert np.abs(ort_scores - scores).max() < 1e-3 * max(1.0, float(scores.max()))


def test_predict_skips_unreadable_and_keeps_the_rest(fitted_package, synthetic_root, tmp_path):
    from adinspect.cli import main

    images = [synthetic_root / "test" / d / "000.png" for d in ("good", "crack", "spot")]  # same stems
    broken = tmp_path / "broken.png"
    broken.write_bytes(images[0].read_bytes()[:200])  # truncated PNG
    out = tmp_path / "pred"
    assert (
        main(["predict", "--model", str(fitted_package), str(broken), *map(str, images), "--out", str(out)])
        == 0
    )
    summary = json.loads((out / "results.json").read_text())
    assert len(summary["results"]) == 3
    assert summary["errors"][0]["image"] == str(broken) and "broken.png" in summary["errors"][0]["error"]
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("image,")
    overlays = sorted((out / "overlays").iterdir())
    assert len(overlays) == 3, "one overlay per inspected image, none overwritten"
    first = out / summary["results"][0]["overlay"]
    assert read_image(first).shape == read_image(images[0]).shape


def test_evaluate_writes_all_metrics_in_unit_interval(fitted_package, synthetic_root, tmp_path):
    from adinspect.cli import main

    out = tmp_path / "metrics.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(fitted_package),
                "--data",
                str(synthetic_root),
                "--json",
                str(out),
                "--plots",
                str(tmp_path / "plots"),
                "--quiet",
            ]
        )
        == 0
    )
    metrics = json.loads(out.read_text())
    for key in [
        "image_auroc",
        "pixel_auroc",
        "pixel_ap",
        "aupro",
        "pixel_f1_max",
        "miou_max",
        "mf1_02_08",
        "macc_02_08",
        "miou_02_08",
    ]:
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["image_auroc"] > 0.9 and metrics["pixel_auroc"] > 0.9
    assert (tmp_path / "plots" / "roc_pr.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "overlays.png").stat().st_size > 1000


def test_bench_writes_json_and_table(fitted_package, synthetic_root, tmp_path):
    from adinspect.benchmarks.inprocess import bench_inprocess, write_bench

    results = bench_inprocess(fitted_package, synthetic_root, n_images=3, warmup=1)
    table = write_bench(results, tmp_path / "bench.json")
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data["runners"]) == {"onnxruntime", "torch_eager"}
    assert (
        data["runners"]["onnxruntime"]["model"]["n"] == 3
        and data["runners"]["onnxruntime"]["model"]["p50_ms"] > 0
    )
    assert "onnxruntime" in table and (tmp_path / "bench.png").exists()


def test_corrupt_package_is_a_clear_error(fitted_package, tmp_path):
    import shutil

    broken = tmp_path / "broken_pkg"
    shutil.copytree(fitted_package, broken)
    with open(broken / "residual.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00" * 16)
    with pytest.raises(PackageError, match="residual.onnx is corrupt"):
        ModelPackage.load(broken)
    (broken / "residual.onnx").unlink()
    with pytest.raises(PackageError, match="residual.onnx listed in package.json is missing"):
        ModelPackage.load(broken)
    with pytest.raises(PackageError, match="not a model package"):
        ModelPackage.load(tmp_path)
