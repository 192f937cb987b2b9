"""What a package states to expect at its threshold: misses among the labelled defects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from adinspect.evaluation.expected import expected_misses, image_key, labelled_images


def test_labelled_defects_under_the_threshold_give_the_expected_miss_rate(tmp_path: Path) -> None:
    labelled = [Path(f"data/test/crack/{i:03d}.png") for i in range(8)]
    scored = {image_key(p): s for p, s in zip(labelled[:6], [5.0, 1.0, 9.0, 2.0, 7.0, np.nan], strict=True)}
    outside = {labelled[6]: 2.5, labelled[7]: 8.0}  # labelled images that are not in the test split
    out = expected_misses(labelled, scored, 3.0, lambda p: outside[p])
    assert out["labelled_defects"] == 8 and out["labelled_passed"] == 3  # 1.0, 2.0, 2.5; NaN fails closed
    ci = binomtest(3, 8).proportion_ci(method="exact")
    assert out["expected_miss_rate"] == 3 / 8
    assert out["expected_miss_low_95"] == pytest.approx(ci.low) and out[
        "expected_miss_high_95"
    ] == pytest.approx(ci.high)
    assert expected_misses([], scored, 3.0, lambda p: 0.0) == {}


def test_labelled_images_are_read_from_the_packages_labels(tmp_path: Path) -> None:
    assert labelled_images(tmp_path) == []
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "labels.json").write_text(json.dumps({"images": [{"image": "t/crack/001.png"}]}))
    assert labelled_images(tmp_path) == [Path("t/crack/001.png")]
