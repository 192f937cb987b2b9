"""The zero-shot Python API: a batch of unlabelled images → anomaly maps and image scores.

    from adinspect.zeroshot import ZeroShotConfig, score_images
    result = score_images(list_of_rgb_uint8_arrays, ZeroShotConfig())
    result.maps      # (N, S, S) float32, higher = more anomalous
    result.scores    # (N,) RsCIN image scores in [0, 1]

Images of any size are resized to S x S as `fit` does; at least 3 are needed (each is scored
against the others).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from adinspect.zeroshot.config import ZeroShotConfig, ZeroShotError
from adinspect.zeroshot.features import embed_images, load_backbone
from adinspect.zeroshot.msm import mutual_maps
from adinspect.zeroshot.rscin import rscin

MIN_IMAGES = 3


@dataclass
class ZeroShotResult:
    """Outputs for N images, in input order.

    Attributes:
        maps: (N, S, S) float32 anomaly maps (mean lowest-interval patch distance, blurred).
        raw_scores: (N,) float64 max of each map.
        scores: (N,) float64 RsCIN re-scored image scores (min-max normalised over the batch).
        seconds: wall time per stage.
    """

    maps: np.ndarray
    raw_scores: np.ndarray
    scores: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)


def check_batch_size(n: int, unreadable: str = "") -> None:
    """Mutual scoring needs others to compare with; `unreadable` says which files were skipped."""
    if n < MIN_IMAGES:
        skipped = f" ({unreadable})" if unreadable else ""
        raise ZeroShotError(
            f"zero-shot scoring needs at least {MIN_IMAGES} readable images, got {n}{skipped}: each image "
            "is scored against the others of the batch; give more images of the same product"
        )


def upsample_and_blur(grid_maps: torch.Tensor, size: int, sigma: float) -> np.ndarray:
    """(N, g, g) patch scores → (N, S, S) float32, bilinear then Gaussian blur (sigma in pixels at S)."""
    maps = F.interpolate(grid_maps[:, None], size=(size, size), mode="bilinear", align_corners=False)
    out = maps[:, 0].numpy().astype(np.float32)
    if sigma > 0:
        ksize = 2 * int(4 * sigma + 0.5) + 1
        out = np.stack([cv2.GaussianBlur(m, (ksize, ksize), sigma) for m in out])
    return out


def score_images(images: Sequence[np.ndarray], config: ZeroShotConfig | None = None) -> ZeroShotResult:
    """Score a batch of (H_i, W_i, 3) uint8 RGB images of one product against each other."""
    config = config or ZeroShotConfig()
    check_batch_size(len(images))
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    features = embed_images(images, load_backbone(config), config)
    seconds["features"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    with torch.no_grad():
        grid_maps = mutual_maps(features, config)
    seconds["mutual_scoring"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    maps = upsample_and_blur(grid_maps, config.image_size, config.blur_sigma)
    raw = maps.reshape(len(maps), -1).max(axis=1).astype(np.float64)
    scores = rscin(raw, features.image_features.numpy(), config.rscin_k)
    seconds["maps_and_rscin"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    return ZeroShotResult(maps, raw, scores, seconds)
