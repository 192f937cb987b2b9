"""End to end on the synthetic dataset: train-click → label → train-seg → evaluate, via the CLI.

Tiny step counts: this checks the wiring, files, manifest, resume and errors, not accuracy
(accuracy on the real bottle data is measured by the commands in the closing report).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from adinspect.cli import main as adinspect_main
from adinspect.errors import InputError
from adinspect.package import ModelPackage
from adinspect.train import cli

pytestmark = pytest.mark.slow


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def trained(fitted_package: Path, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("adclick") / "widget"
    shutil.copytree(fitted_package, model)
    common = ["--model", str(model), "--data", str(synthetic_root), "--quiet"]
    assert _run("train-click", *common, "--steps", "2", "--batch-size", "2", "--n-synthetic", "8") == 0
    return model


def test_train_click_writes_a_verified_package(trained: Path) -> None:
    package = ModelPackage.load(trained)
    for name in (
        "language.safetensors",
        "language.json",
        "click_model.safetensors",
        "click.onnx",
        "click_model.json",
    ):
        assert package.has(name), name
    assert "click" not in package.manifest.optional_models  # labelling only, never served
    meta = json.loads((trained / "click_model.json").read_text())
    assert meta["preset"] == "cpu" and meta["parity"]["mask_max_abs_diff"] < 1e-4
    assert meta["defect_types"] == json.loads((trained / "language.json").read_text())["defect_types"]


def test_resume_continues_from_the_checkpoint(trained: Path, synthetic_root: Path) -> None:
    common = ["--model", str(trained), "--data", str(synthetic_root), "--quiet"]
    assert (
        _run("train-click", *common, "--steps", "3", "--batch-size", "2", "--n-synthetic", "8", "--resume")
        == 0
    )
    assert json.loads((trained / "click_model.json").read_text())["resumed_from"] == 2


def test_label_train_seg_and_evaluate(trained: Path, synthetic_root: Path, tmp_path: Path) -> None:
    common = ["--model", str(trained), "--data", str(synthetic_root), "--quiet"]
    assert _run("label", *common, "--simulate", "2") == 0
    labels = json.loads((trained / "labels" / "labels.json").read_text())
    assert labels["images"] and all(len(r["clicks"]) <= 2 for r in labels["images"])
    assert all((trained / "labels" / r["mask"]).is_file() for r in labels["images"])

    seg = ["--pretrain-steps", "2", "--finetune-steps", "2", "--batch-size", "4", "--n-synthetic", "8"]
    assert _run("train-seg", *common, *seg) == 0
    package = ModelPackage.load(trained)
    assert package.has("seg.onnx") and "seg" in package.manifest.optional_models
    report = json.loads((trained / "seg_model.json").read_text())
    assert report["init"] == "click_model.safetensors" and report["n_pseudo_labelled"] == len(
        labels["images"]
    )
    assert report["parity"]["map_max_abs_diff"] < 1e-4
    calibration = report["calibration"]
    assert 0 <= max(calibration["holdout_scores"]) <= calibration["threshold"]
    assert calibration["threshold"] >= 0.5 and calibration["rule"].startswith("max(0.5, ")

    out = tmp_path / "clicks.json"
    assert _run("evaluate-clicks", *common, "--json", str(out), "--max-clicks", "3") == 0
    metrics = json.loads(out.read_text())
    assert {"noc80", "noc85", "noc90", "ap_3", "ap_5"} <= set(metrics) and len(metrics["iou_at_k"]) == 3
    assert all(0 <= v <= 1 for v in metrics["iou_at_k"]) and 1 <= metrics["noc85"] <= 3

    seg_json = tmp_path / "seg.json"
    assert _run("evaluate-seg", *common, "--json", str(seg_json)) == 0
    result = json.loads(seg_json.read_text())
    assert 0 <= result["adclick_seg"]["pixel_ap"] <= 1 and 0 <= result["training_free"]["aupro"] <= 1

    # the whole test split includes the pseudo-labelled images: evaluate says how many
    whole = tmp_path / "metrics.json"
    assert adinspect_main(["evaluate", *common, "--json", str(whole)]) == 0
    assert json.loads(whole.read_text())["n_pseudo_labelled"] == len(labels["images"])


def test_bad_click_file_writes_nothing(trained: Path, synthetic_root: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in trained.iterdir())
    labels_before = (trained / "labels").exists() and sorted(p.name for p in (trained / "labels").iterdir())
    bad = tmp_path / "clicks.json"
    image = next((synthetic_root / "test").glob("*/000.png"))
    entry = {
        "image": str(image),
        "defect_type": "no_such_type",
        "clicks": [{"x": 1, "y": 1, "positive": True}],
    }
    bad.write_text(json.dumps({"images": [entry]}))
    with pytest.raises(InputError, match="unknown defect type"):
        _run("label", "--model", str(trained), "--data", str(synthetic_root), "--clicks", str(bad), "--quiet")
    assert sorted(p.name for p in trained.iterdir()) == before
    labels_after = (trained / "labels").exists() and sorted(p.name for p in (trained / "labels").iterdir())
    assert labels_after == labels_before


def test_label_needs_exactly_one_click_source(trained: Path, synthetic_root: Path) -> None:
    with pytest.raises(InputError, match="exactly one"):
        _run("label", "--model", str(trained), "--data", str(synthetic_root))
