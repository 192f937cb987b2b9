"""`fit --auto` at a larger input: tried only where the images have the pixels and fit and training
have the time, taken only when clearly ahead, and recorded as the package's input everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adinspect.config import preset_config
from adinspect.fitting.candidates import FIT_PIXEL_BUDGET, MAX_INPUT_PIXELS, larger_inputs
from adinspect.fitting.input_shape import chosen_geometry, resolve_input_shape
from adinspect.package import ModelPackage

pytest.importorskip("torch")


def test_one_larger_input_is_tried_only_where_pixels_and_time_allow() -> None:
    config = preset_config("cpu", "p")  # S = 256
    assert larger_inputs(config, (900, 900), 209) == ([(384, 384)], [])  # bottle's photographs
    assert larger_inputs(config, (512, 512), 54) == ([(384, 384)], [])
    shapes, notes = larger_inputs(config, (300, 300), 209)
    assert shapes == [] and "300x300: it would only magnify pixels" in notes[0]
    shapes, notes = larger_inputs(config, (768, 304), 230)  # KolektorSDD: 960 x 384 is over its 768 x 320
    assert shapes == [] and notes[0].startswith("input 960x384 not tried")
    shapes, notes = larger_inputs(config, (2000, 800), 50)  # a strip: 960 x 384 pixels is too many to train
    assert shapes == [] and f"over {MAX_INPUT_PIXELS} pixels" in notes[0]
    many = int(FIT_PIXEL_BUDGET // (384 * 384)) + 1
    shapes, notes = larger_inputs(config, (900, 900), many)
    assert shapes == [] and f"{many} good images at it exceed fit's budget" in notes[0]
    assert larger_inputs(config, (900, 900), many - 1)[0] == [(384, 384)]


def test_a_larger_input_is_taken_only_where_it_catches_clearly_more_synthetic_defects() -> None:
    from adinspect.fitting.choice import Candidate, Choice

    base = Candidate("efficientnet_lite0", "local", "none")
    picked = Candidate("efficientnet_lite2", "global", "none")
    here = Candidate("efficientnet_lite2", "global", "none", input_shape=(256, 256))  # painted at 384
    larger = Candidate("efficientnet_lite2", "global", "none", input_shape=(384, 384))
    choice = Choice(base, base, {}, 32, 0.0, config_input=(256, 256))
    choice.evidence[base] = {"image_auroc": 0.90, "pixel_ap": 0.60, "aupro": 0.90}
    choice.evidence[picked] = {"image_auroc": 0.95, "pixel_ap": 0.65, "aupro": 0.95}
    choice.evidence[here] = {"image_auroc": 0.93, "pixel_ap": 0.55, "aupro": 0.93}
    choice.evidence[larger] = {"image_auroc": 0.935, "pixel_ap": 0.70, "aupro": 0.95}  # finer maps only
    assert choice.best() == picked and choice.pick() == picked
    choice.evidence[larger] = {"image_auroc": 0.96, "pixel_ap": 0.45, "aupro": 0.93}  # criterion - 0.023
    assert choice.pick() == picked
    choice.evidence[larger] = {"image_auroc": 0.96, "pixel_ap": 0.60, "aupro": 0.93}  # thin defects caught
    assert choice.pick() == larger and larger.name == "efficientnet_lite2/global/none/384x384"
    choice.chosen = choice.pick()
    config = choice.apply(preset_config("cpu", "p"))
    assert config.method.shape == (384, 384) and config.method.image_size == 384
    assert choice.record()["chosen"]["input_shape"] == [384, 384]
    assert Choice(base, base, {base: choice.evidence[base]}, 32, 0.0, config_input=(256, 256)).record()[
        "chosen"
    ]["input_shape"] == [256, 256]


def test_the_geometry_follows_the_chosen_input(tall_root: Path) -> None:
    from adinspect.fitting.choice import Candidate, with_candidate

    config = preset_config("cpu", "strip", method={"image_size": 64})
    config, geometry = resolve_input_shape(config, sorted((tall_root / "train" / "good").glob("*.png")))
    assert geometry.input_shape == (192, 64) and chosen_geometry(geometry, config) is geometry
    wider = with_candidate(config, Candidate("efficientnet_lite0", "local", "none", 1, (320, 128)))
    moved = chosen_geometry(geometry, wider)
    assert moved.input_shape == (320, 128) and moved.rule == geometry.rule == "aspect"
    assert "S = 128 chosen by fit --auto" in moved.reason


def test_fit_auto_measures_a_larger_input_and_the_package_is_made_at_the_one_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from adinspect.data.datasets import open_dataset
    from adinspect.data.synthetic import make_synthetic_dataset
    from adinspect.fitting.choice import Choice
    from adinspect.fitting.fit import CHOICE_JSON, fit_product
    from adinspect.imageio import read_image
    from adinspect.runtime.inspector import Inspector

    def larger(self: Choice, base):  # the rule, as if the thin strokes had shown a clear gain
        at_192 = replace(base, input_shape=(192, 192))
        return at_192 if at_192 in self.evidence else base

    monkeypatch.setattr(Choice, "larger", larger)
    data = make_synthetic_dataset(tmp_path / "p", n_train=12, n_test_good=1, n_test_defect=1, size=256)
    config = preset_config("cpu", "p", method={"image_size": 128})
    fit_product(data, config, tmp_path / "m", progress=False, auto=True, backbones=["efficientnet_lite0"])
    package = ModelPackage.load(tmp_path / "m")
    record = json.loads((tmp_path / "m" / CHOICE_JSON).read_text())
    sizes = {tuple(row["input_shape"]) for row in record["candidates"] if row["input_shape"]}
    assert sizes == {(128, 128), (192, 192)}  # 1.5 x 128, and 128 again, on anomalies painted at 192
    assert record["chosen"]["input_shape"] == [192, 192] and package.manifest.choices is not None
    assert package.config.method.shape == (192, 192) == package.manifest.preprocess.shape
    assert package.manifest.choices["input_shape"] == "192x192"
    geometry = package.manifest.geometry
    assert geometry is not None and geometry.input_shape == (192, 192)
    assert "S = 192 chosen by fit --auto" in geometry.reason
    assert "network input 192x192" in (tmp_path / "m" / "model_card.md").read_text()
    sample = open_dataset(data).test[0]
    inspection = Inspector(tmp_path / "m", threads=1).inspect(read_image(sample.path), sample.path.name)
    assert inspection.anomaly_map.shape == (256, 256) and np.isfinite(inspection.result.score)


def test_an_asked_input_is_not_changed(tmp_path: Path) -> None:
    from adinspect.data.synthetic import make_synthetic_dataset
    from adinspect.fitting.fit import CHOICE_JSON, fit_product

    data = make_synthetic_dataset(tmp_path / "p", n_train=10, n_test_good=1, n_test_defect=1, size=256)
    config = preset_config("cpu", "p", method={"image_size": 128})
    fit_product(
        data, config, tmp_path / "m", progress=False, auto=True, backbones=["efficientnet_lite0"], sizes=False
    )
    record = json.loads((tmp_path / "m" / CHOICE_JSON).read_text())
    assert all(row["input_shape"] is None for row in record["candidates"])
    assert record["chosen"]["input_shape"] == [128, 128]
    assert ModelPackage.load(tmp_path / "m").config.method.shape == (128, 128)
