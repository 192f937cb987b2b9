"""The ADClick-Seg threshold rule: held-out good images only, a target false-reject rate, the
stated uncertainty and the expected miss rate from the pseudo-labelled defects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adinspect.train.seg_calibration import seg_threshold


def test_threshold_is_set_for_the_target_on_held_out_goods_not_moved_by_defects() -> None:
    good = np.linspace(0.01, 0.5, 100)
    defective = np.array([0.9, 0.45, 0.95, 0.3])
    cal = seg_threshold(good, [f"g{i}" for i in range(100)], defective, ["w", "x", "y", "z"], 0.05)
    assert cal.threshold == pytest.approx(np.sort(good)[::-1][5])  # floor(5) + 1 = 6th largest
    assert cal.false_rejects == 5 and cal.false_reject_rate == 0.05
    assert "6th largest of 100 held-out good" in cal.rule
    assert cal.pseudo_passed == 2  # 0.3 and 0.45 score under the threshold
    assert cal.expected_miss_rate == 0.5
    assert cal.expected_miss_low_95 < 0.5 < cal.expected_miss_high_95
    assert cal.pseudo_labelled == ["w", "x", "y", "z"] and cal.holdout[0] == "g0"


def test_few_goods_say_plainly_they_cannot_show_the_target() -> None:
    good = np.array([0.1, 0.6, 0.2])
    alone = seg_threshold(good, ["a", "b", "c"], np.zeros(0), [], 0.01)
    assert alone.threshold == pytest.approx(0.6)  # floor(0.03) + 1: the max, none rejected
    assert alone.false_reject_upper_95 == pytest.approx(1 - 0.05 ** (1 / 3))
    assert "3 held-out good images cannot show 1.0%" in alone.statement
    assert alone.expected_miss_rate is None


def test_floor_only_raises_and_no_goods_is_an_error() -> None:
    cal = seg_threshold(np.array([0.01, 0.02]), ["a", "b"], np.array([0.3]), ["x"], 0.01, floor=0.5)
    assert cal.threshold == 0.5 and cal.rule.startswith("floor 0.5") and cal.pseudo_passed == 1
    with pytest.raises(ValueError, match="no held-out good images"):
        seg_threshold(np.zeros(0), [], np.array([0.9]), ["x"], 0.01)


def test_a_type_is_named_only_when_the_pseudo_labelled_images_show_it_clearly() -> None:
    from adinspect.train.seg_calibration import defect_type_claim

    labelled = np.array([0, 0, 0, 0, 1, 1, 2, 2])  # chance: the commonest type's share, 0.5
    assert defect_type_claim(labelled, labelled, 3)["claimed"]  # 1.0 >= 0.75
    bottle_like = np.array([2, 2, 2, 2, 2, 2, 0, 2])  # 0.125: below chance, the scores cannot tell
    claim = defect_type_claim(bottle_like, labelled, 3)
    assert not claim["claimed"] and claim["accuracy"] == 0.125 and claim["chance"] == 0.5
    five_of_eight = np.array([0, 0, 0, 1, 1, 1, 0, 0])  # 0.625 < 0.75: above chance, not clearly
    assert not defect_type_claim(five_of_eight, labelled, 3)["claimed"]
    assert defect_type_claim(np.zeros(0, int), np.zeros(0, int), 1)["claimed"]  # one type: nothing to tell
    assert not defect_type_claim(np.zeros(0, int), np.zeros(0, int), 3)["claimed"]  # never saw a real type
    assert not defect_type_claim(np.array([1, 1]), np.array([1, 1]), 3)["claimed"]  # one type labelled


def test_seg_info_names_no_type_when_training_said_so(tmp_path: Path) -> None:
    from adinspect.runtime.seg import SegInfo

    named = SegInfo(tmp_path / "seg.onnx", 0.5, ("crack", "spot"))
    assert named.type_name(1) == "spot"
    silent = SegInfo(tmp_path / "seg.onnx", 0.5, ("crack", "spot"), names_types=False)
    assert silent.type_name(1) is None
    with pytest.raises(ValueError, match="out of range"):
        silent.type_name(2)
