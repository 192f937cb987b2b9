"""Whether ADClick-Seg's served map is fused with the training-free map, decided on training-time images.

Fused, the map is sqrt(p · a / t) (`models/export.py: SegGraph`): the seg probability p and the
training-free map a over the package threshold t must agree. That helps where the seg network
turns a moderate residual on a good part into a confident blob (bottle: image AUROC 0.99 -> 1.000,
pixel AP 0.913 -> 0.936 on the evaluation half) and hurts where the seg network outlines defects
much better than the residual does (a generated object product: pixel AP 0.873 -> 0.837).

Rule (auto), on the pseudo-labelled images and the held-out good images (never trained on):
1. The verdict first. For each map, the threshold the seg calibration would set (the target
   false-reject rate on the held-out good images' scores, the map's maximum); the map whose
   threshold lets fewer pseudo-labelled defects pass wins. A line runs on verdicts, and the seg
   network's confident blobs on good parts are what raise the plain map's threshold (KolektorSDD:
   24 of 25 labelled cracked strips pass the seg probability's threshold, 15 the fused map's).
2. On a tie, the outline: fuse when fusion lowers pixel AP (against the pseudo labels, the good
   images as negatives) by at most `TOLERANCE`. The seg network was trained on those very labels,
   so p is favoured there: a small loss on them goes with a gain on new images (bottle -0.008 /
   +0.023 on the evaluation half), a larger one with a loss (the generated texture and object
   products -0.031 / +0.001 and -0.025 / -0.036). The margin was set from those three products,
   few as they are.
With no pseudo-labelled images there is nothing to judge by and the map is p alone, the paper's.
"""

from __future__ import annotations

import numpy as np

from adinspect.metrics import get_metric
from adinspect.train.seg_calibration import seg_threshold

TOLERANCE = 0.01
CHOICES = ("auto", "geometric", "none")
RULE = (
    "the map whose threshold (the target false-reject rate on the held-out good images) lets fewer "
    "pseudo-labelled defects pass; on a tie, fuse when it lowers pixel AP on the pseudo-labelled images "
    f"(their pseudo labels; held-out good images as negatives) by at most {TOLERANCE}; p alone without "
    "pseudo-labelled images"
)


def choose_fusion(
    plain: np.ndarray | None,
    fused: np.ndarray | None,
    masks: np.ndarray | None,
    how: str = "auto",
    n_labelled: int = 0,
    target_frr: float = 0.01,
    floor: float | None = None,
) -> dict:
    """The decision for `how` ("auto" by the rule; "geometric" / "none" as set). plain and fused
    are the two candidate maps (N, H_in, W_in): the `n_labelled` pseudo-labelled images first, then
    the held-out good images; masks their labels (zero for the good ones); None when there are no
    pseudo-labelled images. With `n_labelled` 0 the verdict step has nothing to count (a tie).
    `target_frr` and `floor` are the seg threshold's (`seg_calibration.seg_threshold`)."""
    if how not in CHOICES:
        raise ValueError(f"fusion {how!r}: expected one of {CHOICES}")
    decision: dict = {"how": how, "rule": RULE if how == "auto" else "set by the user"}
    if how != "auto":
        return {**decision, "kind": how}
    if plain is None or fused is None or masks is None or not masks.any() or n_labelled >= len(masks):
        return {**decision, "kind": "none", "pixel_ap": None}
    pixel_ap = get_metric("pixel_ap")  # the metric `evaluate` reports; non-finite maps raise
    measured = {"none": pixel_ap(plain, masks), "geometric": pixel_ap(fused, masks)}
    passed = {
        kind: _passed(maps, n_labelled, target_frr, floor)
        for kind, maps in (("none", plain), ("geometric", fused))
    }
    if passed["none"] != passed["geometric"]:
        kind = min(passed, key=passed.__getitem__)
    else:  # rounded as the figures are reported, so a loss of exactly the margin is not refused by 1e-17
        kind = "geometric" if round(measured["none"] - measured["geometric"], 4) <= TOLERANCE else "none"
    return {**decision, "kind": kind, "pixel_ap": measured, "labelled_passed": passed}


def _passed(maps: np.ndarray, n_labelled: int, target_frr: float, floor: float | None) -> int:
    """Pseudo-labelled defects (the first `n_labelled` maps) whose score, the map's maximum, passes the
    seg threshold the good images (the rest) would get: the calibration's own rule."""
    scores = maps.reshape(len(maps), -1).max(axis=1)
    return seg_threshold(scores[n_labelled:], [], scores[:n_labelled], [], target_frr, floor).pseudo_passed
