"""evaluate-seg's defect-type report: accuracy, per type, confusion matrix, chance level."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adinspect.data.datasets import Sample
from adinspect.train.seg_eval import _counts, type_report


def _sample(defect: str, n: int) -> Sample:
    return Sample(Path(f"test/{defect}/{n:03d}.png"), int(defect != "good"), defect, None)


def test_confusion_matrix_rows_are_the_folder_types() -> None:
    types = ["crack", "spot"]
    samples = [
        _sample("crack", 0),
        _sample("crack", 1),
        _sample("crack", 2),
        _sample("spot", 0),
        _sample("good", 0),
    ]
    winners = [0, 0, 1, 1, 0]
    scores = [
        np.array([0.9, 0.1]),
        np.array([0.8, 0.2]),
        np.array([0.3, 0.6]),
        np.array([0.2, 0.7]),
        np.zeros(2),
    ]
    out = type_report(samples, winners, scores, types)
    assert out["defect_type_confusion"] == {"types": types, "matrix": [[2, 1], [0, 1]]}
    assert out["defect_type_accuracy"] == 0.75 and out["defect_type_chance"] == 0.75
    assert out["defect_type_per_type"] == {"crack": 2 / 3, "spot": 1.0}
    assert [r["image"] for r in out["type_scores"]] == [str(s.path) for s in samples[:4]]
    assert out["type_scores"][2] == {
        "image": "test/crack/002.png",
        "defect_type": "crack",
        "crack": 0.3,
        "spot": 0.6,
    }


def test_unknown_folder_types_give_no_accuracy() -> None:
    out = type_report([_sample("dent", 0)], [0], [np.array([0.5])], ["crack"])
    assert out == {"defect_type_accuracy": None}


def test_verdict_counts_fail_closed() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, np.nan, 0.2, 0.9])
    counts = _counts(scores, 0.5, labels)  # the NaN good part is rejected, not passed
    assert counts == {"good_rejected": 1, "n_good": 2, "defective_passed": 1, "n_defective": 2}
    assert _counts(scores, float("nan"), labels)["defective_passed"] == 0  # a broken threshold passes nothing
    assert _counts(scores, float("nan"), labels)["good_rejected"] == 2
