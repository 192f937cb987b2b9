"""AUPRO: hand-computed cases and a slow threshold-by-threshold reference written here."""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pytest
from scipy import ndimage

from adinspect.metrics import aupro, pro_curve
from adinspect.metrics.pro import area_up_to, label_regions


def reference_pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Straightforward sweep: for every distinct score t (descending) binarise maps >= t, then per image
    label the ground truth (8-connectivity) and average the overlap of each component."""
    regions = [ndimage.label(m, structure=np.ones((3, 3), dtype=int))[0] for m in masks]
    negatives = ~masks
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        predicted = maps >= t
        overlaps = []
        for image_regions, image_pred in zip(regions, predicted, strict=True):
            for k in range(1, image_regions.max() + 1):
                component = image_regions == k
                overlaps.append(image_pred[component].sum() / component.sum())
        fprs.append((predicted & negatives).sum() / negatives.sum())
        pros.append(float(np.mean(overlaps)))
    return np.array(fprs), np.array(pros)


def reference_area(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid up to x_max with a linear interpolation there (as the MVTec evaluation script)."""
    x, y = list(x), list(y)
    correction = 0.0
    if x_max not in x:
        i = bisect_right(x, x_max)
        y_at = y[i - 1] + (y[i] - y[i - 1]) * (x_max - x[i - 1]) / (x[i] - x[i - 1])
        correction = 0.5 * (y_at + y[i - 1]) * (x_max - x[i - 1])
    keep = [j for j in range(len(x)) if x[j] <= x_max]
    return (
        sum(0.5 * (y[a] + y[b]) * (x[b] - x[a]) for a, b in zip(keep[:-1], keep[1:], strict=True))
        + correction
    )


def test_two_regions_and_diagonal_connectivity() -> None:
    # 4x4 image. Ground truth: (0,0) and (1,1) touch diagonally -> ONE region A of 2 pixels with
    # 8-connectivity; (3,3) is region B. 13 negatives: (0,1)=0.8, (2,2)=0.6, (3,0)=0.4, ten at 0.
    # Scores: A = 0.9 and 0.5, B = 0.55.
    #   t=0.9 : PRO (1/2 + 0)/2 = 0.25, FPR 0
    #   t=0.8 : FPR 1/13     t=0.6 : FPR 2/13
    #   t=0.55: PRO (1/2 + 1)/2 = 0.75   t=0.5: PRO 1   t=0.4: FPR 3/13   t=0: FPR 1
    # Area up to 0.3 = 0.25 x 2/13 + 1 x (0.3 - 2/13) = 0.3 - 1.5/13; AUPRO = 1 - 1.5/3.9 = 0.615385.
    # (4-connectivity would give three regions and 1 - (4/39)/0.3 = 0.658120.)
    maps = np.zeros((1, 4, 4))
    masks = np.zeros((1, 4, 4), dtype=bool)
    for (r, c), score in {(0, 0): 0.9, (1, 1): 0.5, (3, 3): 0.55}.items():
        masks[0, r, c], maps[0, r, c] = True, score
    for (r, c), score in {(0, 1): 0.8, (2, 2): 0.6, (3, 0): 0.4}.items():
        maps[0, r, c] = score
    assert label_regions(masks)[1] == 2
    assert aupro(maps, masks) == pytest.approx(1 - 1.5 / 3.9, abs=1e-12)
    fpr, pro = pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 13, 2 / 13, 2 / 13, 2 / 13, 3 / 13, 1], atol=1e-15)
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.25, 0.75, 1, 1, 1], atol=1e-15)


def test_tie_between_defect_and_normal_pixel_is_interpolated_at_the_limit() -> None:
    # One row: defect pixel 0.5 tied with a normal pixel 0.5; normals 0.9, 0.1, 0.1 (4 negatives).
    #   t=0.9: (FPR 1/4, PRO 0); t=0.5: (2/4, 1); t=0.1: (1, 1). Curve (0,0) (.25,0) (.5,1) (1,1).
    # At FPR 0.3 the segment gives PRO (0.3 - 0.25)/0.25 = 0.2: area 0.5 x 0.05 x 0.2 = 0.005,
    # AUPRO(0.3) = 0.005 / 0.3 = 1/60. Up to FPR 1: 0.5 x 0.25 x 1 + 0.5 x 1 = 0.625.
    maps = np.array([[[0.5, 0.5, 0.9, 0.1, 0.1]]])
    masks = np.array([[[True, False, False, False, False]]])
    assert aupro(maps, masks) == pytest.approx(1 / 60, abs=1e-15)
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.625, abs=1e-15)


def test_fpr_counts_negatives_of_all_images_and_regions_stay_per_image() -> None:
    # Image 0: defect pixel (0,0) score 1, rest 0. Image 1 (good): normal pixel (0,0) score 1, rest 0.
    # Image 2: defect pixel (0,0) score 0. Same position in consecutive images: 2 separate regions.
    # 3 images x 4 pixels, 2 defect pixels -> 10 negatives.
    #   t=1: PRO (1 + 0)/2 = 0.5, FPR 1/10;  t=0: PRO 1, FPR 1. Curve (0,0) (0.1,0.5) (1,1).
    # At 0.3: PRO 0.5 + 0.5 x (0.2/0.9) = 0.6111; area = 0.5 x 0.1 x 0.5 + 0.5 x 0.2 x (0.5 + 0.6111).
    maps = np.zeros((3, 2, 2))
    masks = np.zeros((3, 2, 2), dtype=bool)
    maps[0, 0, 0] = maps[1, 0, 0] = 1.0
    masks[0, 0, 0] = masks[2, 0, 0] = True
    assert label_regions(masks)[1] == 2
    pro_at = 0.5 + 0.5 * 0.2 / 0.9
    expected = (0.5 * 0.1 * 0.5 + 0.5 * 0.2 * (0.5 + pro_at)) / 0.3
    assert aupro(maps, masks) == pytest.approx(expected, abs=1e-15)


def random_blobs(seed: int, n: int = 4, size: int = 24, levels: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 2, 2))
    masks = smooth > np.quantile(smooth, 0.9)
    masks[-1] = False  # one defect-free image
    noisy = smooth + rng.normal(scale=smooth.std(), size=smooth.shape)
    maps = np.round(noisy * levels / (4 * smooth.std())) / levels  # quantised: ties across classes
    return maps.astype(np.float32), masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curve_and_area_equal_the_slow_reference(seed: int) -> None:
    maps, masks = random_blobs(seed)
    fpr, pro = pro_curve(maps, masks)
    ref_fpr, ref_pro = reference_pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(pro, ref_pro, atol=1e-12)
    for limit in (0.05, 0.3, 1.0):
        expected = reference_area(ref_fpr, ref_pro, limit) / limit
        assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(expected, abs=1e-12)


def test_area_up_to_interpolates_and_handles_exact_limit() -> None:
    x = np.array([0.0, 0.2, 0.2, 0.6, 1.0])
    y = np.array([0.0, 0.4, 0.6, 1.0, 1.0])
    # Up to 0.2 exactly: triangle 0.5 x 0.2 x 0.4 = 0.04 (the vertical step adds nothing).
    assert area_up_to(x, y, 0.2) == pytest.approx(0.04)
    # Up to 0.4: + trapezoid from (0.2, 0.6) to (0.4, 0.8) = 0.2 x 0.7 = 0.14.
    assert area_up_to(x, y, 0.4) == pytest.approx(0.18)
    with pytest.raises(ValueError, match="x_max"):
        area_up_to(x, y, 1.5)


def test_bad_input() -> None:
    maps, masks = random_blobs(0)
    with pytest.raises(ValueError, match=r"fpr_limit: expected a value in \(0, 1\], got 0"):
        aupro(maps, masks, fpr_limit=0)
    with pytest.raises(ValueError, match="masks: expected both classes"):
        aupro(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match=r"maps shape \(4, 24, 24\) and masks shape \(4, 24, 23\)"):
        aupro(maps, masks[:, :, :-1])
    maps[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="maps: expected finite values"):
        aupro(maps, masks)
