"""Pseudo labels (Eq. 8–9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adinspect.errors import InputError
from adinspect.runtime.clicks import Click
from adinspect.train.pseudo_labels import ACCEPTED, click_corrected, sample_delta, tri_valued
from adinspect.train.seg_trainer import SegTrainSettings


def test_pixels_near_clicks_take_the_click_label() -> None:
    prob = np.full((20, 20), 0.3, np.float32)
    out = click_corrected(prob, [Click(5, 5, True), Click(15, 15, False)], distance=2.0)
    assert out[5, 5] == 1 and out[5, 7] == 1 and out[5, 8] == pytest.approx(0.3)
    assert out[15, 15] == 0 and out[10, 10] == pytest.approx(0.3)
    assert (out == 1).sum() == 13 and (out == 0).sum() == 13


def test_the_accepted_mask_is_labelled_defect_and_the_rest_stays_soft() -> None:
    prob = np.full((20, 20), 0.3, np.float32)
    prob[2:5, :] = 0.5  # a traced line: in the mask the labeller saw, inside Eq. 9's band
    prob[6, :] = 0.9  # the network's own mask keeps its rank
    prob[10:13, :] = 0.45  # under the cut: not in the mask
    out = click_corrected(prob, [Click(18, 18, False)], distance=2.0)
    assert (out[2:5] == ACCEPTED).all() and out[6, 0] == pytest.approx(0.9)
    assert out[10, 0] == pytest.approx(0.45) and out[0, 0] == pytest.approx(0.3)
    assert tri_valued(out, 0.1)[3, 0] == 1  # trained on as defect, not abandoned


def test_the_nearer_click_wins_where_discs_overlap() -> None:
    out = click_corrected(
        np.full((10, 10), 0.5, np.float32), [Click(5, 3, True), Click(5, 6, False)], distance=3.0
    )
    assert out[5, 4] == 1 and out[5, 5] == 0


def test_tri_valued_labels() -> None:
    soft = torch.tensor([0.0, 0.39, 0.41, 0.5, 0.59, 0.61, 1.0])
    out = tri_valued(soft, delta=0.1)
    assert out.tolist() == [0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0]
    assert set(tri_valued(torch.rand(1000), 0.05).unique().tolist()) <= {0.0, 0.5, 1.0}
    assert tri_valued(soft, 0.0).tolist() == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]


def test_delta_is_uniform_in_zero_to_max() -> None:
    rng = np.random.default_rng(0)
    d = np.array([sample_delta(rng) for _ in range(2000)])
    assert d.min() >= 0 and d.max() <= 0.1 and abs(d.mean() - 0.05) < 0.005
    with pytest.raises(ValueError, match="δ"):
        tri_valued(torch.zeros(3), 0.6)


def test_click_outside_the_image_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        click_corrected(np.zeros((10, 10), np.float32), [Click(3, 10, True)], 2.0)


def test_a_band_that_would_swallow_the_accepted_mask_is_refused_before_training() -> None:
    with pytest.raises(InputError, match="max_delta"):
        SegTrainSettings(max_delta=ACCEPTED - 0.5)
    assert SegTrainSettings().max_delta < ACCEPTED - 0.5
