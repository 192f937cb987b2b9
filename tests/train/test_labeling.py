"""Click files for `adinspect label`: every bad entry is a clear error before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adinspect.errors import InputError
from adinspect.imageio import write_png
from adinspect.runtime.clicks import Click
from adinspect.train.labeling import parse_click_file


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    write_png(tmp_path / "test" / "crack" / "000.png", np.zeros((100, 200, 3), np.uint8))
    return tmp_path


def _write(tmp_path: Path, entries: list) -> Path:
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps({"images": entries}))
    return path


def _entry(**kw) -> dict:
    base = {
        "image": "test/crack/000.png",
        "defect_type": "crack",
        "clicks": [{"x": 150, "y": 50, "positive": True}],
    }
    return {**base, **kw}


def test_valid_file_scales_clicks_to_the_model_size(data_dir: Path) -> None:
    path = _write(
        data_dir,
        [_entry(clicks=[{"x": 150, "y": 50, "positive": True}, {"x": 0, "y": 99, "positive": False}])],
    )
    (req,) = parse_click_file(path, data_dir, ["crack"], size=64)
    assert req.original == [Click(50, 150, True), Click(99, 0, False)]
    assert req.scaled == [Click(32, 48, True), Click(63, 0, False)]
    assert req.image.shape == (100, 200, 3)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (_entry(image="test/crack/999.png"), "unknown image"),
        (_entry(defect_type="scratch"), "unknown defect type 'scratch'"),
        (_entry(clicks=[{"x": 200, "y": 10, "positive": True}]), "outside the 200x100 image"),
        (_entry(clicks=[{"x": 5, "y": -1, "positive": True}]), "outside"),
        (_entry(clicks=[]), "no clicks"),
        (_entry(clicks=[{"x": 5}]), "integer x, y and boolean positive"),
        ({"image": "test/crack/000.png"}, "needs keys"),
    ],
)
def test_bad_entries_are_clear_errors(data_dir: Path, entry: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_click_file(_write(data_dir, [entry]), data_dir, ["crack"], size=64)


def test_unreadable_or_empty_files_are_errors(data_dir: Path) -> None:
    bad = data_dir / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        parse_click_file(bad, data_dir, ["crack"], 64)
    with pytest.raises(InputError, match="expected"):
        parse_click_file(_write(data_dir, []), data_dir, ["crack"], 64)
