"""Click simulator (RITM protocol) and NoC / IoU@k metrics."""

from __future__ import annotations

import numpy as np
import pytest

from adinspect.runtime.clicks import Click, click_maps, click_radius
from adinspect.train.clicks import click_metrics, next_click, number_of_clicks, simulate_clicks


def test_first_click_is_the_deepest_point_of_the_defect() -> None:
    gt = np.zeros((40, 40), bool)
    gt[5:10, 5:10] = True  # small square: depth 3
    gt[15:36, 10:31] = True  # 21x21 square: depth 11 at its centre (25, 20)
    assert next_click(gt, np.zeros_like(gt)) == Click(25, 20, True)


def test_larger_false_positive_region_gives_a_negative_click() -> None:
    gt = np.zeros((30, 30), bool)
    gt[2:5, 2:5] = True
    pred = gt.copy()
    pred[2:5, 2:5] = False  # small FN (depth 2)
    pred[10:25, 10:25] = True  # large FP (depth 8), centre (17, 17)
    assert next_click(gt, pred) == Click(17, 17, False)


def test_image_border_counts_as_boundary() -> None:
    gt = np.zeros((20, 20), bool)
    gt[:, :6] = True  # touches the left border: deepest column is 2 (distance 3 to the border pad)
    c = next_click(gt, np.zeros_like(gt))
    assert c is not None and c.positive and c.x == 2


def test_clicked_pixels_are_not_chosen_again_and_agreement_gives_none() -> None:
    gt = np.zeros((9, 9), bool)
    gt[2:7, 2:7] = True
    clicked = np.zeros_like(gt)
    clicked[4, 4] = True
    c = next_click(gt, np.zeros_like(gt), clicked)
    assert c is not None and (c.y, c.x) != (4, 4) and c.positive
    assert next_click(gt, gt) is None


def test_click_maps_are_discs_of_the_given_radius() -> None:
    maps = click_maps([Click(10, 10, True), Click(2, 17, False)], (20, 20), radius=2.0)
    assert maps.shape == (2, 20, 20)
    assert maps[0].sum() == 13  # lattice points with dy² + dx² ≤ 4
    assert maps[0, 10, 12] == 1 and maps[0, 11, 12] == 0
    assert maps[1, 2, 17] == 1 and maps[1].sum() == 13
    assert click_radius(512) == 5.0 and click_radius(256) == 2.5


def test_click_outside_the_image_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        click_maps([Click(20, 3, True)], (20, 20), 2.0)


def test_noc_and_iou_at_k() -> None:
    assert number_of_clicks([0.5, 0.82, 0.86, 0.95], 0.85) == 3
    assert number_of_clicks([0.5, 0.6], 0.9, max_clicks=20) == 20
    m = click_metrics([[0.81, 0.86, 0.91], [0.5, 0.95]], max_clicks=4)
    assert m["noc80"] == pytest.approx((1 + 2) / 2)
    assert m["noc85"] == pytest.approx((2 + 2) / 2)
    assert m["noc90"] == pytest.approx((3 + 2) / 2)
    assert m["iou_at_k"] == pytest.approx(
        [(0.81 + 0.5) / 2, (0.86 + 0.95) / 2, (0.91 + 0.95) / 2, (0.91 + 0.95) / 2]
    )


def test_simulation_with_an_oracle_needs_one_click() -> None:
    gt = np.zeros((32, 32), bool)
    gt[8:20, 4:30] = True
    session = simulate_clicks(lambda prev, clicks: gt.astype(np.float32), gt)
    assert len(session.clicks) == 1 and session.ious == [1.0]
    assert session.clicks[0].positive and gt[session.clicks[0].y, session.clicks[0].x]


def test_simulation_with_a_disc_predictor_adds_clicks_until_covered() -> None:
    gt = np.zeros((40, 40), bool)
    gt[5:15, 5:15] = True
    gt[25:35, 25:35] = True

    def predict(prev: np.ndarray, clicks: list[Click]) -> np.ndarray:
        return click_maps([c for c in clicks if c.positive], gt.shape, 8.0)[0] * gt

    session = simulate_clicks(predict, gt, max_clicks=5)
    assert [c.positive for c in session.clicks[:2]] == [True, True]
    assert session.ious[0] < 0.6 and session.ious[1] > 0.95
    assert click_metrics([session.ious], max_clicks=5)["noc90"] == 2
