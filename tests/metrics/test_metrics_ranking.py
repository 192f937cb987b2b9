"""AUROC, AP, F1-max and their curves against scikit-learn, with ties, edge cases and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from adinspect.metrics import (
    auroc,
    average_precision,
    f1_max,
    pixel_ap,
    pixel_auroc,
    pixel_f1_max,
    pr_curve,
    roc_curve,
)


def sk_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(f1.max())


def random_case(seed: int, n: int, levels: int | None, positive_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores with many ties when `levels` is small; labels with both classes."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < positive_rate
    labels[:2] = [True, False]
    scores = rng.normal(size=n) + labels * rng.uniform(0, 2)
    if levels is not None:
        scores = np.round(scores * levels / 4) / levels
    return scores.astype(np.float32), labels


CASES = [
    (0, 2, None, 0.5),
    (1, 7, 2, 0.5),
    (2, 50, 3, 0.2),
    (3, 200, 10, 0.5),
    (4, 1000, None, 0.05),
    (5, 5000, 20, 0.3),
    (6, 100_000, 1000, 0.02),  # pixel-like: few positives, many ties
]


@pytest.mark.parametrize(("seed", "n", "levels", "rate"), CASES)
def test_values_equal_sklearn(seed: int, n: int, levels: int | None, rate: float) -> None:
    scores, labels = random_case(seed, n, levels, rate)
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )
    assert f1_max(scores, labels) == pytest.approx(sk_f1_max(scores, labels), abs=1e-12)


@pytest.mark.parametrize(("seed", "n", "levels", "rate"), CASES[:6])
def test_curves_equal_sklearn(seed: int, n: int, levels: int | None, rate: float) -> None:
    scores, labels = random_case(seed, n, levels, rate)
    fpr, tpr = roc_curve(scores, labels)
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-15)
    recall, precision = pr_curve(scores, labels)
    sk_precision, sk_recall, _ = precision_recall_curve(labels, scores)
    np.testing.assert_allclose(recall, sk_recall[::-1], atol=1e-15)
    np.testing.assert_allclose(precision, sk_precision[::-1], atol=1e-15)


def test_hand_computed_example() -> None:
    # Order by score: 0.8(+) 0.4(-) 0.35(+) 0.1(-). Positive/negative pairs ranked correctly: 3 of 4.
    # AP = recall steps x precision: 0.5 x 1/1 + 0.5 x 2/3 = 5/6.
    # F1 at 0.8: P=1, R=1/2 -> 2/3; at 0.35: P=2/3, R=1 -> 0.8; at 0.1: 2x2/(2+2+2) = 2/3. Max 0.8.
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    assert auroc(scores, labels) == 0.75
    assert average_precision(scores, labels) == pytest.approx(5 / 6, abs=1e-15)
    assert f1_max(scores, labels) == pytest.approx(0.8, abs=1e-15)


def test_ties_count_as_one_threshold() -> None:
    # All scores equal: a single threshold predicting everything, ROC is the diagonal.
    labels = np.array([1, 0, 0, 1, 0])
    scores = np.full(5, 3.0)
    assert auroc(scores, labels) == 0.5
    assert average_precision(scores, labels) == pytest.approx(2 / 5)  # precision of the only step
    assert f1_max(scores, labels) == pytest.approx(2 * 2 / (5 + 2))  # 2 TP / (TP + FP + P)


def test_perfect_and_inverted_ranking() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert (auroc(scores, labels), average_precision(scores, labels), f1_max(scores, labels)) == (
        1.0,
        1.0,
        1.0,
    )
    assert auroc(-scores, labels) == 0.0


def test_accepts_bool_int_and_float_labels_and_integer_scores() -> None:
    scores = np.array([3, 1, 2, 2, 0])
    expected = roc_auc_score([1, 0, 1, 0, 0], scores)
    for labels in ([True, False, True, False, False], [1, 0, 1, 0, 0], [1.0, 0.0, 1.0, 0.0, 0.0]):
        assert auroc(scores, np.array(labels)) == pytest.approx(expected)
    assert auroc(np.array([True, False, True]), np.array([1, 0, 0])) == roc_auc_score([1, 0, 0], [1, 0, 1])


def test_pixel_metrics_equal_sklearn_on_flattened_maps() -> None:
    rng = np.random.default_rng(7)
    masks = np.zeros((3, 40, 50), dtype=bool)
    masks[0, 5:15, 10:30] = True
    masks[2, 30:38, 0:6] = True
    maps = (np.round(rng.random(masks.shape) * 30) / 30 + 0.4 * masks).astype(np.float32)  # many ties
    flat_maps, flat_masks = maps.ravel(), masks.ravel()
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(flat_masks, flat_maps), abs=1e-12)
    assert pixel_ap(maps, masks) == pytest.approx(average_precision_score(flat_masks, flat_maps), abs=1e-12)
    assert pixel_f1_max(maps, masks) == pytest.approx(sk_f1_max(flat_maps, flat_masks), abs=1e-12)


@pytest.mark.parametrize(
    ("scores", "labels", "error", "message"),
    [
        (np.zeros(3), np.array([0, 1]), ValueError, r"scores shape \(3,\) and labels shape \(2,\)"),
        (np.zeros((2, 2)), np.array([[0, 1], [1, 0]]), ValueError, r"scores shape \(2, 2\).*expected \(N,\)"),
        (
            np.array([0.1, np.nan, 0.3]),
            np.array([0, 1, 1]),
            ValueError,
            "scores: expected finite values, got 1 NaN",
        ),
        (np.array([0.1, np.inf]), np.array([0, 1]), ValueError, "1 infinite"),
        (
            np.array([0.1, 0.2]),
            np.array([1, 1]),
            ValueError,
            "labels: expected both classes.*only 2 positives",
        ),
        (np.array([0.1, 0.2]), np.array([0, 0]), ValueError, "only 2 negatives"),
        (np.array([0.1, 0.2]), np.array([0, 2]), ValueError, r"binary labels .* got values \[2\]"),
        (np.array(["a", "b"]), np.array([0, 1]), TypeError, "scores: expected real-valued"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(
    scores: np.ndarray, labels: np.ndarray, error: type[Exception], message: str
) -> None:
    for fn in (auroc, average_precision, f1_max, roc_curve, pr_curve):
        with pytest.raises(error, match=message):
            fn(scores, labels)


def test_pixel_metrics_validate_shapes_and_nan() -> None:
    maps = np.zeros((2, 4, 4))
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 0, 0] = True
    with pytest.raises(ValueError, match=r"maps shape \(2, 4, 4\) and masks shape \(2, 4, 5\)"):
        pixel_auroc(maps, np.zeros((2, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match=r"expected \(N, H, W\)"):
        pixel_ap(maps[0], masks[0])
    bad = maps.copy()
    bad[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="maps: expected finite values, got 1 NaN"):
        pixel_f1_max(bad, masks)
    with pytest.raises(ValueError, match="masks: expected both classes"):
        pixel_auroc(maps, np.zeros_like(masks))
