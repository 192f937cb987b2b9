"""Plots write real PNGs; overlays and boxes change the right pixels; no pyplot, no global state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from adinspect.evaluation.plots import (
    draw_regions,
    overlay_heatmap,
    plot_latency_histogram,
    plot_overlay_grid,
    plot_roc_pr,
)
from adinspect.results import Region

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> np.ndarray:
    """Decoded (H, W, 3) image after checking the file really is a PNG."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None and image.ndim == 3
    return image


def small_set() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    masks = np.zeros((6, 32, 32), dtype=bool)
    masks[:3, 8:16, 8:20] = True
    maps = (rng.random(masks.shape) + 0.6 * masks).astype(np.float32)
    return maps.max(axis=(1, 2)), masks.any(axis=(1, 2)), maps, masks


def test_plot_roc_pr_writes_a_wide_png(tmp_path: Path) -> None:
    out = plot_roc_pr(*small_set(), tmp_path / "sub" / "roc_pr.png")
    image = read_png(out)
    height, width = image.shape[:2]
    assert 300 <= height <= 1500 and 2 * height <= width <= 3000  # three panels side by side
    assert image.std() > 10  # not a blank canvas


def test_plot_roc_pr_thins_million_point_curves(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((4, 256, 256)) < 0.05
    maps = rng.random(masks.shape) + masks  # ~260k distinct scores
    out = plot_roc_pr(maps.max(axis=(1, 2)), np.array([1, 0, 1, 0]), maps, masks, tmp_path / "big.png")
    assert out.stat().st_size < 500_000
    read_png(out)


def test_plot_roc_pr_validates_input(tmp_path: Path) -> None:
    scores, labels, maps, masks = small_set()
    with pytest.raises(ValueError, match=r"maps shape \(6, 32, 32\) and masks shape \(6, 32, 31\)"):
        plot_roc_pr(scores, labels, maps, masks[:, :, 1:], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_overlay_marks_high_scores_red_and_low_scores_blue() -> None:
    gray = np.full((64, 80, 3), 128, dtype=np.uint8)
    amap = np.zeros((16, 20), dtype=np.float32)  # low resolution: resized to the image
    amap[4:8, 10:15] = 1.0
    out = overlay_heatmap(gray, amap, vmin=0.0, vmax=1.0, alpha=0.5)
    assert out.shape == (64, 80, 3) and out.dtype == np.uint8
    hot = out[20:28, 44:56].reshape(-1, 3).astype(int)  # inside the upscaled high block
    cold = out[50:60, 5:15].reshape(-1, 3).astype(int)
    # jet: 1.0 -> dark red (128, 0, 0), 0.0 -> dark blue (0, 0, 128); half-blended with grey 128.
    assert (hot[:, 0] - hot[:, 2] > 50).all() and (hot[:, 2] < 100).all()
    assert (cold[:, 2] - cold[:, 0] > 50).all() and (cold[:, 0] < 100).all()
    np.testing.assert_array_equal(gray, 128)  # input untouched
    np.testing.assert_array_equal(overlay_heatmap(gray, amap, 0.0, 1.0, alpha=0.0), gray)


def test_overlay_rejects_bad_input() -> None:
    gray = np.zeros((8, 8, 3), dtype=np.uint8)
    amap = np.zeros((8, 8))
    with pytest.raises(ValueError, match=r"rgb_uint8: expected an \(H, W, 3\) uint8 RGB image, got float64"):
        overlay_heatmap(gray.astype(float), amap, 0, 1)
    with pytest.raises(ValueError, match="vmax > vmin"):
        overlay_heatmap(gray, amap, 1.0, 1.0)
    with pytest.raises(ValueError, match="anomaly_map: expected a finite"):
        overlay_heatmap(gray, np.full((8, 8), np.nan), 0, 1)
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(gray, amap, 0, 1, alpha=1.5)


def test_draw_regions_draws_box_borders_only() -> None:
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    regions = [
        Region(x=5, y=10, width=20, height=15, area=100, peak_score=1.0),
        SimpleNamespace(x=30, y=2, width=10, height=5),
    ]
    out = draw_regions(image, regions, color=(255, 255, 0), thickness=1)
    assert out.shape == image.shape and out.dtype == np.uint8
    yellow = np.array([255, 255, 0], dtype=np.uint8)
    assert (out[10, 5:25] == yellow).all()  # top edge of the first box
    assert (out[10:25, 24] == yellow).all()  # right edge at x + width - 1
    assert (out[10:25, 25] == 0).all()  # and not one pixel further
    assert (out[12:23, 7:23] == 0).all()  # interior untouched
    assert (out[2, 30:40] == yellow).all()
    assert image.max() == 0  # input untouched


def test_plot_overlay_grid_with_and_without_masks(tmp_path: Path) -> None:
    _, _, maps, masks = small_set()
    images = [np.full((64, 64, 3), 100, dtype=np.uint8) for _ in range(6)]
    titles = [f"image {i}" for i in range(6)]
    with_masks = read_png(
        plot_overlay_grid(images, list(maps), list(masks), titles, tmp_path / "a.png", 0, 1.6)
    )
    without = read_png(plot_overlay_grid(images, list(maps), None, titles, tmp_path / "b.png", 0, 1.6))
    assert with_masks.shape[1] > 2 * with_masks.shape[0]  # 6 tiles in one row
    assert with_masks.shape == without.shape
    green = (with_masks[..., 1] > 200) & (with_masks[..., 0] < 60) & (with_masks[..., 2] < 60)  # BGR
    assert green.sum() > 50  # ground-truth outlines


def test_plot_overlay_grid_caps_images_and_checks_lengths(tmp_path: Path) -> None:
    images = [np.zeros((16, 16, 3), dtype=np.uint8)] * 30
    maps = [np.zeros((16, 16))] * 30
    capped = read_png(
        plot_overlay_grid(images, maps, None, ["t"] * 30, tmp_path / "c.png", 0, 1, max_images=6)
    )
    assert capped.shape[1] > 2 * capped.shape[0]  # one row of 6, not 5 rows
    with pytest.raises(ValueError, match="'images': 30, 'maps': 29"):
        plot_overlay_grid(images, maps[:-1], None, ["t"] * 30, tmp_path / "d.png", 0, 1)


def test_plot_latency_histogram(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    latencies = {"in-process": list(rng.gamma(4, 2, 200)), "triton": list(rng.gamma(4, 3, 100) + 1)}
    image = read_png(plot_latency_histogram(latencies, tmp_path / "latency.png"))
    assert 300 <= image.shape[0] <= 1000 and 500 <= image.shape[1] <= 1500
    read_png(plot_latency_histogram({"constant": [2.0, 2.0]}, tmp_path / "constant.png"))
    with pytest.raises(ValueError, match="empty mapping"):
        plot_latency_histogram({}, tmp_path / "e.png")
    with pytest.raises(ValueError, match=r"latencies_ms\['x'\]: expected non-empty finite"):
        plot_latency_histogram({"x": [1.0, float("nan")]}, tmp_path / "f.png")


def test_plotting_never_imports_pyplot(tmp_path: Path) -> None:
    # pyplot is what selects a process-wide backend; a fresh interpreter shows whether we pulled it in.
    code = (
        "import sys; from adinspect.evaluation.plots import plot_latency_histogram; "
        f"plot_latency_histogram({{'a': [1.0, 2.0]}}, {str(tmp_path / 'l.png')!r}); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
