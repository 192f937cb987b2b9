"""Synthetic anomalies (Perlin masks, foreign fills)."""

from __future__ import annotations

import numpy as np
import pytest

from adinspect.data.anomalies import AnomalySettings, perlin_noise, synthesize_anomaly


def _image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(80, 120, (64, 64, 3), dtype=np.uint8)


def test_same_seed_same_anomaly_and_pixels_change_only_inside_the_mask() -> None:
    a = synthesize_anomaly(_image(), np.random.default_rng(7))
    b = synthesize_anomaly(_image(), np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    img, mask, kind = a
    assert kind in {"texture", "colour", "image"} and set(np.unique(mask)) <= {0, 1}
    s = AnomalySettings()
    assert s.min_area <= mask.mean() <= s.max_area
    np.testing.assert_array_equal(img[mask == 0], _image()[mask == 0])


def test_every_kind_paints_something() -> None:
    for kind in ("texture", "colour", "image"):
        settings = AnomalySettings(kinds=(kind,), beta_range=(0.0, 0.0))
        img, mask, got = synthesize_anomaly(
            _image(), np.random.default_rng(3), settings, donors=[_image()[::-1]]
        )
        assert got == kind
        diff = np.abs(img.astype(int) - _image().astype(int)).sum(-1)
        assert diff[mask == 1].mean() > 5


def test_foreground_confines_the_mask() -> None:
    fg = np.zeros((64, 64), bool)
    fg[16:48, 16:48] = True
    _, mask, _ = synthesize_anomaly(_image(), np.random.default_rng(0), foreground=fg)
    assert mask.sum() > 0 and not mask[~fg].any()


def test_perlin_noise_is_bounded_and_smooth() -> None:
    n = perlin_noise((64, 64), (4, 4), np.random.default_rng(0))
    assert n.shape == (64, 64) and np.abs(n).max() <= 1.5
    assert np.abs(np.diff(n, axis=1)).max() < 0.3


def test_bad_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="uint8"):
        synthesize_anomaly(np.zeros((8, 8), np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="kinds"):
        AnomalySettings(kinds=("smoke",))


def test_thin_strokes_are_thin_long_and_on_the_foreground() -> None:
    """`thin_fraction`: scratch-like strokes 1-3 px wide, which Perlin blobs never are."""
    import cv2

    image = np.full((256, 256, 3), 120, np.uint8)
    foreground = np.zeros((256, 256), bool)
    foreground[40:216, 40:216] = True
    settings = AnomalySettings(thin_fraction=1.0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        _, mask, _ = synthesize_anomaly(image, rng, settings, foreground=foreground)
        mask = mask.astype(bool)
        assert mask.sum() >= 10 and not (mask & ~foreground).any()
        width = 2 * cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5).max()
        assert width <= 6  # 1-3 px strokes (a bend may thicken a joint): no point 3 px from the background
        ys, xs = np.nonzero(mask)
        assert max(np.ptp(ys), np.ptp(xs)) >= 0.05 * 256  # long, not a speck
    blobs = AnomalySettings()
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    a = synthesize_anomaly(image, rng_a, blobs)[1]
    b = synthesize_anomaly(image, rng_b, AnomalySettings(thin_fraction=0.0))[1]
    assert np.array_equal(a, b) and rng_a.random() == rng_b.random()  # 0: the old stream, untouched
    assert "thin_fraction" not in repr(blobs)  # earlier synthetic caches keep their keys
    with pytest.raises(ValueError, match="thin_fraction"):
        AnomalySettings(thin_fraction=1.5)
