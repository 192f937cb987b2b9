"""Normalized Focal Loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from adinspect.models.losses import masked_normalized_focal_loss, normalized_focal_loss, soft_iou_loss


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1)


def test_nfl_matches_hand_computation() -> None:
    # p = sigmoid(logits) = [0.5, 0.75]; targets [1, 0] → p_t = [0.5, 0.25]
    # β = (1 − p_t)² = [0.25, 0.5625]; normalised β̂ = β · 2 / 0.8125
    # L = ½ · (0.5 · β̂₀ · ln 2 + 0.5 · β̂₁ · ln 4)
    beta = [0.25 * 2 / 0.8125, 0.5625 * 2 / 0.8125]
    expected = 0.5 * (0.5 * beta[0] * math.log(2) + 0.5 * beta[1] * math.log(4))
    got = normalized_focal_loss(_t([0.0, math.log(3)]), _t([1.0, 0.0]))
    assert got.item() == pytest.approx(expected, rel=1e-5)  # 0.58651


def test_batch_loss_is_the_mean_over_samples() -> None:
    a = normalized_focal_loss(_t([0.0, math.log(3)]), _t([1.0, 0.0]))
    b = normalized_focal_loss(_t([2.0, -1.0]), _t([1.0, 1.0]))
    both = normalized_focal_loss(
        torch.cat([_t([0.0, math.log(3)]), _t([2.0, -1.0])]), torch.cat([_t([1.0, 0.0]), _t([1.0, 1.0])])
    )
    assert both.item() == pytest.approx((a.item() + b.item()) / 2, rel=1e-6)


def test_masked_nfl_ignores_half_labels() -> None:
    full = normalized_focal_loss(_t([0.0, math.log(3)]), _t([1.0, 0.0]))
    masked = masked_normalized_focal_loss(_t([0.0, math.log(3), 5.0, -7.0]), _t([1.0, 0.0, 0.5, 0.5]))
    assert masked.item() == pytest.approx(full.item(), rel=1e-5)


def test_confident_correct_predictions_cost_almost_nothing() -> None:
    low = normalized_focal_loss(_t([12.0, -12.0]), _t([1.0, 0.0]))
    assert 0 <= low.item() < 1e-4


def test_gradient_flows_and_normaliser_is_detached() -> None:
    logits = _t([0.3, -0.2, 1.5]).requires_grad_()
    normalized_focal_loss(logits, _t([1.0, 0.0, 0.0])).backward()
    g = logits.grad.flatten()
    assert g[0] < 0 and g[1] > 0 and g[2] > 0  # push positives up, negatives down


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        normalized_focal_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))


def test_soft_iou_loss_matches_hand_computation() -> None:
    # p = [0.5, 0.75, 0.5], t = [1, 1, 0]: Σ p·t = 1.25, Σ (p + t − p·t) = 1 + 1 + 0.5 = 2.5
    logits, target = _t([0.0, math.log(3), 0.0]), _t([1.0, 1.0, 0.0])
    assert soft_iou_loss(logits, target, eps=0.0).item() == pytest.approx(1 - 1.25 / 2.5, rel=1e-6)


def test_soft_iou_loss_charges_a_trace_just_under_the_cut() -> None:
    """A 1-px stroke traced at p = 0.45 (IoU 0 after the 0.49 cut) costs more than half the
    loss's range; traced confidently it costs almost nothing."""
    target = torch.zeros(1, 1, 32, 32)
    target[..., 16, 4:28] = 1
    faint = torch.where(target > 0, torch.logit(torch.tensor(0.45)), torch.tensor(-12.0))
    assert soft_iou_loss(faint, target, eps=0.0).item() > 0.5
    assert soft_iou_loss(torch.where(target > 0, 12.0, -12.0), target, eps=0.0).item() < 1e-3


def test_soft_iou_loss_is_finite_on_an_empty_target_and_pushes_the_right_way() -> None:
    logits = _t([0.3, -0.2, 1.5]).requires_grad_()
    loss = soft_iou_loss(logits, _t([1.0, 0.0, 0.0]))
    loss.backward()
    g = logits.grad.flatten()
    assert g[0] < 0 and g[1] > 0 and g[2] > 0
    assert torch.isfinite(soft_iou_loss(_t([-3.0, -3.0]), _t([0.0, 0.0])))
