"""train-seg paints the synthetic anomaly shapes its package's click model was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adinspect.errors import InputError
from adinspect.runtime.click import CLICK_META
from adinspect.train.seg_trainer import SegTrainSettings, _shapes, click_shapes


def _click_meta(model_dir: Path, settings: dict) -> None:
    (model_dir / CLICK_META).write_text(json.dumps({"kind": "click", "settings": settings}))


def test_thin_strokes_follow_the_click_model(tmp_path: Path) -> None:
    _click_meta(tmp_path, {"thin_anomalies": 0.3, "steps": 2000})
    assert click_shapes(tmp_path).thin_fraction == pytest.approx(0.3)


def test_default_shapes_without_a_click_model_or_without_thin_strokes(tmp_path: Path) -> None:
    assert click_shapes(tmp_path).thin_fraction == 0.0
    _click_meta(tmp_path, {"steps": 2000})  # a click model trained before the setting existed
    assert click_shapes(tmp_path).thin_fraction == 0.0


@pytest.mark.parametrize(
    "text",
    ["{not json", "[1, 2]", json.dumps({"settings": {"thin_anomalies": 1.5}}), json.dumps({"settings": 3})],
)
def test_a_bad_click_record_names_the_file(tmp_path: Path, text: str) -> None:
    (tmp_path / CLICK_META).write_text(text)
    with pytest.raises(InputError, match=CLICK_META):
        click_shapes(tmp_path)


def test_train_seg_can_paint_its_own_share_of_thin_strokes(tmp_path: Path) -> None:
    _click_meta(tmp_path, {"thin_anomalies": 0.0})
    assert _shapes(SegTrainSettings(thin_anomalies=0.3), tmp_path).thin_fraction == pytest.approx(0.3)
    assert _shapes(SegTrainSettings(), tmp_path).thin_fraction == 0.0
    with pytest.raises(InputError, match="thin_anomalies"):
        SegTrainSettings(thin_anomalies=float("nan"))
