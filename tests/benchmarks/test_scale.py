"""Scale: chunked fit == unchunked, the bank as ONNX external data end to end, the memory budget
check, and k-center greedy reference subsets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adinspect.residual.subset import k_center_greedy, retrieval_distance

SMALL = {"image_size": 128}  # a small image size keeps the forced external-data fits fast


def _fit(data: Path, out: Path, **scale: object) -> Path:
    from adinspect.config import preset_config
    from adinspect.fitting.fit import fit_product

    config = preset_config("cpu", "widget", method=SMALL, scale=scale)
    fit_product(data, config, out, progress=False)
    return out


@pytest.fixture(scope="module")
def inline_package(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    return _fit(synthetic_root, tmp_path_factory.mktemp("inline") / "widget")


@pytest.fixture(scope="module")
def external_package(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    return _fit(synthetic_root, tmp_path_factory.mktemp("external") / "widget", external_data_mb=0.0)


# ------------------------------------------------------------------------------ chunking


def test_one_image_chunks_give_the_same_package(inline_package, synthetic_root, tmp_path):
    """A budget so tight that every chunk holds one image: same held-out scores and threshold."""
    from adinspect.config import preset_config
    from adinspect.residual.budget import MB, plan_memory

    def plan(budget_mb):
        config = preset_config("cpu", "widget", method=SMALL, scale={"memory_budget_mb": budget_mb})
        shapes, n_params = _shapes(config)
        return plan_memory(config, shapes, n_images=40, n_refs=36, backbone_params=n_params)

    roomy = plan(1 << 20)
    assert roomy.embed_batch > 1 and roomy.residual_batch > 1  # a roomy fit batches its chunks
    tight = int((roomy.fixed + 1.5 * max(roomy.embed_per_image, roomy.residual_per_image)) / MB)
    assert (plan(tight).embed_batch, plan(tight).residual_batch) == (1, 1)

    out = _fit(synthetic_root, tmp_path / "widget", memory_budget_mb=tight)
    assert "chunks of 1 images through the backbone, 1 through" in (out / "model_card.md").read_text()
    assert "chunks of 1 images" not in (inline_package / "model_card.md").read_text()
    a = json.loads((inline_package / "calibration.json").read_text())
    b = json.loads((out / "calibration.json").read_text())
    # float32 sums in another order (batched convolutions, per-image matching): a few 1e-5 apart
    np.testing.assert_allclose(b["holdout_scores"], a["holdout_scores"], rtol=1e-4, atol=1e-6)
    assert b["threshold"] == pytest.approx(a["threshold"], rel=1e-4)


def _shapes(config):
    """(Shapes, backbone parameter count) exactly as fit computes them."""
    from adinspect.features.backbones import create_backbone
    from adinspect.features.embedder import FeatureEmbedder
    from adinspect.fitting.fit import shapes_of

    extractor, spec, _ = create_backbone(config.backbone.name)
    embedder = FeatureEmbedder(extractor, spec, config.method)
    return shapes_of(embedder, config), sum(p.numel() for p in embedder.parameters())


def test_residual_chunks_equal_one_batch():
    torch = pytest.importorskip("torch")
    from adinspect.config import preset_config
    from adinspect.fitting.fit import residual_outputs
    from adinspect.residual.bank import fit_bank
    from adinspect.residual.model import ResidualModel

    method = preset_config("cpu", "p", method={"image_size": 64, "k_neighbors": 3, "pca_dim": 4}).method
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(8, 6, 8, 8, generator=gen)
    gmaps = torch.randn(8, 8, 4, 4, generator=gen)
    model = ResidualModel(fit_bank(feats[:5], gmaps[:5], method), method).eval()
    maps1, scores1 = residual_outputs(model, feats[5:].half(), gmaps[5:], batch_size=1)
    maps3, scores3 = residual_outputs(model, feats[5:].half(), gmaps[5:], batch_size=3)
    np.testing.assert_allclose(maps1, maps3, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores1, scores3, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ external data


def test_external_data_package_holds_the_bank_once(inline_package, external_package):
    from adinspect.package import RESIDUAL_DATA, ModelPackage

    assert not (inline_package / RESIDUAL_DATA).exists()
    package = ModelPackage.load(external_package)
    assert RESIDUAL_DATA in package.manifest.files  # covered by SHA-256 like every file
    data = (external_package / RESIDUAL_DATA).stat().st_size
    assert (external_package / "residual.onnx").stat().st_size < 200_000 < data
    # the bank's features are in residual.onnx(.data) only, not again in bank.safetensors
    for pkg in (inline_package, external_package):
        assert (pkg / "bank.safetensors").stat().st_size < data / 10


def test_external_data_inspector_matches_inline(inline_package, external_package, synthetic_root):
    from adinspect.data.datasets import open_dataset
    from adinspect.runtime.inspector import Inspector

    paths = [s.path for s in open_dataset(synthetic_root).test][:6]
    a = [Inspector(inline_package).inspect_file(p).result for p in paths]
    b = [Inspector(external_package).inspect_file(p).result for p in paths]
    np.testing.assert_allclose([r.score for r in b], [r.score for r in a], rtol=1e-5, atol=1e-6)
    assert [r.verdict for r in b] == [r.verdict for r in a]


def test_load_bank_reads_features_from_either_layout(inline_package, external_package):
    torch = pytest.importorskip("torch")
    from adinspect.residual.bank import load_bank

    a = load_bank(inline_package / "bank.safetensors")
    b = load_bank(external_package / "bank.safetensors")
    assert a.features.dtype == torch.float16 and a.features.shape == (40, 176, 16, 16)  # every good image
    assert torch.equal(a.features, b.features) and torch.equal(a.descriptors, b.descriptors)


def test_corrupt_external_data_is_refused(external_package, tmp_path):
    import shutil

    from adinspect.package import RESIDUAL_DATA, ModelPackage, PackageError

    broken = tmp_path / "widget"
    shutil.copytree(external_package, broken)
    with open(broken / RESIDUAL_DATA, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(PackageError, match="residual.onnx.data is corrupt"):
        ModelPackage.load(broken)


def test_repository_carries_the_external_data(external_package, synthetic_root, tmp_path):
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from adinspect.data.datasets import open_dataset
    from adinspect.geometry import preprocess_batch
    from adinspect.imageio import read_image
    from adinspect.package import RESIDUAL_DATA
    from adinspect.repository.build import build_repository
    from adinspect.runtime.inspector import Inspector

    inspector = Inspector(external_package)
    images = [s.path for s in open_dataset(synthetic_root).test][:3]
    batch = preprocess_batch([read_image(p) for p in images], inspector.package.preprocess)
    features, global_map = inspector.backbone.run(None, {"image": batch})
    # the cpu flavour's one model per product and the gpu flavour's residual step
    for flavor, model in (("cpu", "inspect_widget"), ("gpu", "residual_widget")):
        build_repository([external_package], flavor, tmp_path / flavor)
        version = tmp_path / flavor / model / "1"
        assert (version / RESIDUAL_DATA).read_bytes() == (external_package / RESIDUAL_DATA).read_bytes()
        assert (version / "model.onnx").stat().st_size < 200_000
        served = ort.InferenceSession(str(version / "model.onnx"))
        feeds = {"features": features, "global_map": global_map}
        score, threshold = served.run(["score", "threshold"], feeds)
        np.testing.assert_allclose(score, inspector.run(batch)[1], rtol=1e-5, atol=1e-6)
    assert np.all(threshold == np.float32(inspector.threshold))


# ------------------------------------------------------------------------------ budget


def test_budget_error_names_preset_estimate_and_remedies(synthetic_root, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "adinspect.cli", "fit", "--data", str(synthetic_root), "--out", str(out)]
    cmd += ["--preset", "paper", "--random-weights", "--memory-budget", "1500", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("error: preset 'paper' needs an estimated ") and "\n" not in line
    for remedy in ("--max-references", "k_neighbors", "--preset cpu", "budget of 1.5 GB"):
        assert remedy in line
    assert "embedding" not in proc.stderr and not out.exists()  # refused before any work


def test_bad_budget_flag_is_a_usage_error(synthetic_root, tmp_path):
    cmd = [sys.executable, "-m", "adinspect.cli", "fit", "--data", str(synthetic_root)]
    cmd += ["--out", str(tmp_path / "m"), "--memory-budget", "lots"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--memory-budget expects a positive integer" in proc.stderr


# ------------------------------------------------------------------------------ k-center greedy


def test_k_center_greedy_covers_every_cluster():
    rng = np.random.default_rng(0)
    centres = np.array([0.0, 10.0, 25.0, -30.0])
    sizes = [60, 20, 5, 1]  # a dominant look, two rarer ones and one outlier
    desc = np.concatenate(
        [c + 0.1 * rng.standard_normal((n, 16, 8)) for c, n in zip(centres, sizes, strict=True)]
    )
    cluster = np.repeat(np.arange(4), sizes)
    picked = k_center_greedy(desc, 4, keep_fraction=0.8)
    assert sorted(cluster[picked]) == [0, 1, 2, 3]
    assert np.array_equal(picked, np.sort(picked)) and np.array_equal(picked, k_center_greedy(desc, 4, 0.8))
    assert np.array_equal(k_center_greedy(desc, 1000, 0.8), np.arange(len(desc)))


def test_k_center_greedy_shrinks_the_covering_radius():
    """Every image is closer to its nearest picked reference than to a random pick of equal size."""
    rng = np.random.default_rng(1)
    desc = rng.standard_normal((120, 16, 8)) * rng.uniform(0.2, 3.0, (120, 1, 1))
    keep = int(round(0.8 * 16))

    def radius(idx):
        return max(min(retrieval_distance(desc[idx], d, keep)) for d in desc)

    picked = k_center_greedy(desc, 12, keep_fraction=0.8)
    random_radii = [radius(rng.choice(120, 12, replace=False)) for _ in range(5)]
    assert radius(picked) < min(random_radii)


def test_max_references_caps_the_bank(synthetic_root, tmp_path):
    pytest.importorskip("torch")
    from adinspect.package import ModelPackage

    out = _fit(synthetic_root, tmp_path / "widget", max_references=10)
    package = ModelPackage.load(out)
    assert package.manifest.n_references == 10
    assert package.config.scale.max_references == 10


def test_bench_scale_with_generated_features_fits_and_times(synthetic_root, tmp_path):
    """`bench-scale --generated-features`: a fit without image files behind its features (the
    held-out images it cannot record for `repo verify` are left out), then real inference."""
    pytest.importorskip("torch")
    from adinspect.benchmarks.scale import run_scale_bench

    results = run_scale_bench(synthetic_root, tmp_path, ["cpu"], [8], n_images=2, warmup=1, generated=["cpu"])
    (point,) = results["points"]
    assert "error" not in point, point
    assert point["features"] == "generated" and point["references"] == 8
    assert point["latency"]["p50_ms"] > 0 and point["package_mb"]["residual.onnx"] > 0
    calibration = json.loads((tmp_path / "models" / "cpu_8" / "calibration.json").read_text())
    assert calibration["holdout_files"] == [] and len(calibration["holdout_scores"]) > 0
