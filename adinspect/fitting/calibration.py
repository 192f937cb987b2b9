"""The threshold from held-out good images: none of them is rejected (what calibration.json records)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Calibration:
    """What calibration.json records. `holdout_files` (relative to the fitted data folder) and
    `holdout_sha256` let `adinspect repo verify --data DIR` find the same images on another host
    and prove they are the same bytes."""

    rule: str
    threshold: float
    holdout: list[str]
    holdout_scores: list[float]
    holdout_files: list[str] = field(default_factory=list)
    holdout_sha256: list[str] = field(default_factory=list)


def calibrate(
    scores: np.ndarray, names: list[str], std_factor: float, floor: float | None = None
) -> Calibration:
    """threshold = max(mean + k·std, max[, floor]) of held-out good scores: none of them is rejected.

    `floor` is a lower bound for scores with a meaning of their own (ADClick-Seg's probability).
    """
    threshold = max(float(scores.mean() + std_factor * scores.std()), float(scores.max()))
    bounds = f"mean + {std_factor:g}*std, max"
    if floor is not None:
        threshold = max(threshold, float(floor))
        bounds = f"{floor:g}, {bounds}"
    rule = f"max({bounds}) of {len(scores)} held-out good images' scores"
    return Calibration(rule, threshold, names, [float(s) for s in scores])
