"""MSM, mutual scoring: each patch of an image against every other image of the same batch.

For images i ≠ j, d_ij(p) is the distance from patch p of image i to its nearest patch in image
j. The score of patch p is the mean of the lowest interval (default 0-30 %) of its N-1 values
d_ij(p): a normal patch finds close matches in most images, an anomalous one in few. Features
are L2-normalised, so the nearest patch is the one with the largest dot product and
‖a - b‖ = sqrt(2 - 2·a·b); one matrix product per block gives both directions (row maxima for
i against j, column maxima for j against i), so each pair is computed once.

Speed: with a few dozen channels the product is cheap and the cost is writing and reducing the
similarity block, so blocks are kept small enough to stay in a core's cache (`block_kb`), and
image rows are shared out to `workers` threads, each running single-threaded torch ops
(`parallel.py`). What grows with the batch is the (N, N, P) table of nearest distances of
one (layer, degree) at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from adinspect.zeroshot.config import ZeroShotConfig
from adinspect.zeroshot.features import PatchFeatures
from adinspect.zeroshot.parallel import map_in_threads, worker_count


def block_shape(n_patches: int, block_kb: int) -> tuple[int, int]:
    """(rows of image i, images j) per block so that a float32 (rows, images·P) block fits block_kb."""
    budget = block_kb * 1024 // 4  # float32 values
    rows = max(1, min(n_patches, budget // n_patches))
    return rows, max(1, budget // (rows * n_patches))


def _score_row(z: torch.Tensor, best: torch.Tensor, i: int, rows: int, images: int) -> None:
    """Fill best[i, j] and best[j, i] for every j > i with the largest similarities."""
    n, p, d = z.shape
    for j0 in range(i + 1, n, images):
        j1 = min(n, j0 + images)
        zj_t = z[j0:j1].reshape(-1, d).T
        cols = best[j0:j1, i]  # running column maxima, filled in place
        cols.fill_(-1.0)  # lowest cosine similarity
        for r0 in range(0, p, rows):
            sim = torch.mm(z[i, r0 : r0 + rows], zj_t).view(-1, j1 - j0, p)
            best[i, j0:j1, r0 : r0 + rows] = sim.amax(dim=2).T
            torch.maximum(cols, sim.amax(dim=0), out=cols)


def nearest_distances(z: torch.Tensor, block_kb: int = 1024, workers: int = 1) -> torch.Tensor:
    """(N, P, d) L2-normalised patches → (N, N, P): [i, j, p] = min_q ‖z_ip - z_jq‖, +inf where i = j."""
    n, p, _ = z.shape
    rows, images = block_shape(p, block_kb)
    z = z.contiguous()
    best = torch.empty(n, n, p)
    # row i owns the pairs (i, j > i): threads never write the same entries; longest rows first
    map_in_threads(lambda i: _score_row(z, best, i, rows, images), range(n), workers)
    dist = best.mul_(-2.0).add_(2.0).clamp_(min=0.0).sqrt_()
    dist[torch.arange(n), torch.arange(n)] = math.inf
    return dist


def interval_mean(dist: torch.Tensor, lowest: tuple[float, float], workers: int = 1) -> torch.Tensor:
    """(N, N, P) distances (+inf on the diagonal) → (N, P) mean over the lowest interval of the N-1."""
    n = dist.shape[0]
    others = n - 1
    k_lo = int(lowest[0] * others)
    k_hi = min(others, max(k_lo + 1, int(lowest[1] * others)))

    def row(i: int) -> torch.Tensor:  # one row at a time: topk's workspace stays (N, P)
        return torch.topk(dist[i], k_hi, dim=0, largest=False).values[k_lo:].mean(dim=0)

    return torch.stack(map_in_threads(row, range(n), workers))


def mutual_maps(features: PatchFeatures, config: ZeroShotConfig) -> torch.Tensor:
    """Patch scores per (layer, degree), brought to the finest layer grid and averaged → (N, G, G)."""
    grid = max(features.grids.values())
    workers = worker_count(config)
    total = None
    for (layer, _r), z in features.patches.items():
        g = features.grids[layer]
        dist = nearest_distances(z, config.block_kb, workers)
        scores = interval_mean(dist, config.lowest, workers).view(-1, 1, g, g)
        del dist  # one (N, N, P) table at a time: the next one is allocated before `dist` is rebound
        if g != grid:
            scores = F.interpolate(scores, size=(grid, grid), mode="bilinear", align_corners=False)
        total = scores if total is None else total + scores
    assert total is not None  # config guarantees at least one layer and one degree
    return total[:, 0] / len(features.patches)
