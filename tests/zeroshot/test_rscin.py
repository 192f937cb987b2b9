"""RsCIN: k = 1 keeps the ranking, larger k shares evidence between similar images only."""

from __future__ import annotations

import numpy as np
import pytest

from adinspect.zeroshot.rscin import rscin


def _two_clusters() -> np.ndarray:
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    feats = np.stack(
        [a, a * 0.99 + b * 0.01, a * 0.98 + b * 0.02, b, b * 0.99 + a * 0.01, b * 0.98 + a * 0.02]
    )
    return feats / np.linalg.norm(feats, axis=1, keepdims=True)


def test_k1_is_min_max_normalisation():
    scores = np.array([3.0, 1.0, 2.0, 5.0])
    feats = np.eye(4)
    np.testing.assert_allclose(rscin(scores, feats, [1]), (scores - 1.0) / 4.0)


def test_neighbours_from_the_same_cluster_lift_a_faint_score():
    scores = np.array([0.0, 0.1, 0.05, 1.0, 0.9, 0.3])  # image 5 is faint but looks like 3 and 4
    out = rscin(scores, _two_clusters(), [1, 2, 3])
    assert out[5] > (0.3 - 0.0) / 1.0  # lifted by its cluster
    assert out[5] > out[:3].max()  # and now clearly above the other cluster
    assert out[:3].max() < 0.15  # the quiet cluster stays quiet


def test_constant_scores_and_k_larger_than_the_batch():
    out = rscin(np.ones(3), np.eye(3), [1, 5])
    np.testing.assert_allclose(out, np.zeros(3))
    assert np.isfinite(rscin(np.array([0.0, 1.0, 2.0]), np.eye(3), [10])).all()


@pytest.mark.parametrize("ks", [[1], [1, 2, 3]])
def test_output_in_unit_interval(ks):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(20, 8))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    out = rscin(rng.random(20) * 7, feats, ks)
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-12
