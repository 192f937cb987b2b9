"""Metrics looked up by name, and `compute_metrics` that evaluates a set of them in one call."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from adinspect.metrics import pro, ranking, segmentation
from adinspect.metrics._validation import check_maps_masks, check_scores_labels

Level = Literal["image", "pixel"]


@dataclass(frozen=True)
class Metric:
    """A named metric, split in two so that `compute_metrics` runs each shared `prepare` once.

    `prepare` takes (scores (N,), labels (N,)) at image level or (maps, masks) (N, H, W) at pixel
    level and returns an intermediate (a curve, per-threshold scores); `reduce` turns that into the
    value. Calling the metric does both.
    """

    name: str
    level: Level
    prepare: Callable[[np.ndarray, np.ndarray], Any]
    reduce: Callable[[Any], float]

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self.reduce(self.prepare(a, b)))


_REGISTRY: dict[str, Metric] = {}
METRICS: Mapping[str, Metric] = MappingProxyType(_REGISTRY)


def register_metric(
    name: str,
    level: Level,
    prepare: Callable[[np.ndarray, np.ndarray], Any],
    reduce: Callable[[Any], float],
) -> Metric:
    """Add a metric under `name`; duplicate names and unknown levels raise."""
    if name in _REGISTRY:
        raise ValueError(f"metric {name!r} is already registered")
    if level not in ("image", "pixel"):
        raise ValueError(f"metric {name!r}: level expected 'image' or 'pixel', got {level!r}")
    metric = Metric(name, level, prepare, reduce)
    _REGISTRY[name] = metric
    return metric


def list_metrics() -> list[str]:
    """Names of all registered metrics, in registration order (the order of `compute_metrics`)."""
    return list(_REGISTRY)


def get_metric(name: str) -> Metric:
    """The metric registered under `name`; unknown names raise listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}, expected one of {list_metrics()}") from None


def _coco(key: str) -> Callable[[dict[str, np.ndarray]], float]:
    return lambda scores: segmentation.coco_ad_from_grid(scores)[key]


register_metric("image_auroc", "image", ranking.binary_curve, ranking.auroc_from_curve)
register_metric("image_ap", "image", ranking.binary_curve, ranking.ap_from_curve)
register_metric("image_f1_max", "image", ranking.binary_curve, ranking.f1_max_from_curve)
register_metric("pixel_auroc", "pixel", ranking.pixel_curve, ranking.auroc_from_curve)
register_metric("pixel_ap", "pixel", ranking.pixel_curve, ranking.ap_from_curve)
register_metric("aupro", "pixel", pro.pro_curve, pro.aupro_from_curve)  # FPR limit 0.3
register_metric("pixel_f1_max", "pixel", ranking.pixel_curve, ranking.f1_max_from_curve)
register_metric("miou_max", "pixel", segmentation.grid_scores, segmentation.miou_max_from_grid)
for _key in ("mf1_02_08", "macc_02_08", "miou_02_08"):
    register_metric(_key, "pixel", segmentation.grid_scores, _coco(_key))


def compute_metrics(
    image_scores: np.ndarray,
    image_labels: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray,
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Evaluate registered metrics on one class's test set.

    Args:
        image_scores: (N,) real, higher = more anomalous.
        image_labels: (N,) binary, True/1 = defective image; both classes needed.
        maps: (N, H, W) real anomaly maps, no NaN.
        masks: (N, H, W) binary ground truth; defect and defect-free pixels needed.
        names: metrics to compute (default: all, see `list_metrics()`).

    Returns:
        {name: value} in the order of `names`, every value a float in [0, 1].
    """
    metrics = [get_metric(name) for name in (list_metrics() if names is None else names)]
    image_scores, image_labels = check_scores_labels(
        image_scores, image_labels, ("image_scores", "image_labels")
    )
    maps, masks = check_maps_masks(maps, masks)
    if image_scores.shape[0] != maps.shape[0]:
        raise ValueError(
            f"image_scores shape {image_scores.shape} and maps shape {maps.shape} must agree on N, "
            "expected (N,) and (N, H, W)"
        )
    prepared: dict[tuple[Level, Callable], Any] = {}  # each shared prepare step (one sort) runs once
    results: dict[str, float] = {}
    for metric in metrics:
        key = (metric.level, metric.prepare)
        if key not in prepared:
            args = (image_scores, image_labels) if metric.level == "image" else (maps, masks)
            prepared[key] = metric.prepare(*args)
        results[metric.name] = float(metric.reduce(prepared[key]))
    return results
