"""Click geometry shared by the labelling runtime and training: one click, its disc radius, the
two-channel click maps the ADClick model reads, and the scaling between an image's pixels and the
model's input pixels (H_in x W_in, scaled per axis). Pure numpy (torch-free: the serving path and
`adinspect annotate` use it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adinspect.geometry import as_shape

PRED_THRESHOLD = 0.49  # RITM binarises probabilities at 0.49


@dataclass(frozen=True)
class Click:
    """One click at pixel (y, x) of the model's input; positive marks the defect."""

    y: int
    x: int
    positive: bool


def click_radius(image_size: int) -> float:
    """Disc radius in pixels: 5 px at 512, scaled with the input's short side S (at least 1.5 px)."""
    return max(1.5, 5.0 * image_size / 512)


def check_clicks(clicks: Sequence[Click], size: tuple[int, int], name: str = "clicks") -> None:
    """Raise ValueError naming the first click outside an (H, W) image."""
    h, w = size
    for i, c in enumerate(clicks):
        if not (0 <= c.y < h and 0 <= c.x < w):
            raise ValueError(f"{name}: click {i} at (y={c.y}, x={c.x}) lies outside the {w}x{h} image")


def scale_clicks(clicks: Sequence[Click], shape: tuple[int, int], size: int | tuple[int, int]) -> list[Click]:
    """Clicks in an (H, W) image's pixels → the model's (H_in, W_in) pixels, each axis scaled on its
    own (`label --clicks`, `annotate`); `size` is (H_in, W_in) or S for a square input."""
    (h, w), (mh, mw) = shape, as_shape(size)
    return [Click(min(mh - 1, c.y * mh // h), min(mw - 1, c.x * mw // w), c.positive) for c in clicks]


def unscale_click(click: Click, shape: tuple[int, int], size: int | tuple[int, int]) -> Click:
    """The smallest original (H, W) pixel that `scale_clicks` maps to a model-input click.

    Exact when H >= H_in and W >= W_in (every model pixel has an original pixel); for smaller images
    the model pixels between two original ones are unreachable and the nearest original pixel is
    returned.
    """
    (h, w), (mh, mw) = shape, as_shape(size)
    return Click(min(h - 1, -(-click.y * h // mh)), min(w - 1, -(-click.x * w // mw)), click.positive)


def click_maps(clicks: Sequence[Click], size: tuple[int, int], radius: float) -> np.ndarray:
    """Discs around the clicks: (2, H, W) float32, channel 0 positive, channel 1 negative."""
    check_clicks(clicks, size)
    maps = np.zeros((2, *size), np.float32)
    yy, xx = np.ogrid[: size[0], : size[1]]
    for c in clicks:
        maps[0 if c.positive else 1][(yy - c.y) ** 2 + (xx - c.x) ** 2 <= radius * radius] = 1.0
    return maps
