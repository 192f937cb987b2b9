"""Tracing the thin line between positive clicks (`runtime.trace`), its measured choice
(`choose-snap --trace`), and every path that follows the package's choice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from adinspect.imageio import read_image
from adinspect.runtime.clicks import PRED_THRESHOLD, Click
from adinspect.runtime.trace import FLOOR, line_strength, trace_clicks

from .torch_clicks import torch_clicks


def _faint_crack(dark: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A 1 px bent crack 25 grey levels off a noisy textured surface: (rgb, crack)."""
    rng = np.random.default_rng(0)
    gray = 130 + 12 * rng.standard_normal((96, 128))
    crack = np.zeros((96, 128), np.uint8)
    cv2.polylines(crack, [np.array([[8, 30], [40, 48], [75, 40], [120, 60]], np.int32)], False, 1, 1)
    gray[crack > 0] += -25 if dark else 25
    rgb = np.repeat(gray.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return rgb, crack > 0


@pytest.mark.parametrize("dark", [True, False])
def test_two_clicks_on_a_faint_crack_trace_the_crack_between_them(dark: bool) -> None:
    rgb, crack = _faint_crack(dark)
    on = np.argwhere(crack)
    ends = [on[np.argmin(on[:, 1])], on[np.argmax(on[:, 1])]]
    clicks = [Click(int(y), int(x), True) for y, x in ends]
    prob = np.zeros(crack.shape, np.float32)
    traced = trace_clicks(prob, line_strength(rgb), clicks, 2.5)
    mask = traced > PRED_THRESHOLD
    near_crack = cv2.dilate(crack.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert (mask & crack).sum() >= 0.9 * crack.sum()  # the crack is traced end to end
    assert (mask & ~near_crack).sum() <= 0.1 * mask.sum()  # and little else
    assert traced.max() == pytest.approx(FLOOR) and prob.max() == 0  # a copy; the path just over the cut


def test_one_positive_click_is_left_alone_and_a_negative_click_is_a_wall() -> None:
    rgb, crack = _faint_crack()
    strength = line_strength(rgb)
    prob = np.zeros(crack.shape, np.float32)
    assert trace_clicks(prob, strength, [Click(30, 8, True), Click(60, 120, False)], 2.5) is prob
    on = np.argwhere(crack)
    middle = on[len(on) // 2]
    ends = [Click(int(y), int(x), True) for y, x in (on[0], on[-1])]
    blocked = trace_clicks(prob, strength, [*ends, Click(int(middle[0]), int(middle[1]), False)], 2.5)
    yy, xx = np.ogrid[: crack.shape[0], : crack.shape[1]]
    wall = (yy - middle[0]) ** 2 + (xx - middle[1]) ** 2 <= 2.5**2
    assert not (blocked > PRED_THRESHOLD)[wall].any()


def test_choose_snap_records_tracing_and_every_path_follows_it(
    click_package: Path, synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from adinspect.cli import main
    from adinspect.package import ModelPackage
    from adinspect.runtime.click import ClickRuntime, MaskFinish
    from adinspect.train.interactive import ClickPredictor
    from adinspect.train.snap_choice import pays

    model = tmp_path / "widget"
    shutil.copytree(click_package, model)
    common = ["--model", str(model), "--data", str(synthetic_root), "--quiet"]
    assert main(["choose-snap", *common, "--snap", "off"]) == 0
    auto = json.loads((model / "click_model.json").read_text())["trace"]
    assert auto["how"] == "auto" and auto["n_labelled_images"] > 0
    assert auto["enabled"] == pays(auto["mean_iou_at_5"])
    assert "trace between positive clicks" in capsys.readouterr().out

    assert main(["choose-snap", *common, "--snap", "off", "--trace", "on"]) == 0
    meta = json.loads((model / "click_model.json").read_text())
    assert meta["trace"]["enabled"] and meta["trace"]["mean_iou_at_5"] == {}  # forced: nothing measured
    ModelPackage.load(model)  # the manifest was resealed
    runtime = ClickRuntime(model)
    assert runtime.finish == MaskFinish(snap=False, trace=True)
    image = read_image(next((synthetic_root / "test" / "crack").glob("*.png")))
    clicks = [Click(100, 120, True), Click(40, 30, False), Click(140, 60, True)]
    prob = runtime.open(image).probability(clicks, "crack")

    plain, reference = torch_clicks(model, synthetic_root, image, clicks, "crack", MaskFinish(trace=True))
    np.testing.assert_allclose(prob, reference, atol=1e-4)  # ONNX against torch, the same path
    assert not np.array_equal(reference, plain)  # tracing changed something
    with pytest.raises(ValueError, match="rgb"):
        ClickPredictor(None, None, None, None, finish=MaskFinish(trace=True))

    out = tmp_path / "clicks.json"
    assert main(["evaluate-clicks", *common, "--json", str(out), "--max-clicks", "2"]) == 0
    assert json.loads(out.read_text())["trace"] is True
    assert main(["evaluate-clicks", *common, "--json", str(out), "--max-clicks", "2", "--trace", "off"]) == 0
    assert json.loads(out.read_text())["trace"] is False
