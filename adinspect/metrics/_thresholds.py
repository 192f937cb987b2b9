"""Counting at every distinct score threshold with one sort: the core of the ranking and PRO curves.

Sorting a float32 array is several times faster than arg-sorting it, so the scores are sorted once,
grouped into distinct values, and the (usually much fewer) positives are located in their groups
by a binary search. Everything else is cumulative sums.
"""

from __future__ import annotations

import numpy as np


def distinct_scores(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of `scores` and how many scores are >= each.

    Args:
        scores: (n,) real, finite.

    Returns:
        values (K,) ascending distinct scores, and n_at_or_above (K,) int64.
    """
    ordered = np.sort(scores, kind="quicksort")
    is_start = np.empty(ordered.size, dtype=bool)
    is_start[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=is_start[1:])
    starts = np.flatnonzero(is_start)
    return ordered[starts], ordered.size - starts


def sum_at_or_above(values: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """For each distinct value, the (weighted) count of `scores` that are >= it.

    The scores are sorted first: a binary search with sorted keys is ~10x faster (cache-friendly).

    Args:
        values: (K,) ascending distinct scores, as from `distinct_scores`; must contain every score.
        scores: (m,) a subset of the scores (e.g. the positives).
        weights: (m,) optional per-score weights; plain counts (int64) when None.

    Returns:
        (K,) sums along the ascending values (so non-increasing).
    """
    if weights is None:
        index = np.searchsorted(values, np.sort(scores), side="left")
    else:
        order = np.argsort(scores)
        index = np.searchsorted(values, scores[order], side="left")
        weights = weights[order]
    per_value = np.bincount(index, weights=weights, minlength=values.size)
    return np.cumsum(per_value[::-1])[::-1]
