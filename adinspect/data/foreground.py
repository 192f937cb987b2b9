"""Foreground masks of object products, so synthetic defects land on the object (CPR §3.5).

An object photographed on a plain background (MVTec bottle, screw, ...) differs from the colour
of the image border; a texture fills the whole frame. Per image: the per-pixel colour distance
to the median border colour, Otsu-thresholded, closed, holes filled, the largest component
kept. Per product: when the masks of the good images cover between `min_cover` and `max_cover`
of the frame on median, the product is an object and each image gets its mask; otherwise
(a texture, or a background the rule cannot separate) no foreground is used. Numpy/OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ForegroundSettings:
    border: int = 4  # border width (pixels at the working size) giving the background colour
    close: int = 7  # closing kernel, pixels: joins the object's parts across thin gaps
    min_cover: float = 0.05
    max_cover: float = 0.9


def foreground_mask(image: np.ndarray, settings: ForegroundSettings = ForegroundSettings()) -> np.ndarray:
    """(H, W, 3) uint8 → (H, W) bool: the largest region whose colour differs from the border's."""
    img = image.astype(np.float32)
    b = settings.border
    border = np.concatenate([img[:b].reshape(-1, 3), img[-b:].reshape(-1, 3),
                             img[:, :b].reshape(-1, 3), img[:, -b:].reshape(-1, 3)])  # fmt: skip
    dist = np.linalg.norm(img - np.median(border, axis=0), axis=-1)
    dist8 = cv2.GaussianBlur(np.clip(dist, 0, 255).astype(np.uint8), (5, 5), 0)
    _, fg = cv2.threshold(dist8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (settings.close, settings.close))
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg)
    if n < 2:
        return np.zeros(fg.shape, bool)
    largest = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return _fill_holes(largest)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Pixels not reachable from the border through background are foreground."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8), (0, 0), 1)
    return (padded | (1 - flood)).astype(bool)[1:-1, 1:-1]


def product_foregrounds(
    images: list[np.ndarray], settings: ForegroundSettings = ForegroundSettings()
) -> list[np.ndarray] | None:
    """Per-image foreground masks when the product looks like an object, else None (texture)."""
    if not images:
        return None
    masks = [foreground_mask(im, settings) for im in images]
    cover = float(np.median([m.mean() for m in masks]))
    return masks if settings.min_cover <= cover <= settings.max_cover else None
