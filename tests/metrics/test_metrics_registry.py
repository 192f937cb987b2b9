"""The metric registry and `compute_metrics`: names, values, and validation of all four inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from adinspect.metrics import (
    METRICS,
    aupro,
    coco_ad,
    compute_metrics,
    get_metric,
    list_metrics,
    miou_max,
    pixel_f1_max,
    register_metric,
)
from adinspect.metrics.ranking import f1_max

REQUIRED = [
    "image_auroc",
    "image_ap",
    "image_f1_max",
    "pixel_auroc",
    "pixel_ap",
    "aupro",
    "pixel_f1_max",
    "miou_max",
    "mf1_02_08",
    "macc_02_08",
    "miou_02_08",
]


def test_set() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    masks = np.zeros((6, 32, 32), dtype=bool)
    masks[0, 4:12, 4:10] = True
    masks[1, 20:30, 15:18] = True
    masks[1, 2:4, 2:4] = True
    masks[2, 10:20, 10:20] = True
    maps = (rng.random(masks.shape) + 0.8 * masks).astype(np.float32)
    labels = masks.any(axis=(1, 2))
    scores = maps.max(axis=(1, 2))
    return scores, labels, maps, masks


test_set.__test__ = False  # a helper, not a test


def test_required_names_are_registered() -> None:
    assert set(REQUIRED) <= set(list_metrics())
    assert list(METRICS) == list_metrics()


def test_compute_metrics_equals_the_individual_functions() -> None:
    scores, labels, maps, masks = test_set()
    result = compute_metrics(scores, labels, maps, masks)
    assert list(result) == list_metrics()
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in result.values())
    assert result["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result["image_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert result["image_f1_max"] == f1_max(scores, labels)
    assert result["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert result["pixel_ap"] == pytest.approx(
        average_precision_score(masks.ravel(), maps.ravel()), abs=1e-12
    )
    assert result["pixel_f1_max"] == pixel_f1_max(maps, masks)
    assert result["aupro"] == aupro(maps, masks, fpr_limit=0.3)
    assert result["miou_max"] == miou_max(maps, masks)
    for key, value in coco_ad(maps, masks).items():
        assert result[key] == value
    for name in REQUIRED:  # each registered metric is callable on its own
        metric = get_metric(name)
        args = (scores, labels) if metric.level == "image" else (maps, masks)
        assert metric(*args) == result[name]


def test_selected_names_in_the_given_order() -> None:
    scores, labels, maps, masks = test_set()
    assert list(compute_metrics(scores, labels, maps, masks, names=["aupro", "image_ap"])) == [
        "aupro",
        "image_ap",
    ]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown metric 'auc'.*'image_auroc'.*'miou_02_08'"):
        get_metric("auc")
    scores, labels, maps, masks = test_set()
    with pytest.raises(KeyError, match="unknown metric 'pro'"):
        compute_metrics(scores, labels, maps, masks, names=["pro"])


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="'aupro' is already registered"):
        register_metric("aupro", "pixel", lambda a, b: 0, float)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s, y, m, k: (s[:-1], y, m, k), r"image_scores shape \(5,\) and image_labels shape \(6,\)"),
        (
            lambda s, y, m, k: (s, np.ones_like(y), m, k),
            "image_labels: expected both classes.*only 6 positives",
        ),
        (lambda s, y, m, k: (s, y, m[:, :-1], k), r"maps shape \(6, 31, 32\) and masks shape \(6, 32, 32\)"),
        (lambda s, y, m, k: (s, y, m[0], k[0]), r"expected \(N, H, W\)"),
        (
            lambda s, y, m, k: (s[2:5], y[2:5], m, k),
            r"image_scores shape \(3,\) and maps shape \(6, 32, 32\)",
        ),
        (lambda s, y, m, k: (s, y, np.where(k, np.nan, m), k), "maps: expected finite values"),
        (lambda s, y, m, k: (s, y, m, np.zeros_like(k)), "masks: expected both classes"),
    ],
)
def test_bad_input_is_rejected(change, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(*change(*test_set()))
