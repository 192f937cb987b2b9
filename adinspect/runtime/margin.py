"""Widen ADClick's mask by the labeller's margin: how far labelled regions reach beyond the defect.

Products are labelled two ways. Some tight to the defect (MVTec's breaks and contamination); some
with a region drawn around it (KolektorSDD's one-pixel cracks sit inside bands about ten pixels
wide, DAGM's defects inside ellipses). ADClick learns tight masks from synthetic anomalies, so on
a product labelled the second way every click after the first lands on surface beside the defect
that looks good, and the mask follows the clicks one disc at a time. The margin is that
convention, measured on the labelled images (`train.snap_choice`): a grey dilation of the
probability by a disc of `margin` model-input pixels, so every pixel takes the highest probability
within the disc. The mask grows by the margin, the ranking of its pixels follows, and the next
click sees the widened mask as its previous one. numpy + OpenCV only: the labelling tool runs it.
"""

from __future__ import annotations

import cv2
import numpy as np


def widen(prob: np.ndarray, margin: int) -> np.ndarray:
    """Probability (H, W) → its grey dilation by a disc of radius `margin` px, float32; 0: `prob` itself."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0 px, got {margin}")
    if margin == 0:
        return prob
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    return cv2.dilate(prob.astype(np.float32), disc)
