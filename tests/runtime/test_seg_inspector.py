"""The in-process inspector on a package with a trained ADClick-Seg (seg.onnx + seg_model.json)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from adinspect.contracts import RESIDUAL, SEG
from adinspect.geometry import preprocess_batch
from adinspect.imageio import read_image
from adinspect.package import ModelPackage, PackageError
from adinspect.runtime.seg import seg_info

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(synthetic_root: Path) -> list[np.ndarray]:
    paths = sorted((synthetic_root / "test").rglob("*.png"))
    return [read_image(p) for p in paths[:: max(1, len(paths) // 4)][:4]]


def test_seg_info_reads_threshold_and_types(seg_package: Path, fitted_package: Path) -> None:
    meta = json.loads((seg_package / "seg_model.json").read_text())
    info = seg_info(ModelPackage.load(seg_package))
    assert info is not None and info.onnx == seg_package / "seg.onnx"
    assert info.threshold == meta["calibration"]["threshold"]
    assert list(info.defect_types) == meta["defect_types"] and len(info.defect_types) >= 2
    assert seg_info(ModelPackage.load(fitted_package)) is None


def test_seg_info_refuses_incomplete_metadata(seg_package: Path, tmp_path: Path) -> None:
    broken = tmp_path / "widget"
    shutil.copytree(seg_package, broken)
    meta = json.loads((broken / "seg_model.json").read_text())
    del meta["calibration"]
    (broken / "seg_model.json").write_text(json.dumps(meta))
    with pytest.raises(PackageError, match="calibration.threshold"):
        seg_info(ModelPackage.load(broken, verify=False))
    meta = json.loads((seg_package / "seg_model.json").read_text())
    meta["defect_type_claim"] = "yes"  # not an object
    (broken / "seg_model.json").write_text(json.dumps(meta))
    with pytest.raises(PackageError, match="defect_type_claim"):
        seg_info(ModelPackage.load(broken, verify=False))


def test_inspector_uses_the_seg_model(seg_package: Path, images: list[np.ndarray]) -> None:
    from adinspect.runtime.inspector import Inspector

    inspector = Inspector(seg_package, threads=1)
    info = seg_info(inspector.package)
    assert info is not None and inspector.threshold == info.threshold != inspector.package.threshold
    # Reference: residual.onnx → seg.onnx by hand, on the same preprocessed batch.
    batch = preprocess_batch(images, inspector.package.preprocess)
    features, global_map = inspector.backbone.run(None, {"image": batch})
    residual_session = ort.InferenceSession(str(seg_package / "residual.onnx"))
    residual, free_scores = residual_session.run(
        [RESIDUAL.residual, RESIDUAL.score], {RESIDUAL.features: features, RESIDUAL.global_map: global_map}
    )
    seg_session = ort.InferenceSession(str(seg_package / "seg.onnx"))
    ref_map, ref_score, ref_type = seg_session.run(
        [SEG.anomaly_map, SEG.score, SEG.defect_type], {SEG.residual: residual}
    )
    maps, scores = inspector.run(batch)
    np.testing.assert_allclose(maps, ref_map[:, 0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(scores, ref_score, atol=1e-5, rtol=0)
    # the seg model's scores (fused with the residual by default), not the residual's own
    assert np.all(scores >= 0) and not np.allclose(scores, free_scores, rtol=0.01)
    inspections = inspector.inspect_batch(images, [f"im{i}" for i in range(len(images))])
    for inspection, image, score, index in zip(inspections, images, ref_score, ref_type, strict=True):
        result = inspection.result
        assert result.defect_type == info.type_name(int(index))  # None when the package names no type
        assert result.score == pytest.approx(float(score), abs=1e-5)
        assert result.threshold == info.threshold
        assert result.verdict == ("fail" if result.score > info.threshold else "pass")
        assert inspection.anomaly_map.shape == image.shape[:2]


def test_training_free_package_unchanged(fitted_package: Path, images: list[np.ndarray]) -> None:
    from adinspect.runtime.inspector import Inspector

    inspector = Inspector(fitted_package, threads=1)
    assert inspector.seg is None and inspector.threshold == inspector.package.threshold
    result = inspector.inspect(images[0]).result
    assert result.defect_type is None and result.threshold == inspector.package.threshold


def test_seg_inspector_imports_no_torch(seg_package: Path, synthetic_root: Path) -> None:
    image = sorted((synthetic_root / "test").rglob("*.png"))[0]
    code = (
        "import sys; from adinspect.runtime.inspector import Inspector; "
        "from adinspect.package import ModelPackage; from adinspect.runtime.seg import seg_info; "
        f"r = Inspector({str(seg_package)!r}, threads=1).inspect_file({str(image)!r}).result; "
        f"assert r.threshold == seg_info(ModelPackage.load({str(seg_package)!r})).threshold, r; "
        "assert 'torch' not in sys.modules, 'torch imported'; print(r.defect_type)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
