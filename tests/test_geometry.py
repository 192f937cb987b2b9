"""Input geometry: the rule fit uses to choose the network input, and preprocessing at (H, W)."""

from __future__ import annotations

import numpy as np
import pytest

from adinspect.geometry import (
    MAX_ASPECT,
    PreprocessSpec,
    as_shape,
    check_override,
    choose_input_shape,
    preprocess,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize(
    ("image", "expected", "rule"),
    [
        ((900, 900), (256, 256), "square"),  # MVTec bottle
        ((512, 512), (256, 256), "square"),  # MPDD metal_plate
        ((1000, 880), (256, 256), "square"),  # within 1.15 of square
        ((768, 305), (640, 256), "aspect"),  # KolektorSDD: tall, 2.5:1
        ((768, 311), (640, 256), "aspect"),  # its widest image gives the same input
        ((300, 1000), (256, 832), "aspect"),  # wide: 256 x 3.33 = 853 → 832
        ((100, 2000), (256, 1024), "aspect"),  # 20:1, capped at 4 S
    ],
)
def test_the_input_follows_the_images_aspect(image, expected, rule) -> None:
    geometry = choose_input_shape(image, 256, 64)
    assert geometry.input_shape == expected and geometry.rule == rule
    assert geometry.image_shape == image and f"{image[0]}x{image[1]}" in geometry.reason
    if max(image) / min(image) > MAX_ASPECT:
        assert "capped" in geometry.reason


def test_an_override_may_not_magnify_the_images() -> None:
    assert check_override((768, 320), (768, 305), 64).rule == "override"  # 305 rounds up to 320
    with pytest.raises(ValueError, match="larger than the training images"):
        check_override((832, 320), (768, 305), 64)


def test_specs_without_a_shape_are_square_and_preprocess_fills_the_shape() -> None:
    old = PreprocessSpec.model_validate({"image_size": 64, "mean": MEAN, "std": STD})  # an old package
    assert old.shape == (64, 64)
    tall = PreprocessSpec(image_size=64, mean=MEAN, std=STD, height=128, width=64)
    assert PreprocessSpec.model_validate_json(tall.model_dump_json()) == tall
    image = np.zeros((300, 100, 3), np.uint8)
    image[:150] = 255  # top half white: stays the top half at (128, 64)
    x = preprocess(image, tall)
    assert x.shape == (3, 128, 64)
    assert x[0, :60].mean() > 1.0 > -1.0 > x[0, 68:].mean()
    assert as_shape(5) == (5, 5) and as_shape((3, 4)) == (3, 4)
