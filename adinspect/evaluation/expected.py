"""What a package says to expect at its threshold, set beside what `evaluate` measures.

False rejects: the target the threshold was set for, the good training images' out-of-fold rate
and its 95 % upper bound (calibration.json, or seg_model.json when ADClick-Seg decides). Misses:
with labelled defective images (`adinspect label` wrote labels/labels.json), how many of them score
at or under the threshold, with a 95 % Clopper–Pearson interval. ADClick-Seg was fine-tuned on
those very images, so with seg that figure is optimistic (a lower bound in practice).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from adinspect.metrics.rates import clopper_pearson
from adinspect.package import LABELS_DIR, LABELS_JSON, ModelPackage
from adinspect.runtime.postprocess import passes

ImageKey = tuple[str, str]


def image_key(path: Path) -> ImageKey:
    """(defect folder, file name): labels.json keeps paths as given, relative to where `label` ran."""
    return path.parent.name, path.name


def stated_false_rejects(package: ModelPackage, seg_meta: Path | None) -> dict[str, object]:
    """The false-reject rate the package states for its served threshold (a unified package states
    one per product in its model card)."""
    if package.is_unified:
        return {}
    if seg_meta is not None:
        record = json.loads(seg_meta.read_text())["calibration"]
    else:
        record = json.loads(package.path("calibration.json").read_text())
    out: dict[str, object] = {}
    for key, name in (
        ("target_frr", "target_false_reject_rate"),
        ("false_reject_rate", "stated_false_reject_rate"),
        ("false_reject_upper_95", "stated_false_reject_upper_95"),
        ("statement", "threshold_statement"),
    ):
        if key in record:
            out[name] = record[key]
    return out


def labelled_images(model_dir: Path) -> list[Path]:
    """Images `adinspect label` pseudo-labelled (labels/labels.json), none when it never ran."""
    path = Path(model_dir) / LABELS_DIR / LABELS_JSON
    if not path.is_file():
        return []
    return [Path(entry["image"]) for entry in json.loads(path.read_text()).get("images", [])]


def expected_misses(
    labelled: list[Path],
    scored: Mapping[ImageKey, float],
    threshold: float,
    score_of: Callable[[Path], float],
) -> dict[str, object]:
    """How many labelled defective images pass at `threshold` (score at or under it, finite).

    Scores come from `scored` (the evaluation's own, by image key) or else from `score_of(path)`.
    """
    if not labelled:
        return {}
    found = [scored.get(image_key(p)) for p in labelled]
    scores = np.array([score_of(p) if s is None else s for p, s in zip(labelled, found, strict=True)])
    passed = int(passes(scores, threshold).sum())
    low, high = clopper_pearson(passed, len(labelled))
    return {
        "labelled_defects": len(labelled),
        "labelled_passed": passed,
        "expected_miss_rate": passed / len(labelled),
        "expected_miss_low_95": low,
        "expected_miss_high_95": high,
    }
