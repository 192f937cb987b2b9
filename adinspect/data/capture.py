"""Capture shift: the same part photographed under other conditions than the good images.

Two kinds, both seen on real lines and both absent from a good set taken on one good day:

* **light**: `capture_shift` multiplies an image by gain · (1 + gradient · ramp), ramp running
  linearly from −1 to +1 across the image along `angle` (another exposure, a lamp that drifted);
* **pose**: `misalign` moves the part by a pixel offset (a fixture that does not hold it where the
  good parts sat), the frame's border colour filling what comes into view.

The synthetic generator uses them to photograph defective test images under conditions the good
images do not cover (`synth --capture-shift / --misalign`), and `train-click --capture-shift-aug`
to show ADClick residuals that light up beyond the defect, so that it learns to take a defect's
boundary from the image. A misaligned image's mask moves with it.
"""

from __future__ import annotations

import numpy as np


def capture_shift(image: np.ndarray, gain: float, gradient: float, angle: float) -> np.ndarray:
    """(H, W, 3) uint8 or float RGB → the same dtype, gain and gradient applied (clipped for uint8)."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    proj = (xx - (w - 1) / 2) * np.cos(angle) + (yy - (h - 1) / 2) * np.sin(angle)
    ramp = proj / max(float(np.abs(proj).max()), 1e-6)
    out = image.astype(np.float32) * (gain * (1.0 + gradient * ramp))[..., None]
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype)


def random_capture_shift(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A random shift of the given strength: gain 1 ± (0.5–1)·strength, gradient (0.5–1)·strength,
    random direction. strength 0 returns the image unchanged without drawing from `rng`."""
    if strength <= 0:
        return image
    gain = 1.0 + float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.5, 1.0)) * strength
    gradient = float(rng.uniform(0.5, 1.0)) * strength
    return capture_shift(image, gain, gradient, float(rng.uniform(0, 2 * np.pi)))


def misalign(image: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """The image (H, W[, C]) with its content moved by offset = (dy, dx) whole pixels; the border
    pixels are repeated into what comes into view. Masks (bool or uint8) move exactly."""
    dy, dx = offset
    if dy == 0 and dx == 0:
        return image
    h, w = image.shape[:2]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    moved = image[ys][:, xs]
    if image.dtype == bool:  # a mask: nothing comes in from outside the frame
        inside_y = (np.arange(h) - dy >= 0) & (np.arange(h) - dy < h)
        inside_x = (np.arange(w) - dx >= 0) & (np.arange(w) - dx < w)
        moved = moved & inside_y[:, None] & inside_x[None, :]
    return np.ascontiguousarray(moved)


def random_offset(fraction: float, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """A random misalignment of (0.5–1)·fraction·size pixels in a random direction; fraction 0 is
    (0, 0) without drawing from `rng`."""
    if fraction <= 0:
        return (0, 0)
    length = float(rng.uniform(0.5, 1.0)) * fraction * size
    angle = float(rng.uniform(0, 2 * np.pi))
    return (int(round(length * np.sin(angle))), int(round(length * np.cos(angle))))
