"""Threshold-free ranking metrics: AUROC, average precision, F1-max and their curves.

Values equal scikit-learn's `roc_auc_score`, `average_precision_score` (step-wise, no interpolation)
and the maximum F1 over `precision_recall_curve`: every distinct score is one threshold, tied scores
move together, a sample is predicted anomalous when its score is >= the threshold. One sort,
O(n log n), no Python loop over samples, so the pixel-level variants run on 10^7 pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from adinspect.metrics._thresholds import distinct_scores, sum_at_or_above
from adinspect.metrics._validation import check_maps_masks, check_scores_labels


class BinaryCurve(NamedTuple):
    """Confusion counts at every distinct threshold, highest threshold first."""

    thresholds: np.ndarray  # (K,) distinct scores, descending
    tps: np.ndarray  # (K,) int64, positives with score >= threshold
    fps: np.ndarray  # (K,) int64, negatives with score >= threshold

    @property
    def n_pos(self) -> int:
        return int(self.tps[-1])

    @property
    def n_neg(self) -> int:
        return int(self.fps[-1])


def binary_curve(scores: np.ndarray, labels: np.ndarray) -> BinaryCurve:
    """True and false positives at every distinct score (sklearn's `_binary_clf_curve`).

    Args:
        scores: (N,) real, higher = more anomalous.
        labels: (N,) binary, True/1 = anomalous; both classes must occur.

    Returns:
        The `BinaryCurve`, K = number of distinct scores.
    """
    scores, labels = check_scores_labels(scores, labels)
    values, n_at_or_above = distinct_scores(scores)
    tps = sum_at_or_above(values, scores[labels])
    return BinaryCurve(values[::-1], tps[::-1], (n_at_or_above - tps)[::-1])


def _with_origin(counts: np.ndarray) -> np.ndarray:
    """(K,) counts -> (K+1,) with the empty prediction (threshold above every score) first."""
    return np.concatenate([np.zeros(1, dtype=counts.dtype), counts])


def auroc_from_curve(curve: BinaryCurve) -> float:
    """Trapezoidal area under the ROC curve, exact in integers up to the final division."""
    tps, fps = _with_origin(curve.tps), _with_origin(curve.fps)
    twice_area = int(np.sum(np.diff(fps) * (tps[1:] + tps[:-1])))
    return twice_area / (2 * curve.n_pos * curve.n_neg)


def ap_from_curve(curve: BinaryCurve) -> float:
    """Step-wise average precision: sum over thresholds of (recall step) x precision."""
    precision = curve.tps / (curve.tps + curve.fps)
    recall_step = np.diff(_with_origin(curve.tps))
    return float(np.sum(recall_step * precision) / curve.n_pos)


def f1_max_from_curve(curve: BinaryCurve) -> float:
    """Best F1 over thresholds; F1 = 2 TP / (TP + FP + P) = 2 precision recall / (precision + recall)."""
    return float(np.max(2.0 * curve.tps / (curve.tps + curve.fps + curve.n_pos)))


def roc_from_curve(curve: BinaryCurve) -> tuple[np.ndarray, np.ndarray]:
    """fpr (K+1,) and tpr (K+1,) from (0, 0) to (1, 1), one point per distinct score."""
    return _with_origin(curve.fps) / curve.n_neg, _with_origin(curve.tps) / curve.n_pos


def pr_from_curve(curve: BinaryCurve) -> tuple[np.ndarray, np.ndarray]:
    """recall (K+1,) non-decreasing and precision (K+1,), starting at (recall 0, precision 1)."""
    recall = _with_origin(curve.tps) / curve.n_pos
    precision = np.concatenate([[1.0], curve.tps / (curve.tps + curve.fps)])
    return recall, precision


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve from (0, 0) to (1, 1), one point per distinct score (no points dropped).

    Args:
        scores: (N,) real. labels: (N,) binary, both classes present.

    Returns:
        fpr (K+1,) and tpr (K+1,), non-decreasing; sklearn's `roc_curve(drop_intermediate=False)`.
    """
    return roc_from_curve(binary_curve(scores, labels))


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall curve, highest threshold first, starting at (recall 0, precision 1).

    Args:
        scores: (N,) real. labels: (N,) binary, both classes present.

    Returns:
        recall (K+1,) non-decreasing and precision (K+1,): sklearn's `precision_recall_curve`
        reversed.
    """
    return pr_from_curve(binary_curve(scores, labels))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve. scores (N,), labels (N,) binary; equals sklearn's `roc_auc_score`."""
    return auroc_from_curve(binary_curve(scores, labels))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision. scores (N,), labels (N,); equals sklearn's `average_precision_score`."""
    return ap_from_curve(binary_curve(scores, labels))


def f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    """Maximum F1 over all thresholds. scores (N,), labels (N,) binary."""
    return f1_max_from_curve(binary_curve(scores, labels))


def pixel_curve(maps: np.ndarray, masks: np.ndarray) -> BinaryCurve:
    """`binary_curve` over all pixels of maps (N, H, W) against masks (N, H, W)."""
    maps, masks = check_maps_masks(maps, masks)
    return binary_curve(maps.ravel(), masks.ravel())


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """AUROC over all pixels. maps (N, H, W) real, masks (N, H, W) binary."""
    return auroc_from_curve(pixel_curve(maps, masks))


def pixel_ap(maps: np.ndarray, masks: np.ndarray) -> float:
    """Average precision over all pixels. maps (N, H, W) real, masks (N, H, W) binary."""
    return ap_from_curve(pixel_curve(maps, masks))


def pixel_f1_max(maps: np.ndarray, masks: np.ndarray) -> float:
    """Maximum F1 over all pixels and thresholds. maps (N, H, W) real, masks (N, H, W) binary."""
    return f1_max_from_curve(pixel_curve(maps, masks))
