"""KolektorSDD2's weakly supervised protocol (paper Table 6) on a generated KSDD2-layout dataset:
`label` takes the defective *training* images, `train-seg` fine-tunes on them, and the
evaluation commands use every defective test image. Tiny step counts: wiring, not accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adinspect.data.synthetic import make_synthetic_dataset

from .test_defective_pool import ksdd2_layout
from .test_pipeline import _run

pytestmark = pytest.mark.slow


def test_label_and_train_seg_use_the_defective_training_images(tmp_path: Path) -> None:
    from adinspect.config import preset_config
    from adinspect.fitting.fit import fit_product

    mvtec = make_synthetic_dataset(tmp_path / "mvtec", n_train=16, n_test_good=3, n_test_defect=6, size=128)
    data = ksdd2_layout(mvtec, tmp_path / "ksdd2", n_train_defective=3)
    model = tmp_path / "model"
    fit_product(data, preset_config("cpu", "ksdd2"), model, progress=False)
    common = ["--model", str(model), "--data", str(data), "--quiet"]
    tiny = ["--steps", "1", "--batch-size", "2", "--n-synthetic", "4", "--validation-images", "0"]
    assert _run("train-click", *common, *tiny) == 0

    assert _run("label", *common, "--simulate", "2") == 0
    labels = json.loads((model / "labels" / "labels.json").read_text())
    assert [Path(r["image"]).parent for r in labels["images"]] == [data / "train"] * 3
    assert "defective training images" in labels["source"]

    seg = ["--pretrain-steps", "1", "--finetune-steps", "1", "--batch-size", "4", "--n-synthetic", "4"]
    assert _run("train-seg", *common, *seg) == 0
    report = json.loads((model / "seg_model.json").read_text())
    assert report["n_pseudo_labelled"] == 3
    assert report["calibration"]["pseudo_labelled"] == [r["image"] for r in labels["images"]]

    out = tmp_path / "seg.json"
    assert _run("evaluate-seg", *common, "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert result["n_defective"] == 3 and all(Path(p).parent == data / "test" for p in result["images"])
