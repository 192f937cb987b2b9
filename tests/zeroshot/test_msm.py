"""MSM: chunked nearest distances equal brute force, the interval mean, and a planted defect found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adinspect.zeroshot.msm import block_shape, interval_mean, nearest_distances


def _patches(n: int, p: int, d: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, p, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_one_block_equals_brute_force():
    z = _patches(7, 16, 8)
    assert block_shape(16, 4) == (16, 4)  # 16 rows of 4 images' 16 patches = 4 KB
    brute = torch.cdist(z[:, None], z[None, :]).amin(dim=-1)  # (N, N, P): min over the other's patches
    brute[torch.arange(7), torch.arange(7)] = float("inf")
    torch.testing.assert_close(nearest_distances(z, block_kb=4), brute, atol=1e-5, rtol=1e-5)


def test_block_size_follows_the_cache_budget():
    assert block_shape(1024, 1024) == (256, 1)  # 256 rows x 1024 patches of float32 = 1 MB
    assert block_shape(256, 1024) == (256, 4)  # small grids: several images per block
    assert block_shape(1024, 4) == (1, 1)


@pytest.mark.parametrize("shape", [(2, 1), (3, 2), (25, 1), (7, 3)])  # uneven last row and image blocks
def test_chunked_equals_unchunked(monkeypatch, shape):
    from adinspect.zeroshot import msm

    z = _patches(9, 25, 6, seed=1)
    whole = nearest_distances(z, block_kb=4096)
    monkeypatch.setattr(msm, "block_shape", lambda n_patches, block_kb: shape)
    torch.testing.assert_close(nearest_distances(z, block_kb=4096), whole)


def test_threads_give_the_same_table():
    z = _patches(11, 30, 5, seed=3)
    threads = torch.get_num_threads()
    torch.testing.assert_close(nearest_distances(z, workers=3), nearest_distances(z, workers=1))
    assert torch.get_num_threads() == threads  # the workers' single-thread setting stays in the workers


def test_interval_mean_is_the_mean_of_the_lowest_fraction_of_the_others():
    rng = np.random.default_rng(0)
    dist = torch.from_numpy(rng.random((11, 11, 5)).astype(np.float32))
    dist[torch.arange(11), torch.arange(11)] = float("inf")
    out = interval_mean(dist, (0.0, 0.3)).numpy()
    for i in range(11):
        others = np.sort(np.delete(dist[i].numpy(), i, axis=0), axis=0)  # (10, P)
        np.testing.assert_allclose(out[i], others[:3].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(
        interval_mean(dist, (0.1, 0.5)).numpy()[0],
        np.sort(dist[0, 1:].numpy(), axis=0)[1:5].mean(0),
        rtol=1e-6,
    )


def test_patch_seen_nowhere_else_scores_highest():
    z = _patches(6, 10, 4, seed=2)
    z[:, :, :] = z[0:1]  # six identical images ...
    odd = F.normalize(torch.tensor([1.0, -1.0, 1.0, -1.0]), dim=0)
    z[3, 7] = odd  # ... except one patch of image 3
    scores = interval_mean(nearest_distances(z), (0.0, 0.3))
    assert scores[3].argmax() == 7
    assert scores[3, 7] > 0.1 and float(scores.flatten().sort().values[-2]) < 1e-3


@pytest.fixture(scope="module")
def synthetic_batch(synthetic_root):
    from adinspect.data.datasets import open_dataset
    from adinspect.evaluation.evaluate import load_mask_at
    from adinspect.imageio import read_image

    test = open_dataset(synthetic_root).test
    images = [read_image(s.path) for s in test]
    masks = np.stack([load_mask_at(s, im.shape[:2], 256) for s, im in zip(test, images, strict=True)])
    return images, np.array([s.label for s in test]), masks


def test_mutual_scoring_finds_the_planted_defects(synthetic_batch):
    from adinspect.metrics import compute_metrics
    from adinspect.zeroshot import ZeroShotConfig, score_images

    images, labels, masks = synthetic_batch
    result = score_images(images, ZeroShotConfig())
    assert result.maps.shape == (len(images), 256, 256) and np.isfinite(result.maps).all()
    metrics = compute_metrics(result.scores, labels, result.maps, masks, names=["image_auroc", "pixel_auroc"])
    assert metrics["image_auroc"] >= 0.9, metrics
    assert metrics["pixel_auroc"] >= 0.9, metrics
    # the hottest pixel of most defective images lies on (or next to) the planted defect
    grown = [
        np.asarray(F.max_pool2d(torch.from_numpy(m[None].astype(np.float32)), 9, 1, 4)[0]) > 0 for m in masks
    ]
    hits = [grown[i].flat[result.maps[i].argmax()] for i in np.flatnonzero(labels)]
    assert np.mean(hits) >= 0.75, hits
