"""Whether ADClick-Seg's served map is fused with the training-free map, decided on training-time images.

Fused, the map is sqrt(p · a / t) (`models/export.py: SegGraph`): the seg probability p and the
training-free map a over the package threshold t must agree. That helps where the seg network
turns a moderate residual on a good part into a confident blob (bottle: image AUROC 0.99 -> 1.000,
pixel AP 0.913 -> 0.936 on the evaluation half) and hurts where the seg network outlines defects
much better than the residual does (a generated object product: pixel AP 0.873 -> 0.837).

Rule (auto): on the pseudo-labelled images, against their pseudo labels, with the held-out good
images as negatives, fuse when fusion lowers pixel AP by at most `TOLERANCE`. The seg network was
trained on those very labels, so p is favoured there: a small loss on them goes with a gain on new
images (bottle -0.008 / +0.023 on the evaluation half), a larger one with a loss (the generated
texture and object products -0.031 / +0.001 and -0.025 / -0.036). The margin was set from those
three products, few as they are. With no pseudo-labelled images there is nothing to judge by and
the map is p alone, the paper's.
"""

from __future__ import annotations

import numpy as np

from adinspect.metrics import get_metric

TOLERANCE = 0.01
CHOICES = ("auto", "geometric", "none")
RULE = (
    f"fuse when it lowers pixel AP on the pseudo-labelled images (their pseudo labels; held-out good "
    f"images as negatives) by at most {TOLERANCE}; p alone without pseudo-labelled images"
)


def choose_fusion(
    plain: np.ndarray | None, fused: np.ndarray | None, masks: np.ndarray | None, how: str = "auto"
) -> dict:
    """The decision for `how` ("auto" by the rule; "geometric" / "none" as set). plain and fused
    are the two candidate maps (N, H_in, W_in) of the pseudo-labelled and held-out good images, masks
    their labels (zero for the good ones); None when there are no pseudo-labelled images."""
    if how not in CHOICES:
        raise ValueError(f"fusion {how!r}: expected one of {CHOICES}")
    decision: dict = {"how": how, "rule": RULE if how == "auto" else "set by the user"}
    if how != "auto":
        return {**decision, "kind": how}
    if plain is None or fused is None or masks is None or not masks.any():
        return {**decision, "kind": "none", "pixel_ap": None}
    pixel_ap = get_metric("pixel_ap")  # the metric `evaluate` reports; non-finite maps raise
    measured = {"none": pixel_ap(plain, masks), "geometric": pixel_ap(fused, masks)}
    # rounded as the figures are reported, so a loss of exactly the margin is not refused by 1e-17
    fuse = round(measured["none"] - measured["geometric"], 4) <= TOLERANCE
    return {**decision, "kind": "geometric" if fuse else "none", "pixel_ap": measured}
