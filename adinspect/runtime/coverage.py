"""A positive click is always inside its mask: the floor under every click prediction.

A network can miss a click: one positive click right on an evident defect, and the probability
there stays under the cut, so the person sees no mask at all. Whatever the network says, each
positive click then gets the region the probability itself draws around it:

- the probability's peak p at the click (the largest value within the click disc);
- the connected region around the click where the probability is at least `LEVELS`[0] · p,
  raised through `LEVELS` until the region covers at most `MAX_FRACTION` of the image (a flat
  probability would otherwise give the whole background); none that small: no region;
- joined with the click disc itself, and less the negative clicks' discs (never the click's own);
- raised to `FLOOR`, just over the 0.49 cut, where it is lower, so the mask holds it and the next
  click sees it as its previous mask; everything else is left as the network said.

Clicks whose centre the mask already holds are untouched. numpy + OpenCV only: the labelling
runtime, `label` and `evaluate-clicks` apply the same floor after the same prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from adinspect.runtime.clicks import PRED_THRESHOLD, Click

LEVELS = (0.5, 0.7, 0.9)  # fractions of the click's peak probability, tried in order
MAX_FRACTION = 1 / 16  # the largest region a missed click may take, as a share of the image
FLOOR = 0.5  # probability given to the region: over PRED_THRESHOLD (0.49)


def _disc(shape: tuple[int, int], click: Click, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - click.y) ** 2 + (xx - click.x) ** 2 <= radius * radius


def click_region(prob: np.ndarray, click: Click, radius: float) -> np.ndarray:
    """The region the probability (H, W) draws around `click`: bool (H, W), the disc at least."""
    disc = _disc(prob.shape, click, radius)
    peak = float(prob[disc].max())
    limit = MAX_FRACTION * prob.size
    for level in LEVELS:
        if peak <= 0:
            break
        above = (prob >= level * peak).astype(np.uint8)
        above[disc] = 1  # the disc is part of the region, so the component holds the click
        _, labels = cv2.connectedComponents(above, connectivity=8)
        region = labels == labels[click.y, click.x]
        if region.sum() <= limit:
            return region
    return disc


def cover_positive_clicks(prob: np.ndarray, clicks: Sequence[Click], radius: float) -> tuple[np.ndarray, int]:
    """`prob` (H, W) with every positive click inside the mask (prob > PRED_THRESHOLD).

    Returns:
        (the probability, float32 (H, W); the input itself when no click was missed,
         how many positive clicks the input's mask missed).
    """
    missed = [c for c in clicks if c.positive and not prob[c.y, c.x] > PRED_THRESHOLD]
    if not missed:
        return prob, 0
    negative = np.zeros(prob.shape, bool)
    for c in clicks:
        if not c.positive:
            negative |= _disc(prob.shape, c, radius)
    out = np.array(prob, dtype=np.float32, copy=True)
    for c in missed:
        region = (click_region(prob, c, radius) & ~negative) | _disc(prob.shape, c, radius)
        out[region] = np.maximum(out[region], FLOOR)
    return out, len(missed)
