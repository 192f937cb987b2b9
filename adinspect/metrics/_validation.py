"""Input checks shared by the metric functions: one place for shapes, dtypes, NaN and class balance."""

from __future__ import annotations

import numpy as np


def as_scores(scores: np.ndarray, name: str) -> np.ndarray:
    """A numeric score array, finite, in a dtype that sorts exactly (float16/bool widened).

    Args:
        scores: any shape, real numbers.
        name: the argument's name, for error messages.

    Returns:
        The same values, same shape; float16 becomes float32 and bool becomes uint8 (both exact).
    """
    arr = np.asarray(scores)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real-valued scores, got dtype {arr.dtype}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise ValueError(f"{name}: expected finite values, got {n_nan} NaN and {n_inf} infinite entries")
    return arr


def as_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """Binary labels as bool; accepts bool or numbers in {0, 1}. Same shape as the input."""
    arr = np.asarray(labels)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected binary labels (bool or 0/1), got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        values = np.unique(arr[bad])[:5]
        raise ValueError(f"{name}: expected binary labels (bool or 0/1), got values {values.tolist()}")
    return arr == 1


def require_both_classes(labels: np.ndarray, name: str) -> None:
    """Raise unless `labels` (bool, any shape) holds at least one positive and one negative."""
    n_pos = int(np.count_nonzero(labels))
    if n_pos == 0 or n_pos == labels.size:
        only = "positives" if n_pos else "negatives"
        raise ValueError(
            f"{name}: expected both classes (anomalous=True and normal=False), got only {labels.size} {only}"
        )


def check_scores_labels(
    scores: np.ndarray, labels: np.ndarray, names: tuple[str, str] = ("scores", "labels")
) -> tuple[np.ndarray, np.ndarray]:
    """Validate image-level inputs.

    Args:
        scores: (N,) real scores, higher = more anomalous.
        labels: (N,) binary, True/1 = anomalous.
        names: the arguments' names, for error messages.

    Returns:
        scores (N,) and labels (N,) bool.
    """
    scores = as_scores(scores, names[0])
    labels = as_labels(labels, names[1])
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"{names[0]} shape {scores.shape} and {names[1]} shape {labels.shape} must be equal and 1-D, "
            "expected (N,) each"
        )
    require_both_classes(labels, names[1])
    return scores, labels


def check_maps_masks(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate pixel-level inputs.

    Args:
        maps: (N, H, W) real anomaly maps.
        masks: (N, H, W) binary ground truth, True/1 = defect pixel.

    Returns:
        maps (N, H, W) and masks (N, H, W) bool.
    """
    maps = as_scores(maps, "maps")
    masks = as_labels(masks, "masks")
    if maps.ndim != 3 or masks.shape != maps.shape:
        raise ValueError(
            f"maps shape {maps.shape} and masks shape {masks.shape} must be equal and 3-D, "
            "expected (N, H, W) each"
        )
    require_both_classes(masks, "masks")
    return maps, masks
