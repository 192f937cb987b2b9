"""Per-region overlap (PRO) curve and AUPRO, the MVTec AD protocol (Bergmann et al., IJCV 2021).

At threshold t, a pixel is predicted anomalous when its score is >= t. PRO(t) is the overlap
|predicted ∩ C| / |C| averaged over every connected component C of the ground truth of every image;
FPR(t) is the fraction of all defect-free pixels of all images predicted anomalous. Components are
found per image with 8-connectivity (`scipy.ndimage.label` with a full 3x3 structure), as in the
official MVTec evaluation code. Every distinct score is a threshold. AUPRO integrates PRO over FPR
with the trapezoid rule up to `fpr_limit`, the curve linearly interpolated at the limit, and
divides by the limit.

Exact and fast: a defect pixel adds 1 / (|C| x number of components) to PRO at every threshold at
or below its score, so one sort of the scores and cumulative sums give the whole curve.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from adinspect.metrics._thresholds import distinct_scores, sum_at_or_above
from adinspect.metrics._validation import check_maps_masks

# 8-connectivity inside each image, no connection between images: (1, 3, 3) ones padded to (3, 3, 3).
_PER_IMAGE_8_CONNECTED = np.zeros((3, 3, 3), dtype=bool)
_PER_IMAGE_8_CONNECTED[1] = True


def label_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of every ground-truth mask, 8-connectivity, numbered across images.

    Args:
        masks: (N, H, W) bool.

    Returns:
        labels (N, H, W) int32 (0 = background, 1..R = components) and R.
    """
    labels, n_regions = ndimage.label(masks, structure=_PER_IMAGE_8_CONNECTED)
    return labels, int(n_regions)


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FPR and mean per-region overlap at every distinct score, highest threshold first.

    Args:
        maps: (N, H, W) real anomaly maps.
        masks: (N, H, W) binary ground truth; needs defect and defect-free pixels.

    Returns:
        fpr (K+1,) and pro (K+1,), both non-decreasing from (0, 0) to (1, 1).
    """
    maps, masks = check_maps_masks(maps, masks)
    regions, n_regions = label_regions(masks)
    scores, positive = maps.ravel(), masks.ravel()
    region_of_positive = regions.ravel()[positive]
    weights = 1.0 / np.bincount(region_of_positive)[region_of_positive]

    values, n_at_or_above = distinct_scores(scores)
    tps = sum_at_or_above(values, scores[positive])
    overlap = sum_at_or_above(values, scores[positive], weights) / n_regions
    n_neg = positive.size - int(tps[0])

    fpr = np.concatenate([[0.0], ((n_at_or_above - tps) / n_neg)[::-1]])
    pro = np.concatenate([[0.0], np.minimum(overlap, 1.0)[::-1]])
    return fpr, pro


def area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoidal area under y(x) for x in [x[0], x_max], y interpolated linearly at x_max.

    Args:
        x: (K,) non-decreasing, x[0] <= x_max <= x[-1].
        y: (K,) values at x.
        x_max: upper integration limit.

    Returns:
        The area (not normalised).
    """
    if not x[0] <= x_max <= x[-1]:
        raise ValueError(f"x_max: expected within [{x[0]}, {x[-1]}], got {x_max}")
    k = int(np.searchsorted(x, x_max, side="right"))  # x[:k] <= x_max < x[k:]
    xs, ys = x[:k], y[:k]
    if xs[-1] < x_max:
        y_at = y[k - 1] + (y[k] - y[k - 1]) * (x_max - x[k - 1]) / (x[k] - x[k - 1])
        xs, ys = np.append(xs, x_max), np.append(ys, y_at)
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1])) / 2.0)


def aupro_from_curve(curve: tuple[np.ndarray, np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under a `pro_curve` (fpr (K+1,), pro (K+1,)) up to `fpr_limit` in (0, 1]."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit: expected a value in (0, 1], got {fpr_limit!r}")
    fpr, pro = curve
    return area_up_to(fpr, pro, fpr_limit) / fpr_limit


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to `fpr_limit` (MVTec AD protocol).

    Args:
        maps: (N, H, W) real anomaly maps.
        masks: (N, H, W) binary ground truth; needs defect and defect-free pixels.
        fpr_limit: integration limit in (0, 1]; the paper and MVTec use 0.3.

    Returns:
        AUPRO in [0, 1]: area up to the limit divided by the limit.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit: expected a value in (0, 1], got {fpr_limit!r}")
    return aupro_from_curve(pro_curve(maps, masks), fpr_limit)
