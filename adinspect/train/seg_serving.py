"""Whether a package's ADClick-Seg takes over the verdict, decided on the labelled defects.

A package whose manifest lists 'seg' is judged by the seg score at the seg threshold, and its map
and regions come from the seg model (`runtime/inspector.py`). That is only worth it when the seg
verdict misses no more defects than the verdict it replaces. Both thresholds are set for the same
false-reject target on good images the model never trained on, so the defects they let pass are
comparable: on the pseudo-labelled defects, the training-free verdict (the package's score at its
threshold) never trained on them, while the seg network was fine-tuned on them, so its count is
optimistic. When the seg verdict lets more of them pass even so, serving it would make the line's
verdicts worse: the package keeps its training-free map, score and threshold, and seg.onnx and
seg_model.json stay in it, unserved (`evaluate-seg` still measures them; `train-seg --serve seg`
serves them regardless). A tie serves seg (its map outlines what it was taught). Without
pseudo-labelled defects there is nothing to compare, and seg is served, as trained.
"""

from __future__ import annotations

import numpy as np

from adinspect.runtime.postprocess import passes

CHOICES = ("auto", "seg")
RULE = (
    "serve seg unless, on the pseudo-labelled defects, its score at its threshold lets more of them "
    "pass than the training-free score at the package's threshold does (seg was trained on them, so "
    "its count is optimistic); served without pseudo-labelled defects"
)


def decide_serving(seg_passed: int, free_scores: np.ndarray | None, free_threshold: float, how: str) -> dict:
    """The decision for `how` ("auto": the rule above; "seg": served as set). `seg_passed`: the
    pseudo-labelled defects the seg verdict passes; `free_scores` (M,): their training-free scores,
    None when there are none. A broken score or threshold passes nothing (`passes`)."""
    if how not in CHOICES:
        raise ValueError(f"serve {how!r}: expected one of {CHOICES}")
    decision: dict = {"how": how, "rule": RULE if how == "auto" else "set by the user"}
    if free_scores is None or len(free_scores) == 0:
        return {**decision, "served": True, "n_labelled": 0}
    free_passed = int(passes(np.asarray(free_scores, dtype=np.float64), free_threshold).sum())
    served = how == "seg" or seg_passed <= free_passed
    return {
        **decision,
        "served": served,
        "n_labelled": len(free_scores),
        "seg_passed": int(seg_passed),
        "training_free_passed": free_passed,
        "training_free_threshold": float(free_threshold),
    }


def serving_line(serving: dict) -> str:
    """One line for the command's output (and the labelling page's job status)."""
    if "seg_passed" not in serving:
        return "serves seg (no labelled defects to compare with)"
    counts = (
        f"of {serving['n_labelled']} labelled defects seg passes {serving['seg_passed']}, "
        f"the training-free verdict {serving['training_free_passed']}"
    )
    if serving["served"]:
        return f"serves seg ({counts})"
    return f"keeps the training-free verdict ({counts}; seg.onnx kept unserved, --serve seg serves it)"
