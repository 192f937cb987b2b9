"""The ADClick-Seg threshold rule: training-time images only, widest margin, fail-safe fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adinspect.train.seg_calibration import seg_threshold


def test_middle_of_the_gap_between_goods_and_pseudo_labelled_defects() -> None:
    good = np.array([0.01, 0.02, 0.03, 0.02])
    g = max(good.mean() + 3 * good.std(), good.max())
    cal = seg_threshold(good, list("abcd"), np.array([0.9, 0.7, 0.95]), ["x", "y", "z"], 3.0)
    assert cal.threshold == pytest.approx((g + 0.7) / 2)
    assert cal.rule.startswith("(g + d) / 2") and "3 pseudo-labelled" in cal.rule
    assert cal.pseudo_labelled == ["x", "y", "z"] and cal.holdout == list("abcd")


def test_without_a_gap_or_without_labels_no_held_out_good_is_rejected() -> None:
    good = np.array([0.1, 0.6, 0.2])
    g = max(good.mean() + 3 * good.std(), 0.6)
    overlap = seg_threshold(good, ["a", "b", "c"], np.array([0.5, 0.99]), ["x", "y"], 3.0)
    assert overlap.threshold == pytest.approx(g) and "<= g" in overlap.rule
    alone = seg_threshold(good, ["a", "b", "c"], np.zeros(0), [], 3.0)
    assert alone.threshold == pytest.approx(g) and alone.rule.startswith("g = max(mean + 3*std, max)")


def test_floor_only_raises_and_no_goods_is_an_error() -> None:
    cal = seg_threshold(np.array([0.01, 0.02]), ["a", "b"], np.array([0.3]), ["x"], 3.0, floor=0.5)
    assert cal.threshold == 0.5 and cal.rule.startswith("floor 0.5")
    with pytest.raises(ValueError, match="no held-out good images"):
        seg_threshold(np.zeros(0), [], np.array([0.9]), ["x"], 3.0)


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
