"""Foreground masks: an object on a plain background is found; a texture gets none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adinspect.data.foreground import foreground_mask, product_foregrounds
from adinspect.data.synthetic import make_synthetic_dataset
from adinspect.imageio import read_image


def test_a_disc_on_a_dark_background_with_a_dark_hole() -> None:
    yy, xx = np.mgrid[:96, :96]
    image = np.full((96, 96, 3), 12, np.uint8)
    image[(yy - 48) ** 2 + (xx - 40) ** 2 < 30**2] = (180, 170, 160)
    image[(yy - 48) ** 2 + (xx - 40) ** 2 < 8**2] = 12  # the bottle's dark mouth is still the object
    mask = foreground_mask(image)
    disc = (yy - 48) ** 2 + (xx - 40) ** 2 < 30**2
    assert (mask == disc).mean() > 0.98


@pytest.mark.parametrize(("kind", "is_object"), [("object", True), ("texture", False)])
def test_products_are_told_apart(tmp_path: Path, kind: str, is_object: bool) -> None:
    root = make_synthetic_dataset(
        tmp_path / kind, kind=kind, n_train=4, n_test_good=0, n_test_defect=0, size=96
    )
    images = [read_image(p) for p in sorted((root / "train" / "good").glob("*.png"))]
    masks = product_foregrounds(images)
    assert (masks is not None) == is_object
    if masks is not None:
        assert all(0.05 < m.mean() < 0.9 for m in masks)


@pytest.mark.real_data
def test_bottle_foreground_is_the_bottle(bottle_root: Path) -> None:
    import cv2

    images = [
        cv2.resize(read_image(p), (256, 256))
        for p in sorted((bottle_root / "train" / "good").glob("*.png"))[:5]
    ]
    masks = product_foregrounds(images)
    assert masks is not None
    for m in masks:
        assert 0.3 < m.mean() < 0.9 and m[128, 128] and not m[2, 2]
