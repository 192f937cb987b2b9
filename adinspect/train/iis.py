"""IIS-manner training of ADClick-Seg (paper §3.4, Table 8): up to 3 simulated clicks per sample.

ADClick-Seg shares ADClick's encoder, click embedding included, and is served with an all-zero
click map. The paper trains it "mainly in the IIS manner": a share of the samples come with a
few clicks simulated from their target (positive inside the defect, negative around it), the
rest with none, so the network learns both to follow clicks and to segment without them.
"""

from __future__ import annotations

import numpy as np
import torch

from adinspect.runtime.clicks import Click, click_maps


def sample_clicks(gt: np.ndarray, n: int, rng: np.random.Generator) -> list[Click]:
    """n clicks on a binary target (H, W): positives at random defect pixels, negatives at random
    pixels of a band around it (anywhere when the target is empty)."""
    import cv2

    ys, xs = np.nonzero(gt)
    band = (cv2.dilate(gt.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0) & ~gt
    if not band.any():
        band = ~gt
    by, bx = np.nonzero(band)
    clicks = []
    for k in range(n):
        positive = len(ys) > 0 and (k == 0 or rng.random() < 0.6)
        if positive:
            i = int(rng.integers(len(ys)))
            clicks.append(Click(int(ys[i]), int(xs[i]), True))
        elif len(by):
            i = int(rng.integers(len(by)))
            clicks.append(Click(int(by[i]), int(bx[i]), False))
    return clicks


def iis_maps(
    target: torch.Tensor, rng: np.random.Generator, max_clicks: int, fraction: float, radius: float
) -> torch.Tensor | None:
    """Click inputs [previous mask (zero), positive discs, negative discs] (B, 3, H, W) for a batch
    of targets (B, 1, H, W) in {0, 0.5, 1}: with probability `fraction` a sample gets 1..max_clicks
    clicks from target > 0.5, else none. None when no sample got a click (the served path)."""
    if max_clicks < 1 or fraction <= 0:
        return None
    b, _, h, w = target.shape
    maps = torch.zeros(b, 3, h, w)
    any_click = False
    for i in range(b):
        if rng.random() >= fraction:
            continue
        gt = target[i, 0].numpy() > 0.5
        clicks = sample_clicks(gt, int(rng.integers(1, max_clicks + 1)), rng)
        if clicks:
            maps[i, 1:] = torch.from_numpy(click_maps(clicks, (h, w), radius))
            any_click = True
    return maps if any_click else None
