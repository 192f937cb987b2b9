"""A representative subset of references for large products: k-center greedy in the retrieval space.

Retrieval (CPR) compares images by their window descriptors: squared L2 per window position, mean
of the lowest `keep_fraction`. k-center greedy on that same distance picks the references whose
nearest picked neighbour is farthest, so every image left out has a picked one close to it in the
space that chooses Θ_knn, and rare looks (a rotated part, other lighting) are kept before
near-duplicates.
"""

from __future__ import annotations

import numpy as np


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
