"""Click simulation and interactive-segmentation metrics (RITM / SimpleClick protocol).

Next click: distance transforms of the false-negative (gt ∧ ¬pred) and false-positive
(¬gt ∧ pred) regions, with the image border counted as boundary (RITM pads by one pixel); the
click goes to the point deepest inside whichever region reaches deeper, positive if that is the
false negatives. Ties go to the first point in row-major order. Already-clicked pixels are
excluded. A click map is two channels of discs (positive, negative) of radius ≈ 5 px at 512.

Metrics: IoU after k clicks (k = 1..max_clicks), NoC@t = the first k whose IoU ≥ t (max_clicks
when never reached, as RITM counts it). Pure numpy/OpenCV.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from adinspect.runtime.clicks import PRED_THRESHOLD, Click

MAX_CLICKS = 20
NOC_THRESHOLDS = (0.80, 0.85, 0.90)


def next_click(gt: np.ndarray, pred: np.ndarray, clicked: np.ndarray | None = None) -> Click | None:
    """The RITM next click for binary masks gt, pred (H, W); None when they agree everywhere.

    Args:
        clicked: optional bool (H, W) of pixels already clicked, never chosen again.
    """
    gt, pred = gt.astype(bool), pred.astype(bool)
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and prediction {pred.shape} differ in shape")
    fn = np.pad(gt & ~pred, 1).astype(np.uint8)
    fp = np.pad(~gt & pred, 1).astype(np.uint8)
    fn_dt = cv2.distanceTransform(fn, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    fp_dt = cv2.distanceTransform(fp, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    if clicked is not None:
        fn_dt = fn_dt * ~clicked
        fp_dt = fp_dt * ~clicked
    fn_max, fp_max = float(fn_dt.max()), float(fp_dt.max())
    if fn_max == 0 and fp_max == 0:
        return None
    positive = fn_max > fp_max
    dt = fn_dt if positive else fp_dt
    flat = int(np.argmax(dt))  # first maximum, row-major
    return Click(flat // dt.shape[1], flat % dt.shape[1], positive)


def iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """Intersection over union of two binary masks; 1.0 when both are empty."""
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.logical_or(gt, pred).sum()
    return float(np.logical_and(gt, pred).sum() / union) if union else 1.0


@dataclass
class ClickSession:
    """The outcome of simulated clicking on one image."""

    clicks: list[Click]
    ious: list[float]  # IoU after click k (index k-1)
    probs: list[np.ndarray]  # probability map (H, W) after click k
    missed: int = 0  # predictions that left a positive click outside the mask (as the predictor counts)
    empty: int = 0  # predictions whose mask was empty (as the predictor counts)


Predictor = Callable[[np.ndarray, list[Click]], np.ndarray]


def simulate_clicks(
    predict: Predictor, gt: np.ndarray, max_clicks: int = MAX_CLICKS, stop_iou: float | None = None
) -> ClickSession:
    """Click iteratively with `next_click` against the ground truth.

    Args:
        predict: (previous probability map (H, W), clicks so far) → probability map (H, W).
        gt: (H, W) binary ground truth; must contain at least one positive pixel.
        stop_iou: stop early once reached (metrics then pad with the last IoU).
    """
    gt = gt.astype(bool)
    if not gt.any():
        raise ValueError("ground-truth mask is empty; click simulation needs a defect")
    prob = np.zeros(gt.shape, np.float32)
    clicked = np.zeros(gt.shape, bool)
    session = ClickSession([], [], [])
    for _ in range(max_clicks):
        click = next_click(gt, prob > PRED_THRESHOLD, clicked)
        if click is None:  # perfect mask: every later IoU equals the current one
            break
        session.clicks.append(click)
        clicked[click.y, click.x] = True
        prob = predict(prob, session.clicks)
        session.probs.append(prob)
        session.ious.append(iou(gt, prob > PRED_THRESHOLD))
        if stop_iou is not None and session.ious[-1] >= stop_iou:
            break
    return session


def padded_ious(ious: Sequence[float], max_clicks: int = MAX_CLICKS) -> np.ndarray:
    """IoU per click count 1..max_clicks, carrying the last value forward: (max_clicks,)."""
    if not ious:
        return np.ones(max_clicks)
    out = np.full(max_clicks, ious[-1], dtype=np.float64)
    out[: len(ious)] = ious[:max_clicks]
    return out


def number_of_clicks(ious: Sequence[float], threshold: float, max_clicks: int = MAX_CLICKS) -> int:
    """NoC@threshold for one image: first k (1-based) with IoU ≥ threshold, else max_clicks."""
    for k, value in enumerate(ious[:max_clicks], start=1):
        if value >= threshold:
            return k
    return max_clicks


def click_metrics(all_ious: Sequence[Sequence[float]], max_clicks: int = MAX_CLICKS) -> dict[str, object]:
    """Dataset metrics: noc80/noc85/noc90 (mean NoC) and iou_at_k (mean IoU after k = 1..max_clicks)."""
    if not all_ious:
        raise ValueError("no images to compute click metrics on")
    padded = np.stack([padded_ious(i, max_clicks) for i in all_ious])
    out: dict[str, object] = {}
    for t in NOC_THRESHOLDS:
        out[f"noc{round(t * 100)}"] = float(
            np.mean([number_of_clicks(list(p), t, max_clicks) for p in padded])
        )
    out["iou_at_k"] = [float(v) for v in padded.mean(0)]
    return out
