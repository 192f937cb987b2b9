"""Pseudo labels from ADClick's mask and the clicks (Eq. 8–9).

Eq. 8: starting from ADClick's probability map M after the clicks, pixels within distance d of a
click take that click's label (1 positive, 0 negative); where a pixel is within d of clicks of
both kinds, the nearer click decides. Elsewhere the label is M, except that the mask the labeller
saw and accepted (M over the 0.49 cut) is raised to at least `ACCEPTED`, over Eq. 9's band: the
finishing steps put what they add to the mask (coverage floor, traced line, snapped edge) just over
the cut, at 0.5-0.6, where the band would otherwise drop it from training. Raised, not set to 1, so
the labels still rank as a map.
Eq. 9 ("label abandon"): with δ ~ U[0, δ_max] drawn per training iteration, the soft label
becomes tri-valued: > 0.5 + δ → 1, < 0.5 − δ → 0, otherwise 0.5, which the masked NFL ignores.
The soft labels are stored; the tri-valued ones are drawn each iteration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from adinspect.models.losses import IGNORE_LABEL
from adinspect.runtime.clicks import PRED_THRESHOLD, Click, check_clicks

MAX_DELTA = 0.1
ACCEPTED = 0.75  # the accepted mask's least label: defect under Eq. 9 for any δ < 0.25
DELTA_LIMIT = ACCEPTED - 0.5  # a wider band would drop the accepted mask from training


def _nearest_distance(points: Sequence[Click], size: tuple[int, int]) -> np.ndarray:
    """Distance (H, W) from every pixel to the nearest of `points`; +inf when there are none."""
    yy, xx = np.mgrid[: size[0], : size[1]].astype(np.float32)
    dist = np.full(size, np.inf, np.float32)
    for c in points:
        dist = np.minimum(dist, np.sqrt((yy - c.y) ** 2 + (xx - c.x) ** 2))
    return dist


def click_corrected(prob: np.ndarray, clicks: Sequence[Click], distance: float) -> np.ndarray:
    """Eq. 8: prob (H, W) in [0, 1] with the accepted mask raised to `ACCEPTED` and the pixels near
    clicks set to their labels → (H, W) float32."""
    if prob.ndim != 2:
        raise ValueError(f"expected a (H, W) probability map, got shape {prob.shape}")
    check_clicks(clicks, prob.shape)
    d_pos = _nearest_distance([c for c in clicks if c.positive], prob.shape)
    d_neg = _nearest_distance([c for c in clicks if not c.positive], prob.shape)
    out = prob.astype(np.float32).copy()
    accepted = prob > PRED_THRESHOLD
    out[accepted] = np.maximum(out[accepted], ACCEPTED)
    out[(d_pos <= distance) & (d_pos <= d_neg)] = 1.0
    out[(d_neg <= distance) & (d_neg < d_pos)] = 0.0
    return out


def tri_valued(soft: torch.Tensor | np.ndarray, delta: float) -> torch.Tensor:
    """Eq. 9: soft labels (any shape) → {0, 0.5, 1} float32 with the abandon band of half-width δ."""
    if not 0 <= delta < DELTA_LIMIT:
        raise ValueError(f"label-abandon δ must lie in [0, {DELTA_LIMIT}), got {delta}")
    t = torch.as_tensor(soft, dtype=torch.float32)
    out = torch.full_like(t, IGNORE_LABEL)
    out = torch.where(t > 0.5 + delta, torch.ones_like(t), out)
    return torch.where(t < 0.5 - delta, torch.zeros_like(t), out)


def sample_delta(rng: np.random.Generator, max_delta: float = MAX_DELTA) -> float:
    """δ ~ U[0, max_delta], drawn once per training iteration."""
    return float(rng.uniform(0.0, max_delta))
