"""Decoded OpenCV arrays (BGR order, 8 or 16 bits, 1, 3 or 4 channels) → uint8 RGB, in bounded memory.

Conventions (the readers' docstring): 16-bit samples become 8-bit by rounding ``x / 257``; gray is
replicated to three channels; alpha is composited on black (``rgb * alpha / max``, rounded). The
16-bit and alpha conversions run a few rows at a time into one preallocated output, so they hold
the decoded array, the output and at most `limits.CONVERT_SCRATCH` of temporaries, whatever the
image's size (whole-array numpy arithmetic took 60 bytes per pixel for 16-bit RGBA).
"""

from __future__ import annotations

import cv2
import numpy as np

CHUNK_PIXELS = 2**20
"""Pixels converted at a time: uint32 temporaries of 3 samples (12 MiB) plus the chunk's alpha and
output stay under `limits.CONVERT_SCRATCH`."""


def to_rgb8(raw: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` uint8/uint16 BGR(A) → ``(H, W, 3)`` uint8 RGB. C is 1, 3 or 4."""
    height, width = raw.shape[:2]
    channels = 1 if raw.ndim == 2 else raw.shape[2]
    if raw.dtype == np.uint8 and channels in (1, 3):
        # cv2.cvtColor, not a reversed-stride view + copy (py-spy: a quarter of decoding 900² PNGs)
        code = cv2.COLOR_GRAY2RGB if channels == 1 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(raw.reshape(height, width, channels), code)
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, CHUNK_PIXELS // width)
    for top in range(0, height, rows):
        out[top : top + rows] = _rows_to_rgb8(raw[top : top + rows].reshape(-1, width, channels))
    return out


def _rows_to_rgb8(part: np.ndarray) -> np.ndarray:
    """A few rows ``(h, W, C)``: BGR(A) → RGB, alpha composited on black, 16 → 8 bits, rounded.

    In uint32, in place: 65535 * 65535 + 32767 < 2**32."""
    if part.shape[2] == 1:
        return np.repeat(part if part.dtype == np.uint8 else _scaled(part.astype(np.uint32)), 3, axis=2)
    work = part[:, :, 2::-1].astype(np.uint32)
    if part.shape[2] == 4:
        full = int(np.iinfo(part.dtype).max)
        work *= part[:, :, 3:4]
        work += full // 2
        work //= full
    return work.astype(np.uint8) if part.dtype == np.uint8 else _scaled(work)


def _scaled(work: np.ndarray) -> np.ndarray:
    """uint32 holding 16-bit samples → uint8 by rounding x / 257 (65535 → 255)."""
    work += 128
    work //= 257
    return work.astype(np.uint8)
