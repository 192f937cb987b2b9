"""RsCIN: re-score images with a constrained image-level neighbourhood.

Scores are min-max normalised over the batch; for each k, an image's new score is the
similarity-weighted mean of the scores of its k most similar images (itself included, similarity
from image-level features); the results for the k in `ks` are averaged. k = 1 keeps the scores.
Similar images then share evidence: a faint defect scored low is lifted by a similar, clearly
defective neighbour, and a good image with one odd patch is pulled toward its good neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rscin(scores: np.ndarray, image_features: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """(N,) scores and (N, c) L2-normalised image features → (N,) re-scored values in [0, 1]."""
    scores = np.asarray(scores, np.float64)
    span = scores.max() - scores.min()
    normed = (scores - scores.min()) / span if span > 0 else np.zeros_like(scores)
    sim = np.asarray(image_features, np.float64) @ np.asarray(image_features, np.float64).T
    sim = np.clip(sim, 0.0, None)
    np.fill_diagonal(sim, 1.0)  # self always first among the neighbours
    order = np.argsort(-sim, axis=1, kind="stable")
    out = np.zeros_like(normed)
    for k in ks:
        k = min(k, len(scores))
        weights = np.zeros_like(sim)
        rows = np.arange(len(scores))[:, None]
        weights[rows, order[:, :k]] = sim[rows, order[:, :k]]
        out += (weights @ normed) / weights.sum(axis=1)
    return out / len(ks)
