"""The torch-free click runtime gives the masks `label` / `evaluate-clicks` give for the same clicks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adinspect.imageio import read_image
from adinspect.runtime.clicks import PRED_THRESHOLD, Click, scale_clicks, unscale_click

REPO = Path(__file__).resolve().parents[2]


def test_labelling_server_imports_without_torch() -> None:
    code = (
        "import sys\n"
        "import adinspect.runtime.click, adinspect.annotate.app, adinspect.annotate.server\n"
        "import adinspect.annotate.service, adinspect.annotate.jobs, adinspect.annotate.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_unscale_click_is_the_inverse_of_scale_clicks() -> None:
    for shape in ((900, 900), (256, 256), (1000, 300), (300, 1000)):
        for y, x in ((0, 0), (255, 255), (17, 200), (128, 3)):
            click = Click(y, x, True)
            original = unscale_click(click, shape, 256)
            assert 0 <= original.y < shape[0] and 0 <= original.x < shape[1]
            if min(shape) >= 256:
                assert scale_clicks([original], shape, 256) == [click]


def test_same_clicks_same_masks_as_label(click_package: Path, synthetic_root: Path) -> None:
    """ONNX Runtime (click.onnx, residual.onnx) against the torch path of `label`/`evaluate-clicks`."""
    from adinspect.runtime.click import ClickRuntime
    from adinspect.train.click_trainer import load_click_model
    from adinspect.train.common import language_tensors, prepare_language
    from adinspect.train.predictor import ClickPredictor
    from adinspect.train.residual_data import load_context, residuals_of

    path = next((synthetic_root / "test" / "scratch").glob("*.png"))
    image = read_image(path)
    clicks = [Click(100, 120, True), Click(40, 30, False), Click(101, 122, True)]

    runtime = ClickRuntime(click_package)
    prob = runtime.open(image).probability(clicks, "scratch")

    ctx = load_context(click_package)
    lang = prepare_language(ctx, synthetic_root)
    v_lang, word_mask = language_tensors(lang)
    t = lang.index("scratch")
    predictor = ClickPredictor(
        load_click_model(ctx, lang), residuals_of(ctx, [image]), v_lang[t], word_mask[t]
    )
    reference = predictor.run(scale_clicks(clicks, image.shape[:2], ctx.image_size))
    assert np.abs(prob - reference).max() < 1e-4
    near = np.abs(reference - PRED_THRESHOLD) < 1e-4  # pixels a rounding step could flip
    assert np.array_equal((prob > PRED_THRESHOLD)[~near], (reference > PRED_THRESHOLD)[~near])


def test_cached_prefixes_give_the_same_masks_as_a_fresh_session(
    click_package: Path, synthetic_root: Path
) -> None:
    from adinspect.runtime.click import ClickRuntime

    runtime = ClickRuntime(click_package)
    image = read_image(next((synthetic_root / "test" / "crack").glob("*.png")))
    clicks = [Click(100, 120, True), Click(40, 30, False), Click(101, 122, True)]
    session = runtime.open(image)
    for k in range(1, 4):
        session.probability(clicks[:k], "crack")  # one click at a time, as a person clicks
    session.probability(clicks[:1], "spot")  # another type does not reuse the cache
    fresh = runtime.open(image).probability(clicks, "crack")
    assert np.array_equal(session.probability(clicks, "crack"), fresh)
    assert np.array_equal(
        session.probability(clicks[:2], "crack"), runtime.open(image).probability(clicks[:2], "crack")
    )
    with pytest.raises(ValueError, match="outside"):
        session.probability([Click(256, 0, True)], "crack")
    with pytest.raises(ValueError, match="unknown defect type"):
        session.probability(clicks, "dent")


def test_click_onnx_inputs_are_the_contract(click_package: Path) -> None:
    import onnxruntime as ort

    from adinspect.contracts import BACKBONE, CLICK

    session = ort.InferenceSession(str(click_package / "click.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(CLICK[:4])  # residual only
    assert [o.name for o in session.get_outputs()] == [CLICK.mask]
    assert (CLICK.image, CLICK.features) == (BACKBONE.image, BACKBONE.features)


def _torch_reference(
    package: Path, root: Path, image: np.ndarray, clicks: list[Click], kind: str, residual: np.ndarray
):
    """The torch click model on the runtime's residual. The residual itself is not compared: where
    two references are equally near a cell (distances equal to 1e-5), the ONNX and torch paths may
    pick different ones, which leaves the anomaly map unchanged but not the residual vector."""
    import torch

    from adinspect.train.click_trainer import load_click_model
    from adinspect.train.common import language_tensors, prepare_language
    from adinspect.train.predictor import ClickPredictor
    from adinspect.train.residual_data import features_and_residuals, images_of, load_context

    ctx = load_context(package)
    lang = prepare_language(ctx, root)
    v_lang, word_mask = language_tensors(lang)
    t = lang.index(kind)
    model = load_click_model(ctx, lang)
    normalised = images_of(ctx, [image]) if model.takes_image else None
    features = features_and_residuals(ctx, [image])[0] if model.takes_features else None
    predictor = ClickPredictor(
        model, torch.from_numpy(residual), v_lang[t], word_mask[t], normalised, None, features
    )
    return predictor.run(scale_clicks(clicks, image.shape[:2], ctx.image_size))


def test_image_branch_click_onnx_takes_the_image_and_the_runtime_feeds_it(
    image_click_package: Path, synthetic_root: Path
) -> None:
    import onnxruntime as ort

    from adinspect.contracts import BACKBONE, CLICK
    from adinspect.runtime.click import ClickRuntime

    session = ort.InferenceSession(
        str(image_click_package / "click.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == [*CLICK[:4], BACKBONE.image]
    image = read_image(next((synthetic_root / "test" / "spot").glob("*.png")))
    clicks = [Click(100, 120, True), Click(40, 30, False)]
    runtime = ClickRuntime(image_click_package)
    opened = runtime.open(image)
    prob = opened.probability(clicks, "spot")
    reference = _torch_reference(image_click_package, synthetic_root, image, clicks, "spot", opened.residual)
    assert np.abs(prob - reference).max() < 1e-4
    opened.image = np.zeros_like(opened.image)  # the runtime feeds what the session holds
    opened._cache.clear()
    assert np.abs(opened.probability(clicks, "spot") - prob).max() > 1e-6


def test_click_model_written_before_the_image_branch_still_loads_and_runs(
    click_package: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    """A package whose click_model.safetensors has no `image_stem`, `refine_full` or `image_features`
    in its arch (older code) and whose click.onnx has the four inputs: torch (`label`,
    `evaluate-clicks`) and the runtime still run."""
    import json
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    from adinspect.runtime.click import ClickRuntime
    from adinspect.train.click_trainer import CLICK_WEIGHTS
    from adinspect.train.common import register_files

    old = tmp_path / "old"
    shutil.copytree(click_package, old)
    with safe_open(str(old / CLICK_WEIGHTS), "pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is no mapping)
        meta = json.loads(fh.metadata()["meta"])
    for field in ("image_stem", "refine_full", "image_features"):  # none of them existed then
        meta["arch"].pop(field)
    save_file(tensors, str(old / CLICK_WEIGHTS), metadata={"meta": json.dumps(meta)})
    register_files(old, [CLICK_WEIGHTS])
    image = read_image(next((synthetic_root / "test" / "crack").glob("*.png")))
    clicks = [Click(100, 120, True), Click(40, 30, False)]
    opened = ClickRuntime(old).open(image)
    prob = opened.probability(clicks, "crack")
    reference = _torch_reference(old, synthetic_root, image, clicks, "crack", opened.residual)
    assert np.abs(prob - reference).max() < 1e-4
    assert np.array_equal(prob, ClickRuntime(click_package).open(image).probability(clicks, "crack"))


def test_evaluate_clicks_and_label_run_the_image_branch(
    image_click_package: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from adinspect.cli import main

    model = tmp_path / "widget"
    shutil.copytree(image_click_package, model)
    common = ["--model", str(model), "--data", str(synthetic_root), "--quiet"]
    out = tmp_path / "clicks.json"
    assert main(["evaluate-clicks", *common, "--json", str(out), "--max-clicks", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["n_images"] > 0 and len(result["iou_at_k"]) == 2
    assert main(["label", *common, "--simulate", "2"]) == 0
    labels = json.loads((model / "labels" / "labels.json").read_text())
    assert labels["images"] and all(len(r["clicks"]) <= 2 for r in labels["images"])


def test_feature_prior_click_onnx_takes_the_features_and_the_runtime_feeds_the_backbones(
    feature_click_package: Path, synthetic_root: Path
) -> None:
    """click.onnx of `train-click --image-features`: inputs, the runtime's probability against the
    torch path of `label` / `evaluate-clicks`, and the features it feeds are the backbone's."""
    import json

    import onnxruntime as ort

    from adinspect.contracts import CLICK
    from adinspect.runtime.click import ClickRuntime

    session = ort.InferenceSession(
        str(feature_click_package / "click.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == [*CLICK[:4], CLICK.features]
    meta = json.loads((feature_click_package / "click_model.json").read_text())
    assert meta["arch"]["image_features"] is True and meta["settings"]["image_features"] is True
    assert meta["validation"]["n_images"] == 2 and len(meta["validation"]["iou_at_k"]) == 5
    image = read_image(next((synthetic_root / "test" / "spot").glob("*.png")))
    clicks = [Click(100, 120, True), Click(40, 30, False)]
    opened = ClickRuntime(feature_click_package).open(image)
    assert opened.features is not None and opened.features.shape == opened.residual.shape
    prob = opened.probability(clicks, "spot")
    reference = _torch_reference(
        feature_click_package, synthetic_root, image, clicks, "spot", opened.residual
    )
    assert np.abs(prob - reference).max() < 1e-4
    opened.features = opened.features * 0  # the runtime feeds what the session holds
    opened._cache.clear()
    assert np.abs(opened.probability(clicks, "spot") - prob).max() > 1e-6


def test_every_positive_click_is_inside_the_runtime_mask(click_package: Path, synthetic_root: Path) -> None:
    """Whatever click.onnx answers (here: 0.01 everywhere, a network that misses every click), each
    positive click gets a mask around it, negative clicks none."""
    from adinspect.runtime.click import ClickRuntime
    from adinspect.runtime.clicks import click_radius

    class Silent:  # click.onnx's interface, answering "no defect anywhere"
        def run(self, outputs, feeds):
            return [np.full_like(feeds["prev_mask"], 0.01)]

    runtime = ClickRuntime(click_package)
    runtime.click = Silent()  # type: ignore[assignment]
    image = read_image(next((synthetic_root / "test" / "crack").glob("*.png")))
    clicks = [Click(100, 120, True), Click(40, 30, False), Click(200, 60, True)]
    opened = runtime.open(image)
    yy, xx = np.mgrid[: runtime.size, : runtime.size]
    r = click_radius(runtime.size)
    for k in range(1, 4):
        scaled = opened.scaled(clicks[:k])
        discs = [(yy - c.y) ** 2 + (xx - c.x) ** 2 <= r * r for c in scaled if c.positive]
        mask = opened.mask(opened.probability(clicks[:k], "crack"), full_size=False)
        assert np.array_equal(mask, np.logical_or.reduce(discs))
