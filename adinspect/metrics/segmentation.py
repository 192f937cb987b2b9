"""Thresholded segmentation metrics: IoU and the COCO-AD set of the InvAD paper (Zhang et al. 2024).

COCO-AD protocol: the maps of one class's whole test set are min-max normalised together to [0, 1];
at threshold t a pixel is predicted defective when its normalised score is > t (strict, as in the
authors' ADer code). TP, FP and FN are summed over the whole set (not per image) and, for the
defect class, F1 = 2TP / (2TP + FP + FN), Acc = recall = TP / (TP + FN), IoU = TP / (TP + FP + FN).
mF1 / mAcc / mIoU average these over t = 0.2, 0.3, ..., 0.8; mIoU-max is the best IoU over
t = 0, 0.05, ..., 1. Thresholds are the exact decimals k/10 and k/20.
"""

from __future__ import annotations

import numpy as np

from adinspect.metrics._validation import as_labels, check_maps_masks

THRESHOLD_GRID = np.arange(0, 21) / 20.0  # 0, 0.05, ..., 1: the mIoU-max thresholds
COCO_AD_THRESHOLDS = np.arange(2, 9) / 10.0  # 0.2, 0.3, ..., 0.8
_COCO_ON_GRID = np.isin(THRESHOLD_GRID, COCO_AD_THRESHOLDS)  # k/10 == 2k/20 exactly in floating point


def minmax_normalize(maps: np.ndarray) -> np.ndarray:
    """Scale all maps together to [0, 1] with the global min and max.

    Args:
        maps: (N, H, W) real, finite.

    Returns:
        (N, H, W) float64; all zeros when the maps are constant.
    """
    maps = np.asarray(maps, dtype=np.float64)
    lo, hi = float(maps.min()), float(maps.max())
    if hi == lo:
        return np.zeros_like(maps)
    return (maps - lo) / (hi - lo)


def _count_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(T,) int64: how many of `values` (any shape) are > each threshold (T,); a loop over T only."""
    return np.array([np.count_nonzero(values > t) for t in thresholds], dtype=np.int64)


def confusion_at_thresholds(
    maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dataset-level TP, FP, FN of `normalised map > t` for every threshold.

    Args:
        maps: (N, H, W) real; min-max normalised over the whole set here.
        masks: (N, H, W) binary ground truth with defect and defect-free pixels.
        thresholds: (T,) in normalised units.

    Returns:
        tp, fp, fn, each (T,) int64.
    """
    maps, masks = check_maps_masks(maps, masks)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size == 0:
        raise ValueError(f"thresholds: expected a non-empty 1-D array, got shape {thresholds.shape}")
    normalized = minmax_normalize(maps)
    predicted = _count_above(normalized, thresholds)
    tp = _count_above(normalized[masks], thresholds)
    fn = int(np.count_nonzero(masks)) - tp
    return tp, predicted - tp, fn


def segmentation_scores(maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """F1, Acc (= recall) and IoU of the defect class at every threshold (COCO-AD definitions).

    Args:
        maps: (N, H, W) real. masks: (N, H, W) binary. thresholds: (T,) normalised units.

    Returns:
        {"f1": (T,), "acc": (T,), "iou": (T,)} float64 arrays.
    """
    tp, fp, fn = confusion_at_thresholds(maps, masks, thresholds)
    return {"f1": 2 * tp / (2 * tp + fp + fn), "acc": tp / (tp + fn), "iou": tp / (tp + fp + fn)}


def grid_scores(maps: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """`segmentation_scores` on THRESHOLD_GRID (0, 0.05, ..., 1), which contains the COCO-AD thresholds.

    Args:
        maps: (N, H, W) real. masks: (N, H, W) binary.

    Returns:
        {"f1", "acc", "iou"}: (21,) float64 arrays.
    """
    return segmentation_scores(maps, masks, THRESHOLD_GRID)


def coco_ad_from_grid(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """mF1, mAcc, mIoU over 0.2..0.8 from `grid_scores` output: {"mf1_02_08", "macc_02_08", "miou_02_08"}."""
    return {f"m{name}_02_08": float(values[_COCO_ON_GRID].mean()) for name, values in scores.items()}


def miou_max_from_grid(scores: dict[str, np.ndarray]) -> float:
    """Best IoU over 0, 0.05, ..., 1 from `grid_scores` output."""
    return float(scores["iou"].max())


def coco_ad(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """mF1, mAcc and mIoU over thresholds 0.2, 0.3, ..., 0.8.

    Args:
        maps: (N, H, W) real. masks: (N, H, W) binary.

    Returns:
        {"mf1_02_08", "macc_02_08", "miou_02_08"} floats in [0, 1].
    """
    return coco_ad_from_grid(grid_scores(maps, masks))


def mf1_02_08(maps: np.ndarray, masks: np.ndarray) -> float:
    """Mean F1 over thresholds 0.2..0.8 (COCO-AD). maps (N, H, W), masks (N, H, W)."""
    return coco_ad(maps, masks)["mf1_02_08"]


def macc_02_08(maps: np.ndarray, masks: np.ndarray) -> float:
    """Mean recall over thresholds 0.2..0.8 (COCO-AD). maps (N, H, W), masks (N, H, W)."""
    return coco_ad(maps, masks)["macc_02_08"]


def miou_02_08(maps: np.ndarray, masks: np.ndarray) -> float:
    """Mean IoU over thresholds 0.2..0.8 (COCO-AD). maps (N, H, W), masks (N, H, W)."""
    return coco_ad(maps, masks)["miou_02_08"]


def miou_max(maps: np.ndarray, masks: np.ndarray) -> float:
    """Best dataset-level IoU over thresholds 0, 0.05, ..., 1. maps (N, H, W), masks (N, H, W)."""
    return miou_max_from_grid(grid_scores(maps, masks))


def iou(predicted: np.ndarray, masks: np.ndarray) -> float:
    """Intersection over union of a binary prediction with the ground truth, over all pixels.

    Args:
        predicted: binary, any shape. masks: binary, same shape.

    Returns:
        TP / (TP + FP + FN); 1.0 when both are empty.
    """
    predicted, masks = as_labels(predicted, "predicted"), as_labels(masks, "masks")
    if predicted.shape != masks.shape:
        raise ValueError(f"predicted shape {predicted.shape} and masks shape {masks.shape} must be equal")
    union = int(np.count_nonzero(predicted | masks))
    return 1.0 if union == 0 else int(np.count_nonzero(predicted & masks)) / union
