"""MSM, mutual scoring: each patch of an image against every other image of the same batch.

For images i ≠ j, d_ij(p) is the distance from patch p of image i to its nearest patch in image
j. The score of patch p is the mean of the lowest interval (default 0-30 %) of its N-1 values
d_ij(p): a normal patch finds close matches in most images, an anomalous one in few. Features
are L2-normalised, so the nearest patch is the one with the largest dot product and
‖a - b‖ = sqrt(2 - 2·a·b); one matrix product per block of image pairs gives both directions
(row maxima for i against j, column maxima for j against i), so each pair is computed once.
Blocks are sized so one block of similarities fits `block_mb`; what grows with the batch is the
(N, N, P) table of nearest distances of one (layer, degree) at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from adinspect.zeroshot.config import ZeroShotConfig
from adinspect.zeroshot.features import PatchFeatures


def block_images(n_patches: int, block_mb: int) -> int:
    """Images per block side so that a (b·P, b·P) float32 similarity block fits block_mb."""
    return max(1, int(math.sqrt(block_mb * 2**20 / (4.0 * n_patches * n_patches))))


def nearest_distances(z: torch.Tensor, block_mb: int = 256) -> torch.Tensor:
    """(N, P, d) L2-normalised patches → (N, N, P): [i, j, p] = min_q ‖z_ip - z_jq‖, +inf where i = j."""
    n, p, d = z.shape
    b = block_images(p, block_mb)
    best = torch.empty(n, n, p)
    for i0 in range(0, n, b):
        zi = z[i0 : i0 + b]
        bi = zi.shape[0]
        for j0 in range(i0, n, b):
            zj = z[j0 : j0 + b]
            bj = zj.shape[0]
            sim = (zi.reshape(-1, d) @ zj.reshape(-1, d).T).view(bi, p, bj, p)
            best[i0 : i0 + bi, j0 : j0 + bj] = sim.amax(dim=3).permute(0, 2, 1)
            if j0 != i0:
                best[j0 : j0 + bj, i0 : i0 + bi] = sim.amax(dim=1).permute(1, 0, 2)
    dist = best.mul_(-2.0).add_(2.0).clamp_(min=0.0).sqrt_()
    dist[torch.arange(n), torch.arange(n)] = math.inf
    return dist


def interval_mean(dist: torch.Tensor, lowest: tuple[float, float]) -> torch.Tensor:
    """(N, N, P) distances (+inf on the diagonal) → (N, P) mean over the lowest interval of the N-1."""
    n = dist.shape[0]
    others = n - 1
    k_lo = int(lowest[0] * others)
    k_hi = min(others, max(k_lo + 1, int(lowest[1] * others)))
    out = torch.empty(n, dist.shape[2])
    for i in range(n):  # one row at a time: topk's workspace stays (N, P)
        values = torch.topk(dist[i], k_hi, dim=0, largest=False).values
        out[i] = values[k_lo:].mean(dim=0)
    return out


def mutual_maps(features: PatchFeatures, config: ZeroShotConfig) -> torch.Tensor:
    """Patch scores per (layer, degree), brought to the finest layer grid and averaged → (N, G, G)."""
    grid = max(features.grids.values())
    total = None
    for (layer, _r), z in features.patches.items():
        g = features.grids[layer]
        scores = interval_mean(nearest_distances(z, config.block_mb), config.lowest).view(-1, 1, g, g)
        if g != grid:
            scores = F.interpolate(scores, size=(grid, grid), mode="bilinear", align_corners=False)
        total = scores if total is None else total + scores
    assert total is not None  # config guarantees at least one layer and one degree
    return total[:, 0] / len(features.patches)
