"""The evidence `fit --auto` weighs (`fitting.choice`): synthetic image AUROC, pixel AP and AUPRO of
the maps of good images and of the same images with a synthetic anomaly, every candidate measured
the same way (at the masks' resolution, pooled to about `METRIC_PIXELS`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from adinspect.metrics import compute_metrics
from adinspect.residual.model import ResidualModel

METRIC_PIXELS = 256 * 256  # maps larger than this are pooled to about it for the criteria


def synthetic_metrics(
    model: ResidualModel, good: np.ndarray, synthetic: np.ndarray, masks: np.ndarray, names: Sequence[str]
) -> dict[str, float]:
    """Synthetic I-AUROC, pixel AP and AUPRO over the good maps and the anomalous ones (those whose
    anomaly survived: a mask with no pixel is dropped). Maps at an input other than the masks' are
    resized to them, as the package resizes a map to its image, so every input is judged at one
    resolution."""
    keep = masks.reshape(len(masks), -1).any(1)
    maps = np.concatenate([good, synthetic[keep]])
    truth = np.concatenate([np.zeros_like(masks[: len(good)]), masks[keep]])
    labels = np.r_[np.zeros(len(good)), np.ones(int(keep.sum()))]
    with torch.no_grad():
        scores = model.score(torch.from_numpy(maps)[:, None]).numpy()  # as the package scores a map
        if maps.shape[-2:] != masks.shape[-2:]:
            resized = F.interpolate(torch.from_numpy(maps)[:, None], masks.shape[-2:], mode="bilinear")
            maps = resized[:, 0].numpy()
    return compute_metrics(scores, labels, *pooled(maps, truth), names=list(names))


def pooled(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps and masks (N, H, W) pooled by the smallest integer stride that brings H·W to about
    `METRIC_PIXELS` (maps averaged, masks: any defect pixel in the window). The pixel metrics sort
    every pixel, and a map is no finer than its stride-8 feature grid blurred: at 640 x 256 they
    took a quarter of the choice's time. Every candidate is measured the same way."""
    stride = int(np.ceil(np.sqrt(maps.shape[-2] * maps.shape[-1] / METRIC_PIXELS)))
    if stride == 1:
        return maps, masks
    averaged = F.avg_pool2d(torch.from_numpy(maps)[:, None], stride, ceil_mode=True)[:, 0].numpy()
    hit = F.max_pool2d(torch.from_numpy(masks)[:, None].float(), stride, ceil_mode=True)[:, 0] > 0
    return averaged, hit.numpy()
