"""Weak supervision on a tall product (320 x 128 input): train-click, the click runtime (clicks in
original pixels scaled per axis), label, train-seg, evaluate-clicks and evaluate-seg all run at
the package's (H, W). Tiny step counts: the wiring and the shapes, not accuracy."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from adinspect.imageio import read_image
from adinspect.package import ModelPackage
from adinspect.runtime.clicks import PRED_THRESHOLD, Click, scale_clicks
from adinspect.train import cli

pytestmark = pytest.mark.slow

CHEAPEST = ["--steps", "2", "--batch-size", "2", "--n-synthetic", "8", "--snap", "off", "--trace", "off"]


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def tall_click(tall_package: Path, tall_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("tall_click") / "strip"
    shutil.copytree(tall_package, model)
    common = ["--model", str(model), "--data", str(tall_root), "--quiet"]
    # the 320 x 128 input trains on 256 x 128 crops, its second step on the whole input
    crops = ["--train-crop", "256", "--whole-every", "2"]
    assert (
        _run("train-click", *common, "--image-branch", "--capture-shift-aug", "0.5", *crops, *CHEAPEST) == 0
    )
    return model


def test_train_click_builds_the_network_at_the_input(tall_click: Path) -> None:
    meta = json.loads((tall_click / "click_model.json").read_text())
    assert meta["arch"]["grid"] == [40, 16] and meta["arch"]["image_size"] == [320, 128]
    assert meta["trained_at"] == [256, 128]  # trained on crops, served at the whole input
    assert meta["parity"]["mask_max_abs_diff"] < 1e-4


def test_click_runtime_scales_clicks_per_axis_and_equals_torch(tall_click: Path, tall_root: Path) -> None:
    import torch

    from adinspect.runtime.click import ClickRuntime
    from adinspect.train.click_trainer import load_click_model
    from adinspect.train.common import language_tensors, prepare_language
    from adinspect.train.interactive import ClickPredictor
    from adinspect.train.residual_data import images_of, load_context

    path = next((tall_root / "test" / "spot").glob("*.png"))
    image = cv2.resize(read_image(path), (96, 480))  # 1.5 x taller, 0.75 x as wide as the input
    clicks = [Click(300, 40, True), Click(60, 90, False)]
    scaled = scale_clicks(clicks, image.shape[:2], (320, 128))
    assert scaled == [Click(200, 53, True), Click(40, 120, False)]
    session = ClickRuntime(tall_click).open(image)
    prob = session.probability(clicks, "spot")
    assert prob.shape == (320, 128) and session.mask(prob).shape == (480, 96)
    assert session.scaled(clicks) == scaled
    ctx = load_context(tall_click)
    lang = prepare_language(ctx, tall_root)
    v_lang, word_mask = language_tensors(lang)
    t = lang.index("spot")
    model = load_click_model(ctx, lang)
    reference = ClickPredictor(
        model, torch.from_numpy(session.residual), v_lang[t], word_mask[t], images_of(ctx, [image])
    ).run(scaled)
    assert np.abs(prob - reference).max() < 1e-4
    near = np.abs(reference - PRED_THRESHOLD) < 1e-4
    assert np.array_equal((prob > PRED_THRESHOLD)[~near], (reference > PRED_THRESHOLD)[~near])


def test_label_train_seg_and_evaluate_at_the_input(tall_click: Path, tall_root: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from adinspect.runtime.inspector import Inspector

    common = ["--model", str(tall_click), "--data", str(tall_root), "--quiet"]
    assert _run("label", *common, "--simulate", "2") == 0
    labels = json.loads((tall_click / "labels" / "labels.json").read_text())
    assert labels["input_shape"] == [320, 128] and labels["image_size"] == 128
    soft = load_file(str(tall_click / "labels" / "pseudo_labels.safetensors"))["soft"]
    assert soft.shape == (len(labels["images"]), 320, 128)
    seg = ["--pretrain-steps", "2", "--finetune-steps", "2", "--batch-size", "4", "--n-synthetic", "8"]
    assert _run("train-seg", *common, *seg, "--serve", "seg") == 0  # served: the inspector runs it below
    assert "seg" in ModelPackage.load(tall_click).manifest.optional_models
    inspection = Inspector(tall_click, threads=1).inspect(np.zeros((100, 300, 3), np.uint8))
    assert inspection.anomaly_map.shape == (100, 300)
    clicks_json, seg_json = tmp_path / "clicks.json", tmp_path / "seg.json"
    assert _run("evaluate-clicks", *common, "--json", str(clicks_json), "--max-clicks", "2") == 0
    assert 0 <= json.loads(clicks_json.read_text())["ap_3"] <= 1
    assert _run("evaluate-seg", *common, "--json", str(seg_json)) == 0
    result = json.loads(seg_json.read_text())
    assert all(0 <= result[name]["pixel_ap"] <= 1 for name in ("adclick_seg", "training_free"))
