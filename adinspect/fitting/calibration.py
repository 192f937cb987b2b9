"""The threshold for a target false-reject rate, from the good images' out-of-fold scores, and
how far N good images can vouch for it (what calibration.json and the manifest record).

threshold = the (⌊α·N⌋ + 1)-th largest of the N out-of-fold scores (`metrics.rates`), so at most
⌊α·N⌋ of them are rejected. With k of N above it, the false-reject rate of new good parts is at
most the one-sided 95 % Clopper–Pearson bound; when N is so small that even no reject at all
would leave that bound above α, the record says plainly that N cannot show α, and which N could.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from adinspect.metrics.rates import images_to_show, threshold_for_rate, upper_bound

CONFIDENCE = 0.95


@dataclass
class Calibration:
    """What calibration.json records.

    `holdout` names every scored good image (each was held out of the bank while it was scored),
    `holdout_scores` their out-of-fold scores (also the drift monitor's reference), and
    `holdout_files` (relative to the fitted data folder) / `holdout_sha256` let `adinspect repo
    verify --data DIR` find the same images on another host and prove they are the same bytes.
    `bank_index` lets training score them honestly again (each against the bank without it).
    """

    rule: str
    threshold: float
    target_frr: float
    folds: str
    holdout: list[str]
    holdout_scores: list[float]
    false_rejects: int
    false_reject_rate: float
    false_reject_upper_95: float
    statement: str
    holdout_files: list[str] = field(default_factory=list)
    holdout_sha256: list[str] = field(default_factory=list)
    bank_index: list[int] = field(default_factory=list)  # each scored image's place in the bank, -1: none

    def evidence(self) -> dict:
        """The summary the manifest carries (everything but the per-image lists)."""
        keep = ("target_frr", "folds", "false_rejects", "false_reject_rate", "false_reject_upper_95")
        return {
            "n_good": len(self.holdout_scores),
            **{k: asdict(self)[k] for k in keep},
            "statement": self.statement,
        }


def calibrate(scores: np.ndarray, names: list[str], target_frr: float, folds: str) -> Calibration:
    """The threshold for `target_frr` from out-of-fold good scores (N,), and its evidence."""
    scores = np.asarray(scores, np.float64)
    threshold = threshold_for_rate(scores, target_frr)
    n = len(scores)
    rejected = int((scores > threshold).sum())
    rank = int(np.floor(target_frr * n)) + 1
    rule = (
        f"the {ordinal(rank)} largest of {n} good training images' out-of-fold scores ({folds}), "
        f"for a target false-reject rate of {target_frr:.3g}"
    )
    return Calibration(
        rule=rule,
        threshold=threshold,
        target_frr=target_frr,
        folds=folds,
        holdout=list(names),
        holdout_scores=[float(s) for s in scores],
        false_rejects=rejected,
        false_reject_rate=rejected / n,
        false_reject_upper_95=upper_bound(rejected, n, CONFIDENCE),
        statement=rate_statement(rejected, n, target_frr, "good images", "false-reject rate"),
    )


def rate_statement(k: int, n: int, target: float, what: str, rate: str) -> str:
    """A plain sentence: k of n above the threshold, the 95 % upper bound of the rate, and, when n
    is too small for even a clean record to bound the rate under `target`, that and the n needed."""
    bound = upper_bound(k, n, CONFIDENCE)
    head = (
        f"{k} of {n} {what} score above the threshold ({k / n:.1%}); with {CONFIDENCE:.0%} confidence "
        f"the {rate} is at most {bound:.1%}"
    )
    need = images_to_show(target, CONFIDENCE)
    if n < need:
        return (
            f"{head}: {n} {what} cannot show {target:.1%} (that needs at least {need} of them with no "
            "false reject); add good images or accept the bound."
        )
    return f"{head}, within the target {target:.1%}." if bound <= target else f"{head}."


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
