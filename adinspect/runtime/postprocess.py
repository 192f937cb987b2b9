"""Anomaly map → original-size map, verdict and defect regions (numpy + opencv, no torch).

Shared by the in-process inspector and Triton's `postprocess` model. The pixel threshold for
regions is the image threshold: the score is the maximum of the map, so a failing image always
has at least one region and a passing one has none (with score = 'max').
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from adinspect.results import Region, Verdict


def resize_map(anomaly_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H_in, W_in) float32 map → (height, width) float32, bilinear."""
    if anomaly_map.shape == (height, width):
        return anomaly_map.astype(np.float32, copy=False)
    return cv2.resize(anomaly_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def verdict_of(score: float, threshold: float, anomaly_map: np.ndarray | None = None) -> tuple[Verdict, str]:
    """Fail closed (DESIGN.md §7): `pass` only for a finite score at or under a finite threshold.

    Returns:
        the verdict and its reason ("" for a pass). A NaN compares False with everything, so the
        test is written as "passes only if", never as "fails if score > threshold".
    """
    if not math.isfinite(threshold):
        return "fail", f"threshold is not finite ({threshold}): the model package or repository is broken"
    if not math.isfinite(score):
        return "fail", f"score is not finite ({score}): the model produced a broken output"
    if anomaly_map is not None and not np.isfinite(anomaly_map).all():
        bad = int(np.size(anomaly_map) - np.count_nonzero(np.isfinite(anomaly_map)))
        return "fail", f"anomaly map has {bad} non-finite values: the model produced a broken output"
    if score <= threshold:
        return "pass", ""
    return "fail", f"score {score:.4g} above threshold {threshold:.4g}"


def passes(scores: np.ndarray, threshold: float) -> np.ndarray:
    """`verdict_of`'s rule over many scores at once: True only for a finite score at or under a
    finite threshold (NaN and inf never pass)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.isfinite(scores) & (scores <= threshold) & bool(np.isfinite(threshold))


def find_regions(
    anomaly_map: np.ndarray, threshold: float, min_area: int = 1, max_regions: int = 32
) -> list[Region]:
    """Connected components (8-connectivity) of map > threshold, largest peak first.

    Args:
        anomaly_map: (H, W) float32 at the original image size.
        threshold: the calibrated image threshold.
        min_area: components smaller than this (pixels) are dropped.
        max_regions: keep at most this many, by peak score.
    """
    above = (anomaly_map > threshold).astype(np.uint8)
    if not above.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    regions = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        peak = float(anomaly_map[y : y + h, x : x + w][labels[y : y + h, x : x + w] == i].max())
        regions.append(Region(x=x, y=y, width=w, height=h, area=area, peak_score=peak))
    regions.sort(key=lambda r: -r.peak_score)
    return regions[:max_regions]
