"""The coverage floor: a positive click is always inside its mask, whatever the network says."""

from __future__ import annotations

import numpy as np

from adinspect.runtime.clicks import PRED_THRESHOLD, Click
from adinspect.runtime.coverage import FLOOR, MAX_FRACTION, click_region, cover_positive_clicks

S, R = 64, 2.0


def _blob(cy: int, cx: int, sigma: float, peak: float) -> np.ndarray:
    yy, xx = np.mgrid[:S, :S]
    return (peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))).astype(np.float32)


def test_a_missed_click_gets_the_region_the_probability_draws_around_it() -> None:
    """The network answered under the cut (peak 0.3 at the click, a 5 px blob): the mask had nothing."""
    prob = _blob(30, 20, 5.0, 0.3) + _blob(10, 50, 3.0, 0.9)  # and a confident region elsewhere
    click = Click(30, 20, True)
    assert not prob[30, 20] > PRED_THRESHOLD
    out, missed = cover_positive_clicks(prob, [click], R)
    assert missed == 1 and out[30, 20] > PRED_THRESHOLD and out.dtype == np.float32
    mask = out > PRED_THRESHOLD
    region = mask & (_blob(10, 50, 3.0, 1.0) < 0.01)  # the part around the click
    expected = prob >= 0.5 * prob[28:33, 18:23].max()  # half the peak near the click
    expected &= _blob(10, 50, 3.0, 1.0) < 0.01
    assert np.array_equal(region, expected)
    assert np.array_equal(out[~region], prob[~region])  # nothing else changes
    assert np.allclose(out[region], np.maximum(prob[region], FLOOR))
    assert 30 < region.sum() < 300  # the blob, not the image


def test_a_flat_probability_gives_the_click_disc_and_covered_clicks_are_untouched() -> None:
    prob = np.full((S, S), 0.01, np.float32)  # the network says nothing anywhere
    out, missed = cover_positive_clicks(prob, [Click(5, 5, True)], R)
    yy, xx = np.mgrid[:S, :S]
    disc = (yy - 5) ** 2 + (xx - 5) ** 2 <= R * R
    assert missed == 1 and np.array_equal(out > PRED_THRESHOLD, disc)
    zero = np.zeros((S, S), np.float32)  # not even a peak: still the disc
    assert np.array_equal(cover_positive_clicks(zero, [Click(5, 5, True)], R)[0] > PRED_THRESHOLD, disc)
    covered = _blob(30, 30, 4.0, 0.95)
    same, none = cover_positive_clicks(covered, [Click(30, 30, True), Click(2, 2, False)], R)
    assert none == 0 and same is covered


def test_the_region_is_capped_and_negative_clicks_keep_their_discs() -> None:
    # a wide plateau at 0.4 over half the image with a gentle rise to 0.45 at the click
    prob = np.zeros((S, S), np.float32)
    prob[:, : S // 2] = 0.4
    prob += _blob(20, 16, 3.0, 0.05)
    region = click_region(prob, Click(20, 16, True), R)
    assert region[20, 16] and region.sum() <= MAX_FRACTION * S * S  # the rise, not the plateau
    negative = Click(20, 19, False)  # right next to the positive click
    out, missed = cover_positive_clicks(prob, [Click(20, 16, True), negative], R)
    mask = out > PRED_THRESHOLD
    assert missed == 1 and mask[20, 16] and not mask[20, 19] and not mask[20, 20]
    assert mask[20, 15] and mask[18, 16]  # the positive click's own disc stays


def test_every_missed_positive_click_is_counted_and_covered() -> None:
    prob = _blob(15, 15, 3.0, 0.2) + _blob(45, 45, 3.0, 0.35)
    clicks = [Click(15, 15, True), Click(45, 45, True), Click(45, 10, False)]
    out, missed = cover_positive_clicks(prob, clicks, R)
    assert missed == 2 and out[15, 15] > PRED_THRESHOLD and out[45, 45] > PRED_THRESHOLD
    assert not out[45, 10] > PRED_THRESHOLD
