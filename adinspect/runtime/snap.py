"""Snap ADClick's probability to the image's colours with a graph cut (GrabCut, Rother et al. 2004).

ADClick sees the image through a stride-8 stem, so on a 1-2 px crack it traces a blurred band one
grid cell wide at p 0.2-0.45, under the 0.49 cut. GrabCut decides that band from the pixels:
it fits colour models of defect and background and cuts along colour edges. The network's
probability and the clicks seed it:

- p ≥ 0.7 (the network is sure) and each positive click's centre: defect, fixed;
- each negative click's centre: background, fixed;
- 0.5 ≤ p < 0.7: probably defect; the rest of the region within `MARGIN` px of p ≥ 0.1 or of a
  positive click: probably background; GrabCut may flip both;
- everything farther away: background, fixed.

It pays where defects differ in colour from their surroundings (cracks, stains on a plain part)
and costs IoU where they do not (MVTec bottle's breaks and contamination), so a package turns it
on only when it measured better on labelled images (`train.snap_choice`). The result replaces the
probability (0.5·p + 0.5·cut), so the cut decides the mask at the 0.49 threshold and the next click
sees it as its previous mask. OpenCV's RNG is seeded before each cut: the same clicks give the same
mask in every process and thread. numpy + OpenCV only: the labelling tool runs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from adinspect.geometry import as_shape
from adinspect.runtime.clicks import Click

SURE = 0.7  # the network's calls above this stand
SEED = 0.1  # probability from which a pixel is part of the region GrabCut looks at
MARGIN = 10  # px of the model input around the seed region and the positive clicks that GrabCut may add
ITERATIONS = 3


def snap_rgb(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """uint8 RGB (H, W, 3) → the model input (H_in, W_in, 3) (`size`: that pair, or S for S x S),
    area-averaged: what the graph cut compares."""
    height, width = as_shape(size)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def snap_to_image(prob: np.ndarray, rgb: np.ndarray, clicks: Sequence[Click]) -> np.ndarray:
    """ADClick's probability (H_in, W_in) → 0.5·prob + 0.5·(GrabCut's defect mask), float32.

    Args:
        prob: probability after the clicks, (H_in, W_in) in [0, 1].
        rgb: the image at the model input (`snap_rgb`), uint8.
        clicks: the clicks so far, in model-input pixels.

    Returns `prob` unchanged when there is nothing to cut (no seed region) or GrabCut cannot fit
    its colour models (a region of one colour).
    """
    height, width = prob.shape
    if rgb.shape != (height, width, 3) or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 ({height}, {width}, 3), got {rgb.dtype} {rgb.shape}")
    seed = (prob >= SEED).astype(np.uint8)
    for c in clicks:
        if c.positive:
            seed[c.y, c.x] = 1
    if not seed.any():
        return prob
    near = cv2.dilate(seed, np.ones((2 * MARGIN + 1,) * 2, np.uint8)) > 0
    labels = np.full((height, width), cv2.GC_BGD, np.uint8)
    labels[near] = cv2.GC_PR_BGD
    labels[near & (prob >= 0.5)] = cv2.GC_PR_FGD
    labels[prob >= SURE] = cv2.GC_FGD
    for c in clicks:
        cv2.circle(labels, (c.x, c.y), 1, cv2.GC_FGD if c.positive else cv2.GC_BGD, -1)
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)  # GrabCut's k-means start draws from OpenCV's (per-thread) global RNG
    bgr, whole = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (0, 0, width, height)  # the rect: unused with a mask
    try:
        cv2.grabCut(bgr, labels, whole, background, foreground, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # too few pixels of a label for its colour model
        return prob
    cut = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return (0.5 * prob + 0.5 * cut).astype(np.float32)
