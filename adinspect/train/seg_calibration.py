"""The ADClick-Seg pass/fail threshold, chosen only from what a user has at training time.

Good images the seg network never trained on (`train-seg` holds a share of the package's good
images out of its training, `residual_data.seg_holdout`) are scored honestly: each one's residual
comes from the package's bank without that image (as a new good part would be matched), then
through the seg network. The threshold is set for a target false-reject rate, as `fit` sets the
training-free one (`fitting.calibration`):

    threshold = the (⌊α·N⌋ + 1)-th largest of the N held-out good images' seg scores

(α = `--target-frr`, by default the package's), at least `calibration.seg_floor` when that is set.
The record states N, the false rejects among them and the 95 % upper bound of the rate, and
plainly when N is too small to show α. The pseudo-labelled defective images give the expected
miss rate at that threshold, with a 95 % interval; the network was fine-tuned on them, so that
figure is optimistic. (An earlier rule moved the threshold into the middle of the gap between
the good images and the lowest pseudo-labelled score; it raised the threshold above what the
false-reject target needs, and unseen defects below that middle passed.)

Whether results may name a defect type is decided from the same images (`defect_type_claim`):
the type whose language gives the highest seg score must match the labelled type of the
pseudo-labelled images clearly more often than always answering their commonest type would.
They were trained on, so this accuracy is an upper bound: a model that fails it on them cannot
tell the types apart, and its results then carry no `defect_type`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from adinspect.fitting.calibration import CONFIDENCE, ordinal, rate_statement
from adinspect.metrics.rates import clopper_pearson, threshold_for_rate, upper_bound
from adinspect.runtime.postprocess import passes


@dataclass(frozen=True)
class SegThreshold:
    threshold: float
    rule: str
    target_frr: float
    holdout: list[str]
    holdout_scores: list[float]
    false_rejects: int
    false_reject_rate: float
    false_reject_upper_95: float
    statement: str
    pseudo_labelled: list[str]
    pseudo_scores: list[float]
    pseudo_passed: int
    expected_miss_rate: float | None
    expected_miss_low_95: float | None
    expected_miss_high_95: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def seg_threshold(
    good: np.ndarray,
    good_names: list[str],
    defective: np.ndarray,
    defective_names: list[str],
    target_frr: float,
    floor: float | None = None,
) -> SegThreshold:
    """The rule of the module docstring. good (N,) and defective (M,) are seg scores; M may be 0."""
    if len(good) == 0:
        raise ValueError("no held-out good images to calibrate the seg threshold on")
    threshold = threshold_for_rate(good, target_frr)
    n = len(good)
    rank = int(np.floor(target_frr * n)) + 1
    rule = (
        f"the {ordinal(rank)} largest of {n} held-out good training images' seg scores (never trained "
        f"on; residuals against the bank without each image), for a target false-reject rate of "
        f"{target_frr:.3g}"
    )
    if floor is not None and floor > threshold:
        threshold, rule = float(floor), f"floor {floor:g} (calibration.seg_floor) over {rule}"
    rejected = int((~passes(good, threshold)).sum())  # a broken score counts as rejected, as served
    passed = int(passes(defective, threshold).sum())
    miss: tuple[float | None, float | None, float | None] = (None, None, None)
    if len(defective):
        miss = (passed / len(defective), *clopper_pearson(passed, len(defective), CONFIDENCE))
    return SegThreshold(
        threshold=threshold,
        rule=rule,
        target_frr=target_frr,
        holdout=list(good_names),
        holdout_scores=[float(s) for s in good],
        false_rejects=rejected,
        false_reject_rate=rejected / n,
        false_reject_upper_95=upper_bound(rejected, n, CONFIDENCE),
        statement=rate_statement(rejected, n, target_frr, "held-out good images", "false-reject rate"),
        pseudo_labelled=list(defective_names),
        pseudo_scores=[float(s) for s in defective],
        pseudo_passed=passed,
        expected_miss_rate=miss[0],
        expected_miss_low_95=miss[1],
        expected_miss_high_95=miss[2],
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
