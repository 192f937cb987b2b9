"""A tall product (320 x 128 images, fitted at S = 128): fit keeps the aspect (a 320 x 128 input),
the package records it and why, and the in-process paths run at it: ONNX Runtime equals the torch
reference, maps come back at each image's own size, evaluate scores at the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adinspect.data.datasets import open_dataset
from adinspect.geometry import preprocess_batch
from adinspect.imageio import read_image, read_mask
from adinspect.package import ModelPackage


def test_the_package_records_the_input_and_why(tall_package: Path) -> None:
    package = ModelPackage.load(tall_package)
    assert package.preprocess.shape == (320, 128) and package.preprocess.image_size == 128
    assert package.config.method.input_shape == (320, 128)
    backbone = package.manifest.backbone
    assert backbone.feature_shape == (40, 16) and backbone.global_shape == (20, 8)
    geometry = package.manifest.geometry
    assert geometry is not None and geometry.rule == "aspect" and geometry.image_shape == (320, 128)
    card = (tall_package / "model_card.md").read_text()
    assert "network input 320x128 (HxW)" in card and geometry.reason in card and "at most 4 S" in card


def test_onnx_runtime_equals_torch_at_the_rectangular_input(tall_package: Path, tall_root: Path) -> None:
    from adinspect.fitting.pipeline import TorchPipeline
    from adinspect.runtime.inspector import Inspector

    inspector = Inspector(tall_package, threads=1)
    images = [read_image(s.path) for s in open_dataset(tall_root).test]
    batch = preprocess_batch(images, inspector.package.preprocess)
    assert batch.shape[1:] == (3, 320, 128)
    maps, scores = inspector.run(batch)
    ref_maps, ref_scores = TorchPipeline.from_package(tall_package).run(batch)
    assert maps.shape == ref_maps.shape == (len(images), 320, 128)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(maps, ref_maps, rtol=0, atol=1e-3 * float(np.abs(ref_maps).max()))


def test_maps_come_back_at_each_images_size_and_find_the_defect(tall_package: Path, tall_root: Path) -> None:
    import cv2

    from adinspect.runtime.inspector import Inspector

    inspector = Inspector(tall_package, threads=1)
    sample = next(s for s in open_dataset(tall_root).test if s.defect_type == "spot")
    found = inspector.inspect_file(sample.path)
    mask = read_mask(sample.mask_path)
    assert found.anomaly_map.shape == mask.shape == (320, 128)
    assert found.result.verdict == "fail"
    top = found.result.regions[0]
    assert mask[top.y : top.y + top.height, top.x : top.x + top.width].any()
    image = read_image(sample.path)
    bigger = cv2.resize(image, (256, 640))  # the same part from a camera with twice the pixels
    assert inspector.inspect(bigger).anomaly_map.shape == (640, 256)


def test_evaluate_scores_at_the_input(tall_package: Path, tall_root: Path) -> None:
    from adinspect.evaluation.evaluate import evaluate_package

    metrics = evaluate_package(tall_package, tall_root, progress=False)
    assert metrics["n_images"] == 10 and metrics["image_auroc"] >= 0.9 and metrics["pixel_auroc"] > 0.9
