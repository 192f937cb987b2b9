"""The labeller's margin (`runtime.margin`): widening click masks to regions drawn around a defect,
its measured choice (`choose-snap --margin`), and every path that follows the package's choice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from adinspect.imageio import read_image
from adinspect.runtime.clicks import PRED_THRESHOLD, Click, scale_clicks
from adinspect.runtime.margin import widen
from adinspect.train.clicks import iou


def _thin_crack_in_a_band(margin: int) -> tuple[np.ndarray, np.ndarray]:
    """A 1 px bent crack the network found (p 0.9 on it, 0.05 elsewhere) and the region a labeller
    drew around it, `margin` px wide on each side: (prob, truth)."""
    crack = np.zeros((96, 96), np.uint8)
    cv2.polylines(crack, [np.array([[10, 20], [40, 35], [60, 30], [85, 70]], np.int32)], False, 1, 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    truth = cv2.dilate(crack, disc) > 0
    prob = np.where(crack > 0, 0.9, 0.05).astype(np.float32)
    return prob, truth


def test_the_margin_turns_a_traced_crack_into_the_region_drawn_around_it() -> None:
    prob, truth = _thin_crack_in_a_band(4)
    assert iou(truth, prob > PRED_THRESHOLD) < 0.2
    widened = widen(prob, 4)
    assert widened.dtype == np.float32 and widened.shape == prob.shape
    assert iou(truth, widened > PRED_THRESHOLD) == 1.0
    assert widened.min() == pytest.approx(0.05)  # the background is not raised
    assert widen(prob, 0) is prob
    with pytest.raises(ValueError, match="margin"):
        widen(prob, -1)


def test_the_margin_needs_a_real_gain_and_ties_go_to_the_narrower() -> None:
    pytest.importorskip("torch")
    from adinspect.train.snap_choice import margin_pays

    assert margin_pays({}) == 0
    assert margin_pays({"0": 0.50, "2": 0.505, "4": 0.507, "8": 0.49}) == 0  # within the noise
    assert margin_pays({"0": 0.36, "2": 0.41, "4": 0.47, "8": 0.44}) == 4
    assert margin_pays({"0": 0.50, "2": 0.60, "4": 0.60, "8": 0.55}) == 2
    assert margin_pays({"0": 0.80, "2": 0.70, "4": 0.60, "8": 0.50}) == 0


def test_choose_snap_records_a_margin_and_every_path_widens_by_it(
    click_package: Path, synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from adinspect.cli import main
    from adinspect.runtime.click import ClickRuntime, MaskFinish
    from adinspect.train.click_trainer import load_click_model
    from adinspect.train.common import language_tensors, prepare_language
    from adinspect.train.interactive import ClickPredictor
    from adinspect.train.residual_data import load_context, residuals_of
    from adinspect.train.snap_choice import MARGINS, margin_pays

    model = tmp_path / "widget"
    shutil.copytree(click_package, model)
    common = ["--model", str(model), "--data", str(synthetic_root), "--quiet"]
    assert main(["choose-snap", *common]) == 0
    auto = json.loads((model / "click_model.json").read_text())["snap"]
    assert sorted(auto["mean_iou_at_5_by_margin"], key=int) == [str(m) for m in (0, *MARGINS)]
    assert auto["margin"] == margin_pays(auto["mean_iou_at_5_by_margin"]) and auto["margin_how"] == "auto"
    assert "labeller's margin" in capsys.readouterr().out

    assert main(["choose-snap", *common, "--snap", "off", "--margin", "3"]) == 0
    forced = json.loads((model / "click_model.json").read_text())["snap"]
    assert (forced["enabled"], forced["margin"], forced["margin_how"]) == (False, 3, "forced")
    assert forced["mean_iou_at_5"] == {} and forced["mean_iou_at_5_by_margin"] == {}  # nothing measured
    runtime = ClickRuntime(model)
    assert runtime.finish == MaskFinish(False, 3)
    image = read_image(next((synthetic_root / "test" / "crack").glob("*.png")))
    clicks = [Click(100, 120, True), Click(40, 30, False)]
    prob = runtime.open(image).probability(clicks, "crack")

    ctx = load_context(model)
    lang = prepare_language(ctx, synthetic_root)
    v_lang, word_mask = language_tensors(lang)
    t = lang.index("crack")
    net = load_click_model(ctx, lang)
    residual = residuals_of(ctx, [image])
    scaled = scale_clicks(clicks, image.shape[:2], ctx.image_size)
    plain = ClickPredictor(net, residual, v_lang[t], word_mask[t]).run(scaled)
    widened = ClickPredictor(net, residual, v_lang[t], word_mask[t], margin=3).run(scaled)
    np.testing.assert_allclose(prob, widened, atol=1e-4)  # ONNX against torch
    assert (widened > PRED_THRESHOLD).sum() > (plain > PRED_THRESHOLD).sum()  # the margin grew the mask

    out = tmp_path / "clicks.json"
    assert main(["evaluate-clicks", *common, "--json", str(out), "--max-clicks", "2"]) == 0
    assert json.loads(out.read_text())["margin_px"] == 3
    assert main(["evaluate-clicks", *common, "--json", str(out), "--max-clicks", "2", "--margin", "0"]) == 0
    assert json.loads(out.read_text())["margin_px"] == 0


def test_a_negative_margin_is_refused_with_one_error_line(
    click_package: Path, synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from adinspect.cli import main

    common = ["--model", str(click_package), "--data", str(synthetic_root), "--quiet"]
    out = tmp_path / "clicks.json"
    assert main(["evaluate-clicks", *common, "--json", str(out), "--margin", "-1"]) == 2
    assert "--margin -1" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as exc:
        main(["choose-snap", *common, "--margin", "-2"])
    assert exc.value.code == 2 and "--margin" in capsys.readouterr().err
