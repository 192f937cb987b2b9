"""COCO-AD set (mF1, mAcc, mIoU over 0.2..0.8, mIoU-max) and IoU: hand-computed cases and a loop."""

from __future__ import annotations

import numpy as np
import pytest

from adinspect.metrics import coco_ad, iou, minmax_normalize, miou_max, segmentation_scores


def row_case() -> tuple[np.ndarray, np.ndarray]:
    # Raw scores 10, 12, 14, 16, 18 normalise to 0, .25, .5, .75, 1; defect pixels are the 3rd and 4th.
    maps = np.array([[[10.0, 12.0, 14.0, 16.0, 18.0]]])
    masks = np.array([[[False, False, True, True, False]]])
    return maps, masks


def test_hand_computed_coco_ad() -> None:
    # Predicted = normalised > t (strict). TP, FP, FN -> F1 = 2TP/(2TP+FP+FN), Acc = TP/(TP+FN),
    # IoU = TP/(TP+FP+FN):
    #   t=0.2        : pixels .25 .5 .75 1 -> TP 2 FP 2 FN 0 -> F1 2/3, Acc 1,  IoU 1/2
    #   t=0.3, 0.4   : .5 .75 1            -> TP 2 FP 1 FN 0 -> F1 4/5, Acc 1,  IoU 2/3
    #   t=0.5, .6, .7: .75 1 (.5 not > .5) -> TP 1 FP 1 FN 1 -> F1 1/2, Acc 1/2, IoU 1/3
    #   t=0.8        : 1                   -> TP 0 FP 1 FN 2 -> 0, 0, 0
    # mF1 = (2/3 + 2 x 4/5 + 3 x 1/2) / 7 = 113/210; mAcc = (3 + 3/2) / 7 = 9/14;
    # mIoU = (1/2 + 2 x 2/3 + 3 x 1/3) / 7 = 17/42.
    # mIoU-max over 0, .05, ..., 1: best at t in [0.25, 0.45] (> .25 keeps .5 .75 1) -> 2/3.
    maps, masks = row_case()
    result = coco_ad(maps, masks)
    assert result["mf1_02_08"] == pytest.approx(113 / 210, abs=1e-15)
    assert result["macc_02_08"] == pytest.approx(9 / 14, abs=1e-15)
    assert result["miou_02_08"] == pytest.approx(17 / 42, abs=1e-15)
    assert miou_max(maps, masks) == pytest.approx(2 / 3, abs=1e-15)


def test_normalisation_is_over_the_whole_set_not_per_image() -> None:
    # Image 0 scores [0, 1], image 1 scores [0, 10]; the second pixel of each is a defect.
    # Global min-max: image 0 -> [0, .1], image 1 -> [0, 1]. For t = .2..0.8 only image 1's defect
    # is predicted: TP 1, FP 0, FN 1 -> F1 2/3, Acc 1/2, IoU 1/2 (per-image scaling would give 1).
    # At t = 0 both defects (0.1 > 0, 1 > 0) -> IoU 1, so mIoU-max = 1.
    maps = np.array([[[0.0, 1.0]], [[0.0, 10.0]]])
    masks = np.array([[[False, True]], [[False, True]]])
    result = coco_ad(maps, masks)
    assert result == pytest.approx({"mf1_02_08": 2 / 3, "macc_02_08": 0.5, "miou_02_08": 0.5}, abs=1e-15)
    assert miou_max(maps, masks) == 1.0


def reference_scores(maps: np.ndarray, masks: np.ndarray, thresholds: list[float]) -> dict[str, list[float]]:
    """One binarisation per threshold over the whole set, as the InvAD authors' evaluator."""
    norm = (maps - maps.min()) / (maps.max() - maps.min())
    out: dict[str, list[float]] = {"f1": [], "acc": [], "iou": []}
    for t in thresholds:
        pred = norm > t
        tp = np.sum(pred & masks)
        fp = np.sum(pred & ~masks)
        fn = np.sum(~pred & masks)
        out["f1"].append(2 * tp / (2 * tp + fp + fn))
        out["acc"].append(tp / (tp + fn))
        out["iou"].append(tp / (tp + fp + fn))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_a_per_threshold_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = rng.random((3, 20, 30)) < 0.1
    maps = (rng.random(masks.shape) + masks * rng.uniform(0, 1)).astype(np.float32)
    coco = [k / 10 for k in range(2, 9)]
    grid = [k / 20 for k in range(21)]
    ref_coco, ref_grid = reference_scores(maps, masks, coco), reference_scores(maps, masks, grid)
    ours = segmentation_scores(maps, masks, np.array(coco))
    for name in ("f1", "acc", "iou"):
        np.testing.assert_allclose(ours[name], ref_coco[name], atol=1e-15)
    result = coco_ad(maps, masks)
    assert result["mf1_02_08"] == pytest.approx(np.mean(ref_coco["f1"]), abs=1e-15)
    assert result["macc_02_08"] == pytest.approx(np.mean(ref_coco["acc"]), abs=1e-15)
    assert result["miou_02_08"] == pytest.approx(np.mean(ref_coco["iou"]), abs=1e-15)
    assert miou_max(maps, masks) == pytest.approx(max(ref_grid["iou"]), abs=1e-15)


def test_constant_maps_predict_nothing() -> None:
    masks = np.zeros((1, 3, 3), dtype=bool)
    masks[0, 1, 1] = True
    maps = np.full((1, 3, 3), 0.7)
    np.testing.assert_array_equal(minmax_normalize(maps), 0.0)
    assert coco_ad(maps, masks) == {"mf1_02_08": 0.0, "macc_02_08": 0.0, "miou_02_08": 0.0}
    assert miou_max(maps, masks) == 0.0


def test_iou() -> None:
    pred = np.array([[1, 1, 0, 0]], dtype=bool)
    gt = np.array([[0, 1, 1, 0]], dtype=bool)
    assert iou(pred, gt) == pytest.approx(1 / 3)  # 1 shared pixel of 3 in the union
    assert iou(np.zeros(4, bool), np.zeros(4, bool)) == 1.0
    with pytest.raises(ValueError, match=r"predicted shape \(1, 4\) and masks shape \(4,\)"):
        iou(pred, gt.ravel())


def test_bad_input() -> None:
    maps, masks = row_case()
    with pytest.raises(ValueError, match=r"maps shape \(1, 1, 5\) and masks shape \(1, 5\)"):
        coco_ad(maps, masks[0])
    with pytest.raises(ValueError, match="masks: expected both classes"):
        miou_max(maps, np.zeros_like(masks))
    maps[0, 0, 2] = np.nan
    with pytest.raises(ValueError, match="maps: expected finite values, got 1 NaN"):
        coco_ad(maps, masks)
