"""Anomaly detection metrics: pure numpy/scipy functions over arrays, looked up by name (no torch).

Image level: scores (N,), labels (N,). Pixel level: maps (N, H, W), masks (N, H, W).
"""

from adinspect.metrics.pro import aupro, pro_curve
from adinspect.metrics.ranking import (
    auroc,
    average_precision,
    f1_max,
    pixel_ap,
    pixel_auroc,
    pixel_f1_max,
    pr_curve,
    roc_curve,
)
from adinspect.metrics.registry import (
    METRICS,
    Metric,
    compute_metrics,
    get_metric,
    list_metrics,
    register_metric,
)
from adinspect.metrics.segmentation import (
    coco_ad,
    iou,
    macc_02_08,
    mf1_02_08,
    minmax_normalize,
    miou_02_08,
    miou_max,
    segmentation_scores,
)

__all__ = [
    "METRICS",
    "Metric",
    "aupro",
    "auroc",
    "average_precision",
    "coco_ad",
    "compute_metrics",
    "f1_max",
    "get_metric",
    "iou",
    "list_metrics",
    "macc_02_08",
    "mf1_02_08",
    "minmax_normalize",
    "miou_02_08",
    "miou_max",
    "pixel_ap",
    "pixel_auroc",
    "pixel_f1_max",
    "pr_curve",
    "pro_curve",
    "register_metric",
    "roc_curve",
    "segmentation_scores",
]
