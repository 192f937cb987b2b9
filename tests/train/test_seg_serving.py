"""Whether ADClick-Seg takes over a package's verdict: the rule on the labelled defects, and a package
whose seg model is not served judging, mapping and outlining as it did before training."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from adinspect.train.seg_serving import RULE, decide_serving, serving_line


def test_without_false_reject_counts_seg_is_served_unless_it_passes_more_labelled_defects() -> None:
    scores = np.array([5.0, 9.0, 12.0, 20.0])  # at threshold 10: two of four pass
    kept = decide_serving(3, scores, 10.0, "auto")  # a package fitted before the bound was recorded
    assert kept == {
        "how": "auto", "rule": RULE, "served": False, "n_labelled": 4, "seg_passed": 3,
        "training_free_passed": 2, "training_free_threshold": 10.0,
    }  # fmt: skip
    assert decide_serving(2, scores, 10.0, "auto")["served"]  # a tie serves seg
    assert decide_serving(0, scores, 10.0, "auto")["served"]
    forced = decide_serving(4, scores, 10.0, "seg")
    assert forced["served"] and forced["rule"] == "set by the user" and forced["training_free_passed"] == 2


def test_the_verdict_with_the_smaller_worst_case_is_served() -> None:
    from scipy.stats import beta

    def bound(k: int, n: int) -> float:  # one-sided 95 % Clopper-Pearson, written out independently
        return 1.0 if k == n else float(beta.ppf(0.95, k + 1, n - k))

    # metal_plate's evidence: seg passes none of 36 labelled defects, the training-free verdict
    # one; seg's threshold rests on 16 held-out good images, the training-free one on 54
    scores = np.array([1.0] + [99.0] * 35)
    metal = decide_serving(0, scores, 10.0, "auto", seg_false_reject=(0, 16), free_false_reject=(0, 54))
    assert metal["seg_worst_case"] == pytest.approx(bound(0, 36) + bound(0, 16))
    assert metal["training_free_worst_case"] == pytest.approx(bound(1, 36) + bound(0, 54))
    assert metal["seg_false_reject_upper_95"] == pytest.approx(bound(0, 16))
    assert not metal["served"]  # one labelled defect does not outweigh a threshold from 16 images
    line = serving_line(metal)
    assert line.startswith("keeps the training-free verdict (of 36 labelled defects seg passes 0")
    assert "false-reject bound seg 17.1%, training-free 5.4%" in line and "--serve seg" in line
    # with as many held-out good images behind seg's threshold, catching one more defect wins
    assert decide_serving(0, scores, 10.0, "auto", (0, 54), (0, 54))["served"]
    # equal worst cases serve seg; as many misses on a weaker threshold keep the training-free one
    assert decide_serving(1, scores, 10.0, "auto", (0, 54), (0, 54))["served"]
    assert not decide_serving(1, scores, 10.0, "auto", (0, 53), (0, 54))["served"]
    # many more labelled defects caught outweigh a weaker threshold (KolektorSDD-like counts)
    cracks = np.array([1.0] * 16 + [99.0] * 9)
    assert decide_serving(10, cracks, 10.0, "auto", (0, 69), (2, 230))["served"]
    assert not decide_serving(17, cracks, 10.0, "auto", (0, 230), (2, 230))["served"]
    assert decide_serving(17, cracks, 10.0, "seg", (0, 16), (0, 230))["served"]  # set by the user


def test_a_broken_training_free_score_or_threshold_passes_nothing() -> None:
    nan_scores = np.array([np.nan, 1.0, np.inf])
    assert decide_serving(0, nan_scores, 10.0, "auto")["training_free_passed"] == 1
    broken = decide_serving(1, np.array([1.0, 2.0]), float("nan"), "auto")
    assert broken["training_free_passed"] == 0 and not broken["served"]


def test_without_labelled_defects_seg_is_served_and_a_bad_choice_is_refused() -> None:
    for none in (None, np.zeros(0)):
        decision = decide_serving(0, none, 10.0, "auto")
        assert decision["served"] and decision["n_labelled"] == 0
    assert serving_line(decide_serving(0, None, 1.0, "auto")).startswith("serves seg (no labelled")
    with pytest.raises(ValueError, match="serve 'maybe'"):
        decide_serving(0, None, 1.0, "maybe")


def test_the_line_says_what_is_served_and_why() -> None:
    kept = serving_line(decide_serving(3, np.array([5.0, 9.0, 12.0, 20.0]), 10.0, "auto"))
    assert kept.startswith("keeps the training-free verdict (of 4 labelled defects seg passes 3, the")
    assert "--serve seg" in kept
    served = serving_line(decide_serving(1, np.array([5.0, 20.0]), 10.0, "auto"))
    assert served.startswith("serves seg (of 2")


def test_an_unserved_seg_leaves_the_package_judging_as_before(seg_package: Path, tmp_path: Path) -> None:
    from adinspect.package import ModelPackage
    from adinspect.runtime.inspector import Inspector
    from adinspect.train.common import register_files

    model = Path(shutil.copytree(seg_package, tmp_path / "widget"))
    served = Inspector(model, threads=1)
    assert served.seg is not None
    register_files(model, [], unserved=["seg"])
    package = ModelPackage.load(model)  # still verifies: seg.onnx stays, checksummed, not served
    assert "seg" not in package.manifest.optional_models and "seg.onnx" in package.manifest.files
    inspector = Inspector(model, threads=1)
    assert inspector.seg is None and inspector.threshold == package.threshold
    result = inspector.inspect(np.full((96, 96, 3), 128, np.uint8)).result
    assert result.threshold == package.threshold and result.defect_type is None
    register_files(model, [], optional_models=["seg"])  # and served again when listed
    assert Inspector(model, threads=1).seg is not None
