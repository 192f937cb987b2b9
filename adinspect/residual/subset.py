"""Representative subsets by k-center greedy: of the references for large products, in the
retrieval space (`k_center_greedy`), and of each reference's cells for global matching
(`cell_coreset`).

Retrieval (CPR) compares images by their window descriptors: squared L2 per window position, mean
of the lowest `keep_fraction`. k-center greedy on that same distance picks the references whose
nearest picked neighbour is farthest, so every image left out has a picked one close to it in the
space that chooses Θ_knn, and rare looks (a rotated part, other lighting) are kept before
near-duplicates.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def retrieval_distance(descriptors: np.ndarray, one: np.ndarray, keep: int) -> np.ndarray:
    """CPR distance of every image to one image.

    Args:
        descriptors: (N, n_windows, D) window descriptors.
        one: (n_windows, D) one image's descriptors.
        keep: number of lowest window distances averaged.

    Returns:
        (N,) float64 distances.
    """
    per_window = ((descriptors.astype(np.float64) - one.astype(np.float64)) ** 2).sum(-1)  # (N, n_windows)
    lowest = np.partition(per_window, keep - 1, axis=1)[:, :keep]
    return lowest.mean(1)


def k_center_greedy(descriptors: np.ndarray, n: int, keep_fraction: float) -> np.ndarray:
    """Indices of `n` images chosen by k-center greedy on the retrieval distance (sorted).

    Starts from the medoid-like image closest to the mean descriptor; each step adds the image
    farthest from everything picked so far. Deterministic (ties: lowest index).

    Args:
        descriptors: (N, n_windows, D) window descriptors of the candidate references.
        n: how many to keep; all of them when n ≥ N.
        keep_fraction: CPR's fraction of lowest window distances (method.keep_fraction).
    """
    total = descriptors.shape[0]
    if n >= total:
        return np.arange(total)
    if n < 1:
        raise ValueError(f"max_references must be at least 1, got {n}")
    keep = max(1, int(round(keep_fraction * descriptors.shape[1])))
    first = int(np.argmin(retrieval_distance(descriptors, descriptors.mean(0), keep)))
    picked = [first]
    nearest = retrieval_distance(descriptors, descriptors[first], keep)
    for _ in range(n - 1):
        nxt = int(np.argmax(nearest))
        picked.append(nxt)
        nearest = np.minimum(nearest, retrieval_distance(descriptors, descriptors[nxt], keep))
    return np.sort(np.asarray(picked))


def coreset_size(cells: int, share: float) -> int:
    """Cells kept of a reference's `cells` for a `share` in (0, 1]: at least one."""
    return max(1, min(cells, math.ceil(share * cells)))


PROJECTION_DIM = 64  # k-center distances of the cells in a seeded random projection (PatchCore's)


def cell_coreset(features: torch.Tensor, share: float, batch: int = 8) -> torch.Tensor:
    """Each reference's k-center greedy coreset of its grid cells (PatchCore's coreset, per image).

    Global matching compares a query cell with every cell of a reference; a surface or a part
    repeats itself, so the cells whose nearest kept cell is farthest are kept first and the
    near-duplicates last. Distances are L2 in a seeded Gaussian projection to `PROJECTION_DIM`
    (Johnson-Lindenstrauss, as PatchCore does), so a few references' cells stay in cache; where
    d_f is no wider, in the features themselves. Deterministic: the first cell kept is the one
    nearest the reference's mean; ties: lowest index.

    Args:
        features: (N, d_f, h, w) the references' features.
        share: fraction of the h·w cells kept per reference, in (0, 1].

    Returns:
        (m, N) int64, m = ceil(share · h·w): the kept cells of each reference (row-major cell
        index), sorted, cell-major like the model's bank.
    """
    n, d, h, w = features.shape
    m = coreset_size(h * w, share)
    projection = None
    if d > PROJECTION_DIM:
        gen = torch.Generator().manual_seed(0)
        projection = torch.randn(d, PROJECTION_DIM, generator=gen) / math.sqrt(PROJECTION_DIM)
    out = torch.empty(m, n, dtype=torch.long)
    for start in range(0, n, batch):
        x = features[start : start + batch].float().flatten(2).transpose(1, 2)  # (b, h·w, d)
        if projection is not None:
            x = x @ projection
        out[:, start : start + x.shape[0]] = _k_center_cells(x.contiguous(), m).T
    return out


def _k_center_cells(x: torch.Tensor, m: int) -> torch.Tensor:
    """(b, h·w, p) cells of b references → (b, m) sorted indices of each one's k-center coreset."""
    b = x.shape[0]
    rows = torch.arange(b)
    xt = x.transpose(1, 2).contiguous()  # (b, p, h·w): a row vector times it is the fast MatMul
    sq = (x**2).sum(-1)  # (b, h·w)

    def dist_to(index: torch.Tensor) -> torch.Tensor:  # (b,) one cell per reference → (b, h·w)
        dot = torch.bmm(xt[rows, :, index][:, None, :], xt)[:, 0]
        return sq - 2.0 * dot + sq[rows, index][:, None]

    picked = torch.empty(b, m, dtype=torch.long)
    picked[:, 0] = ((x - x.mean(1, keepdim=True)) ** 2).sum(-1).argmin(1)
    nearest = dist_to(picked[:, 0])
    for i in range(1, m):
        picked[:, i] = nearest.argmax(1)
        nearest = torch.minimum(nearest, dist_to(picked[:, i]))
    return picked.sort(1).values
