"""Pictures a person would rather look at: ROC/PR curves, heat-map overlays, latency histograms.

Matplotlib is used through `matplotlib.figure.Figure` and `FigureCanvasAgg` directly, never pyplot,
so importing or calling this module does not select a backend or touch any global state. Overlays
are plain uint8 RGB arrays made with OpenCV; only the `plot_*` functions write files (PNG).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from adinspect.metrics import ranking

_MAX_CURVE_POINTS = 2000  # pixel curves have one point per distinct score: millions


class BoxLike(Protocol):
    """Anything with a pixel bounding box, e.g. `adinspect.results.Region`."""

    x: int
    y: int
    width: int
    height: int


def _save(fig: Figure, out_png: str | Path, dpi: int = 100) -> Path:
    """Render `fig` with Agg into `out_png` (parent folders created) and return the path."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attaches itself to fig: Agg for this figure only
    fig.savefig(out, format="png", dpi=dpi)
    return out


def _thin(x: np.ndarray, y: np.ndarray, max_points: int = _MAX_CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ~max_points points of a curve (K,), spread evenly along its length, ends kept."""
    if x.size <= max_points:
        return x, y
    length = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))])
    keep = np.unique(np.searchsorted(length, np.linspace(0.0, length[-1], max_points)))
    keep = np.union1d(keep, [0, x.size - 1])
    return x[keep], y[keep]


def _roc_axes(ax: Axes, curve: ranking.BinaryCurve, title: str) -> None:
    fpr, tpr = _thin(*ranking.roc_from_curve(curve))
    ax.plot(fpr, tpr, lw=1.5, label=f"AUROC = {ranking.auroc_from_curve(curve):.4f}")
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey", label="chance")
    ax.set(
        title=title, xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01)
    )
    ax.legend(loc="lower right")


def _pr_axes(ax: Axes, curve: ranking.BinaryCurve, title: str) -> None:
    recall, precision = _thin(*ranking.pr_from_curve(curve))
    prevalence = curve.n_pos / (curve.n_pos + curve.n_neg)
    ax.plot(recall, precision, lw=1.5, label=f"AP = {ranking.ap_from_curve(curve):.4f}")
    ax.axhline(prevalence, ls="--", lw=0.8, color="grey", label=f"prevalence {prevalence:.3f}")
    ax.set(title=title, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper right")


def plot_roc_pr(
    image_scores: np.ndarray,
    image_labels: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray,
    out_png: str | Path,
) -> Path:
    """Image ROC, pixel ROC and pixel PR side by side, AUROC/AP in the legends.

    Args:
        image_scores: (N,) real. image_labels: (N,) binary, both classes.
        maps: (N, H, W) real. masks: (N, H, W) binary, defect and defect-free pixels.
        out_png: file to write.

    Returns:
        The path written.
    """
    image_curve = ranking.binary_curve(image_scores, image_labels)
    pixel_curve = ranking.pixel_curve(maps, masks)
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    ax_image, ax_pixel, ax_pr = fig.subplots(1, 3)
    _roc_axes(ax_image, image_curve, f"Image ROC ({image_curve.n_pos} defective / {image_curve.n_neg} good)")
    _roc_axes(ax_pixel, pixel_curve, "Pixel ROC")
    _pr_axes(ax_pr, pixel_curve, "Pixel PR")
    return _save(fig, out_png)


def _check_rgb(rgb: np.ndarray, name: str) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    return rgb


def overlay_heatmap(
    rgb_uint8: np.ndarray, anomaly_map: np.ndarray, vmin: float, vmax: float, alpha: float = 0.5
) -> np.ndarray:
    """Blend a jet-coloured anomaly map over an image.

    Args:
        rgb_uint8: (H, W, 3) uint8 RGB image.
        anomaly_map: (h, w) real; resized bilinearly to (H, W).
        vmin: score shown dark blue (and below). vmax: score shown dark red (and above); > vmin.
        alpha: weight of the heat map in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB, a new array.
    """
    rgb = _check_rgb(rgb_uint8, "rgb_uint8")
    amap = np.asarray(anomaly_map, dtype=np.float32)
    if amap.ndim != 2 or amap.size == 0 or not np.isfinite(amap).all():
        raise ValueError(f"anomaly_map: expected a finite (h, w) array, got shape {amap.shape}")
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
        raise ValueError(f"vmin, vmax: expected finite values with vmax > vmin, got {vmin!r}, {vmax!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a value in [0, 1], got {alpha!r}")
    height, width = rgb.shape[:2]
    if amap.shape != (height, width):
        amap = np.asarray(cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR))
    level = np.round(np.clip((amap - vmin) / (vmax - vmin), 0.0, 1.0) * 255.0).astype(np.uint8)
    heat = cv2.cvtColor(cv2.applyColorMap(level, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, heat, alpha, 0.0)


def draw_regions(
    rgb: np.ndarray, regions: Iterable[BoxLike], color: tuple[int, int, int] = (255, 0, 0), thickness: int = 2
) -> np.ndarray:
    """Draw the bounding box of every region.

    Args:
        rgb: (H, W, 3) uint8 RGB image (not modified).
        regions: objects with x, y, width, height in pixels (e.g. `adinspect.results.Region`).
        color: RGB colour of the boxes.
        thickness: line width in pixels.

    Returns:
        (H, W, 3) uint8 RGB copy with the boxes.
    """
    out = np.ascontiguousarray(_check_rgb(rgb, "rgb")).copy()
    for region in regions:
        top_left = (int(region.x), int(region.y))
        bottom_right = (int(region.x + region.width - 1), int(region.y + region.height - 1))
        cv2.rectangle(out, top_left, bottom_right, tuple(int(c) for c in color), thickness)
    return out


def _draw_mask_outline(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Green outline of a (h, w) binary mask, resized (nearest) to the (H, W, 3) image."""
    mask_u8 = (np.asarray(mask) > 0).astype(np.uint8)
    if mask_u8.shape != rgb.shape[:2]:
        mask_u8 = np.asarray(
            cv2.resize(mask_u8, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
        )
    contours, _ = cv2.findContours(mask_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(rgb.copy(), contours, -1, (0, 255, 0), 1)


def click_session_panel(
    rgb: np.ndarray, truth: np.ndarray, prob: np.ndarray, clicks: Iterable, cut: float
) -> np.ndarray:
    """One simulated click session side by side, all at the model input (H_in, W_in): the image;
    the ground truth in red; the mask after the last click (prob > cut) in green with the clicks
    (positive yellow, negative magenta); the probability in grey. Where a defect is found but not
    outlined shows here."""
    image = _check_rgb(rgb, "rgb")
    truth_panel, mask_panel = image.copy(), image.copy()
    truth_panel[np.asarray(truth, bool)] = (255, 0, 0)
    mask_panel[np.asarray(prob) > cut] = (0, 255, 0)
    for c in clicks:
        cv2.circle(mask_panel, (int(c.x), int(c.y)), 2, (255, 255, 0) if c.positive else (255, 0, 255), -1)
    grey = np.clip(np.rint(np.asarray(prob, np.float32) * 255), 0, 255).astype(np.uint8)
    return np.hstack([image, truth_panel, mask_panel, np.repeat(grey[..., None], 3, axis=2)])


def plot_overlay_grid(
    images: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray] | None,
    titles: Sequence[str],
    out_png: str | Path,
    vmin: float,
    vmax: float,
    max_images: int = 24,
) -> Path:
    """A grid of heat-map overlays (first `max_images`), ground truth outlined in green.

    Args:
        images: n (H, W, 3) uint8 RGB images. maps: n (h, w) real maps. masks: n (h', w') binary
            masks or None. titles: n strings.
        out_png: file to write.
        vmin, vmax: colour scale shared by all overlays (see `overlay_heatmap`).
        max_images: at most this many tiles.

    Returns:
        The path written.
    """
    lengths = {"images": len(images), "maps": len(maps), "titles": len(titles)}
    if masks is not None:
        lengths["masks"] = len(masks)
    if len(set(lengths.values())) != 1 or lengths["images"] == 0:
        raise ValueError(
            f"expected the same non-zero number of images, maps, titles (and masks), got {lengths}"
        )
    if max_images < 1:
        raise ValueError(f"max_images: expected >= 1, got {max_images}")
    n = min(len(images), max_images)
    ncols = min(n, 6)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(2.6 * ncols, 2.8 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        tile = overlay_heatmap(images[i], maps[i], vmin, vmax)
        if masks is not None:
            tile = _draw_mask_outline(tile, masks[i])
        ax.imshow(tile)
        ax.set_title(str(titles[i]), fontsize=8)
    outline = ", green: ground truth" if masks is not None else ""
    fig.suptitle(f"jet scale: {vmin:.3g} (blue) to {vmax:.3g} (red){outline}", fontsize=9)
    return _save(fig, out_png)


def plot_latency_histogram(latencies_ms: Mapping[str, Sequence[float]], out_png: str | Path) -> Path:
    """Overlaid latency histograms, one per named series, median and p95 in the legend.

    Args:
        latencies_ms: {series name: latencies in milliseconds}, each non-empty, finite, >= 0.
        out_png: file to write.

    Returns:
        The path written.
    """
    if not latencies_ms:
        raise ValueError("latencies_ms: expected at least one named series, got an empty mapping")
    series = {name: np.asarray(values, dtype=np.float64).ravel() for name, values in latencies_ms.items()}
    for name, values in series.items():
        if values.size == 0 or not np.isfinite(values).all() or (values < 0).any():
            raise ValueError(f"latencies_ms[{name!r}]: expected non-empty finite values >= 0 ms")
    everything = np.concatenate(list(series.values()))
    lo, hi = float(everything.min()), float(everything.max())
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for name, values in series.items():
        median, p95 = np.percentile(values, [50, 95])
        label = f"{name}: median {median:.2f} ms, p95 {p95:.2f} ms (n={values.size})"
        ax.hist(values, bins=list(bins), alpha=0.55, label=label)
    ax.set(xlabel="latency (ms)", ylabel="requests", title="Latency")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, out_png)
