"""The ADClick-Seg pass/fail threshold, chosen only from what a user has at training time.

Two kinds of images are available before any test image is seen: the good training images the
package held out from its bank (never trained on), and the images the user pseudo-labelled.
The rule:

    g = max(mean + k·std, max) of the held-out good images' seg scores   (the fit's rule, k = std_factor)
    d = min of the pseudo-labelled images' seg scores
    threshold = (g + d) / 2  when d > g   (the middle of the gap: the widest margin to both sides)
              = g            otherwise    (no held-out good image is ever rejected)

and at least `calibration.seg_floor` when that is set (None by default: an earlier default of
0.5 had been chosen after looking at good *test* images). The pseudo-labelled images were
trained on, so d is optimistic; the middle of the gap leaves half of it for that.

Whether results may name a defect type is decided from the same images (`defect_type_claim`):
the type whose language gives the highest seg score must match the labelled type of the
pseudo-labelled images clearly more often than always answering their commonest type would.
They were trained on, so this accuracy is an upper bound: a model that fails it on them cannot
tell the types apart, and its results then carry no `defect_type`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

STATISTIC = "max(mean + {k:g}*std, max) of {n} held-out good training images' seg scores"


@dataclass(frozen=True)
class SegThreshold:
    threshold: float
    rule: str
    holdout: list[str]
    holdout_scores: list[float]
    pseudo_labelled: list[str]
    pseudo_scores: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def seg_threshold(
    good: np.ndarray,
    good_names: list[str],
    defective: np.ndarray,
    defective_names: list[str],
    std_factor: float,
    floor: float | None = None,
) -> SegThreshold:
    """The rule of the module docstring. good (N,) and defective (M,) are seg scores; M may be 0."""
    if len(good) == 0:
        raise ValueError("no held-out good images to calibrate the seg threshold on")
    g = max(float(good.mean() + std_factor * good.std()), float(good.max()))
    rule = f"g = {STATISTIC.format(k=std_factor, n=len(good))}"
    threshold = g
    if len(defective):
        d = float(defective.min())
        if d > g:
            threshold = (g + d) / 2
            rule = f"(g + d) / 2 with {rule}, d = min of {len(defective)} pseudo-labelled images' seg scores"
        else:
            rule = f"{rule} (the {len(defective)} pseudo-labelled images' min seg score {d:.3g} <= g)"
    if floor is not None and floor > threshold:
        threshold, rule = float(floor), f"floor {floor:g} (calibration.seg_floor) over {rule}"
    return SegThreshold(
        threshold,
        rule,
        list(good_names),
        [float(s) for s in good],
        list(defective_names),
        [float(s) for s in defective],
    )


CLAIM_MARGIN = 0.25  # accuracy over chance the pseudo-labelled images must show before a type is named


def defect_type_claim(predicted: np.ndarray, labelled: np.ndarray, n_types: int) -> dict:
    """May results name a defect type? predicted / labelled (M,) type indices of the
    pseudo-labelled images. One type: yes (nothing to tell apart). Otherwise yes when there are
    at least two labelled types and accuracy >= chance + CLAIM_MARGIN, chance being the commonest
    labelled type's share."""
    n = len(labelled)
    if n_types == 1:
        return {"claimed": True, "rule": "one defect type", "n": n}
    if n == 0 or len(np.unique(labelled)) < 2:
        return {"claimed": False, "rule": "fewer than two types among the pseudo-labelled images", "n": n}
    accuracy = float(np.mean(predicted == labelled))
    chance = float(np.bincount(labelled).max() / n)
    return {
        "claimed": accuracy >= chance + CLAIM_MARGIN,
        "rule": f"accuracy >= chance + {CLAIM_MARGIN:g} on the pseudo-labelled images (an upper bound)",
        "accuracy": accuracy,
        "chance": chance,
        "n": n,
    }
