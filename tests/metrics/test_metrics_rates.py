"""The threshold for a target false-reject rate and the exact binomial bounds that qualify it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from adinspect.metrics.rates import clopper_pearson, images_to_show, threshold_for_rate, upper_bound


def test_threshold_is_the_floor_alpha_n_plus_first_largest() -> None:
    scores = np.arange(1.0, 101.0)  # 1 .. 100, shuffled below
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(scores)
    assert threshold_for_rate(shuffled, 0.01) == 99.0  # floor(1) + 1 = 2nd largest: one rejected
    assert threshold_for_rate(shuffled, 0.05) == 95.0  # 6th largest: five above it
    assert threshold_for_rate(shuffled, 0.0099) == 100.0  # floor(0.99) + 1 = the max: none rejected
    assert threshold_for_rate(np.array([3.0, 1.0, 2.0]), 0.3) == 3.0  # floor(0.9) = 0: the max
    for target in (0.01, 0.02, 0.1, 0.25, 0.49):
        t = threshold_for_rate(shuffled, target)
        assert (shuffled > t).mean() <= target  # the rule never rejects more than the target
        assert (shuffled >= t).mean() > target  # and is the lowest such score


def test_threshold_refuses_what_it_cannot_use() -> None:
    with pytest.raises(ValueError, match=r"\(0, 0.5\)"):
        threshold_for_rate(np.ones(10), 0.5)
    with pytest.raises(ValueError, match=r"\(0, 0.5\)"):
        threshold_for_rate(np.ones(10), 0.0)
    with pytest.raises(ValueError, match="no good scores"):
        threshold_for_rate(np.zeros(0), 0.01)
    with pytest.raises(ValueError, match="finite"):
        threshold_for_rate(np.array([1.0, np.nan]), 0.01)


@pytest.mark.parametrize(("k", "n"), [(0, 54), (1, 54), (3, 209), (0, 1), (5, 5), (12, 230)])
def test_clopper_pearson_equals_scipys_exact_interval(k: int, n: int) -> None:
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    low, high = clopper_pearson(k, n)
    assert low == pytest.approx(ref.low, abs=1e-9) and high == pytest.approx(ref.high, abs=1e-9)
    one_sided = binomtest(k, n, alternative="less").proportion_ci(confidence_level=0.95, method="exact")
    assert upper_bound(k, n) == pytest.approx(one_sided.high, abs=1e-9)


def test_no_false_reject_among_n_bounds_the_rate_by_the_rule_of_three() -> None:
    assert upper_bound(0, 54) == pytest.approx(1 - 0.05 ** (1 / 54))  # 5.4 %: 54 cannot show 1 %
    assert upper_bound(0, 54) > 0.05
    assert images_to_show(0.01) == 299  # (0.99)^299 < 0.05 <= (0.99)^298
    assert upper_bound(0, 299) <= 0.01 < upper_bound(0, 298)
    with pytest.raises(ValueError):
        upper_bound(3, 2)
