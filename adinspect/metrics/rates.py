"""A threshold for a target false-reject rate, and how sure a count of rejects or misses makes us.

A line sets its threshold for a false-call rate α; the good images' scores decide where that is.
A rate measured on n images carries an uncertainty that is large for small n: the Clopper–Pearson
interval (exact binomial, never shorter than it should be) states it. Pure numpy/scipy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta


def threshold_for_rate(scores: np.ndarray, target: float) -> float:
    """The (⌊target·N⌋ + 1)-th largest of N good scores (N,).

    An image fails when its score is above the threshold, so at most ⌊target·N⌋ of these scores
    (those strictly larger) are rejected: their false-reject rate is at most `target`.
    """
    scores = np.asarray(scores, np.float64).ravel()
    if scores.size == 0:
        raise ValueError("no good scores to set a threshold from")
    if not np.all(np.isfinite(scores)):
        raise ValueError("good scores must be finite to set a threshold from them")
    if not 0.0 < target < 0.5:
        raise ValueError(f"target false-reject rate must be in (0, 0.5), got {target!r}")
    rank = math.floor(target * scores.size)  # 0-based: the largest is rank 0
    return float(np.sort(scores)[::-1][rank])


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided exact binomial interval (lower, upper) of a rate from k events in n trials."""
    _check_counts(k, n, confidence)
    tail = (1.0 - confidence) / 2
    lower = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    upper = 1.0 if k == n else float(beta.ppf(1.0 - tail, k + 1, n - k))
    return lower, upper


def upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper–Pearson) upper bound of a rate from k events in n trials: the
    largest rate under which seeing k or fewer events has probability at least 1 − confidence."""
    _check_counts(k, n, confidence)
    return 1.0 if k == n else float(beta.ppf(confidence, k + 1, n - k))


def images_to_show(rate: float, confidence: float = 0.95) -> int:
    """The fewest images that, with no event among them, bound the rate at or below `rate`
    (one-sided, at `confidence`): the smallest n with (1 − rate)^n ≤ 1 − confidence."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    return math.ceil(math.log(1.0 - confidence) / math.log(1.0 - rate))


def _check_counts(k: int, n: int, confidence: float) -> None:
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
