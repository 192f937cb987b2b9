"""Capture shift: the same part photographed with another gain and an illumination gradient.

`capture_shift` multiplies an image by gain · (1 + gradient · ramp), ramp running linearly from −1
to +1 across the image along `angle`. The synthetic generator uses it to photograph defective
test images under conditions the good images do not cover (`synth --capture-shift`), and
`train-click --capture-shift-aug` to show ADClick residuals that light up everywhere, so that it
learns to take a defect's boundary from the image (issue 9 item 10).
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
