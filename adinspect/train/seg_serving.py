"""Whether a package's ADClick-Seg takes over the verdict, decided on training-time evidence.

A package whose manifest lists 'seg' is judged by the seg score at the seg threshold, and its map
and regions come from the seg model (`runtime/inspector.py`). That is only worth it when the seg
verdict is the one a line can trust more, and each verdict has two rates to trust:
- its miss rate, counted on the pseudo-labelled defects: the training-free verdict (the package's
  score at its threshold) never trained on them, while the seg network was fine-tuned on them, so
  its count is optimistic;
- its false-reject rate, which rests on good images the verdict never trained on: every good
  training image for the training-free threshold (scored out of fold), only the share held out of
  seg's training for the seg threshold. With few good images the seg threshold is the weaker
  (metal_plate: 16 held-out plates bound seg's rate at 17 %, 54 plates the training-free one at
  5.4 %; the seg threshold then rejected 3 of 26 good test plates, the training-free one none).
Rule: seg is served unless its worst case, the 95 % upper bounds of its miss rate and of its
false-reject rate added, is larger than the training-free verdict's; equal, seg is served (its map
outlines what it was taught). So a seg verdict that lets more labelled defects pass is served
only on a clearly better-founded threshold, one that lets as many pass only on one as well founded,
and one that catches a few more must also not lose it on the good images. Not served, the package keeps its
training-free map, score and threshold, and seg.onnx and seg_model.json stay in it, unserved
(`evaluate-seg` still measures them; `train-seg --serve seg` serves them regardless). Without
pseudo-labelled defects there is nothing to compare, and seg is served, as trained; a package
that records no false-reject bound (fitted before it was recorded) compares misses alone.
"""

from __future__ import annotations

import numpy as np

from adinspect.fitting.calibration import CONFIDENCE
from adinspect.metrics.rates import upper_bound
from adinspect.runtime.postprocess import passes

CHOICES = ("auto", "seg")
RULE = (
    "serve seg unless its worst case, the 95 % upper bounds of its miss rate on the pseudo-labelled "
    "defects (trained on them, so optimistic) and of its false-reject rate on the good images it "
    "never trained on, added, is larger than the training-free verdict's; served without "
    "pseudo-labelled defects"
)


def decide_serving(
    seg_passed: int,
    free_scores: np.ndarray | None,
    free_threshold: float,
    how: str,
    seg_false_reject: tuple[int, int] | None = None,
    free_false_reject: tuple[int, int] | None = None,
) -> dict:
    """The decision for `how` ("auto": the rule above; "seg": served as set).

    Args:
        seg_passed: the pseudo-labelled defects the seg verdict passes.
        free_scores: (M,) their training-free scores, None when there are none. A broken score or
            threshold passes nothing (`passes`).
        free_threshold: the package's threshold.
        seg_false_reject / free_false_reject: (rejected, scored) good images behind each threshold;
            None when unknown, and the rule compares misses alone.
    """
    if how not in CHOICES:
        raise ValueError(f"serve {how!r}: expected one of {CHOICES}")
    decision: dict = {"how": how, "rule": RULE if how == "auto" else "set by the user"}
    if free_scores is None or len(free_scores) == 0:
        return {**decision, "served": True, "n_labelled": 0}
    n = len(free_scores)
    free_passed = int(passes(np.asarray(free_scores, dtype=np.float64), free_threshold).sum())
    decision.update(
        n_labelled=n,
        seg_passed=int(seg_passed),
        training_free_passed=free_passed,
        training_free_threshold=float(free_threshold),
    )
    if seg_false_reject is None or free_false_reject is None:
        return {**decision, "served": how == "seg" or seg_passed <= free_passed}
    seg_bound = upper_bound(*seg_false_reject, CONFIDENCE)
    free_bound = upper_bound(*free_false_reject, CONFIDENCE)
    seg_worst = upper_bound(int(seg_passed), n, CONFIDENCE) + seg_bound
    free_worst = upper_bound(free_passed, n, CONFIDENCE) + free_bound
    return {
        **decision,
        "served": how == "seg" or seg_worst <= free_worst,
        "seg_false_reject_upper_95": seg_bound,
        "training_free_false_reject_upper_95": free_bound,
        "seg_worst_case": seg_worst,
        "training_free_worst_case": free_worst,
    }


def serving_line(serving: dict) -> str:
    """One line for the command's output (and the labelling page's job status)."""
    if "seg_passed" not in serving:
        return "serves seg (no labelled defects to compare with)"
    counts = (
        f"of {serving['n_labelled']} labelled defects seg passes {serving['seg_passed']}, "
        f"the training-free verdict {serving['training_free_passed']}"
    )
    if "seg_worst_case" in serving:
        seg, free = serving["seg_worst_case"], serving["training_free_worst_case"]
        counts += (
            f"; false-reject bound seg {serving['seg_false_reject_upper_95']:.1%}, training-free "
            f"{serving['training_free_false_reject_upper_95']:.1%}; worst case (miss + false-reject "
            f"bounds) seg {seg:.1%}, training-free {free:.1%}"
        )
    if serving["served"]:
        return f"serves seg ({counts})"
    return f"keeps the training-free verdict ({counts}; seg.onnx kept unserved, --serve seg serves it)"
